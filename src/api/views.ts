/**
 * Views: turn the daemon's internal state into the API's JSON shapes (src/api/types.ts).
 * Pure functions of what they are given; they never change state.
 */
import type { DaemonView } from './daemon-view.js'
import { RMESH_VERSION } from '../version.js'
import type { NodeInfo, PeerInfo, PeerState } from './types.js'

export function fullAddresses(addrs: string[], peerId: string): string[] {
  return addrs.map((a) => (a.includes('/p2p/') ? a : `${a}/p2p/${peerId}`))
}

export function nodeInfoOf(d: DaemonView, extra: Partial<NodeInfo> = {}): NodeInfo {
  const connected = new Set(d.libp2p.getConnections().map((c) => c.remotePeer.toString()))
  return {
    peerId: d.peerId,
    name: d.config.name,
    version: RMESH_VERSION,
    addresses: fullAddresses(
      d.libp2p.getMultiaddrs().map((a) => a.toString()),
      d.peerId,
    ),
    admitted: false,
    caps: [],
    engines: [],
    slots: { total: d.config.slots, busy: 0 },
    dataDir: d.config.dataDir,
    uptimeMs: d.clock.wall() - d.startedAt,
    peerCount: connected.size,
    reachability: d.libp2p.services.reachability.state(),
    ...extra,
  }
}

export function peerInfoOf(d: DaemonView, peerId: string): PeerInfo | undefined {
  const entry = d.presence.peers().get(peerId)
  if (!entry) return undefined
  const p = entry.presence
  const conns = d.libp2p
    .getConnections()
    .filter((c) => c.remotePeer.toString() === peerId && c.status === 'open')
  const busy = p.doing.length
  const state: PeerState =
    entry.state === 'gone'
      ? 'gone'
      : p.paused !== undefined
        ? 'paused'
        : busy >= p.slots && p.slots > 0
          ? 'busy'
          : 'idle'
  const connectedAddrs = conns.map((c) => c.remoteAddr.toString())
  // A direct connection, when there is one, is what traffic uses.
  const kinds = conns.map((c) => d.libp2p.services.reachability.kindOf(c))
  const via = kinds.find((k) => k !== 'relayed') ?? kinds[0]
  return {
    peerId,
    name: p.name,
    addresses: fullAddresses([...new Set([...connectedAddrs, ...p.addrs])], peerId),
    engines: p.engines,
    ...(p.devices ? { devices: p.devices } : {}),
    slots: { total: p.slots, busy },
    state,
    connected: conns.length > 0,
    ...(via ? { via } : {}),
    admitted: true,
    work: p.doing.map((w) => ({
      jobId: w.job,
      jobName: w.job,
      chunk: w.chunk,
      frames: w.frame === undefined ? [] : [w.frame],
      frame: w.frame,
      progress: w.progress,
      kind: 'render' as const,
    })),
    load: p.load,
    freeDiskBytes: p.freeDiskBytes,
    ...(p.paused !== undefined ? { paused: p.paused } : {}),
    tags: p.tags,
    ...(p.rules ? { rules: p.rules } : {}),
    lastSeenMs: Math.max(0, Math.round(d.clock.monotonic() - entry.lastHeard)),
    version: p.version,
  }
}

export function peersOf(d: DaemonView): PeerInfo[] {
  const out: PeerInfo[] = []
  for (const id of d.presence.peers().keys()) {
    const info = peerInfoOf(d, id)
    if (info) out.push(info)
  }
  return out.sort((a, b) => a.name.localeCompare(b.name) || a.peerId.localeCompare(b.peerId))
}
