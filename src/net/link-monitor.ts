/**
 * Links that died without a word, found in seconds: a laptop unplugged at home and plugged
 * in at the office keeps sockets that look open on both sides (TCP says nothing until its
 * retransmissions give up, a quarter of an hour later), and libp2p's own ping reaps them
 * only every minute or two. Both sides of such a link have a cue:
 *
 *  - the machine that moved sees its own addresses change: when an address this machine had
 *    is gone or a new one appears (read every `pollMs`), every open connection is probed and
 *    `onAddressesChanged` fires (presence announces the new addresses at once);
 *  - the peer that stayed sees the mover come back on a new connection while the old one
 *    is still open: the older connections to that peer are probed.
 *
 * Invariants:
 *  - a probe is one ping round trip on that very connection within `probeTimeoutMs`; a
 *    connection that does not answer is closed (the dialer then redials its kept peers, the
 *    relay transport re-reserves), one that answers is left alone: a probe never closes a
 *    working link;
 *  - at most one probe per connection at a time; probes hold no timers after stop();
 *  - loopback addresses do not count as a change (they never move).
 */
import { networkInterfaces } from 'node:os'
import type { Connection } from '@libp2p/interface'
import { byteStream } from '@libp2p/utils'
import { withDeadline } from '../util/abort.js'
import type { Clock, TimerHandle } from '../util/clock.js'
import { describeError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'

export const PING_PROTOCOL = '/ipfs/ping/1.0.0'
const PING_BYTES = 32

export interface LinkMonitorComponents {
  libp2p: {
    getConnections(): Connection[]
    addEventListener(type: 'connection:open', fn: (evt: CustomEvent<Connection>) => void): void
    removeEventListener(type: 'connection:open', fn: (evt: CustomEvent<Connection>) => void): void
  }
  clock: Clock
  logger: Logger
  /** This machine's non-loopback addresses now (default: os.networkInterfaces()). */
  addresses?: () => string[]
  /** Does the connection answer within the signal? (default: a ping round trip on it) */
  probe?: (connection: Connection, signal: AbortSignal) => Promise<void>
}

export interface LinkMonitorOptions {
  pollMs?: number
  probeTimeoutMs?: number
  /** This machine's addresses changed (after the probes started). */
  onAddressesChanged?: (addresses: string[]) => void
}

export interface LinkMonitor {
  start(): void
  stop(): void
  /** Probe these connections now; resolves with how many were closed. */
  probe(connections: Connection[]): Promise<number>
  stats(): { addressChanges: number; probes: number; closed: number }
}

export function localAddresses(): string[] {
  const out: string[] = []
  for (const list of Object.values(networkInterfaces()))
    for (const i of list ?? []) if (!i.internal) out.push(i.address)
  return out.sort()
}

/** One ping round trip on `connection` (libp2p's ping protocol, which every node serves). */
export async function pingConnection(connection: Connection, signal: AbortSignal): Promise<void> {
  const stream = await connection.newStream(PING_PROTOCOL, { signal, runOnLimitedConnection: true })
  try {
    const bytes = byteStream(stream)
    const sent = crypto.getRandomValues(new Uint8Array(PING_BYTES))
    const [, echo] = await Promise.all([
      bytes.write(sent, { signal }),
      bytes.read({ bytes: PING_BYTES, signal }),
    ])
    const got = echo.subarray()
    if (got.byteLength !== PING_BYTES || got.some((b, k) => b !== sent[k]))
      throw new Error('ping answered with other bytes')
    await stream.close({ signal })
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}

export function createLinkMonitor(
  components: LinkMonitorComponents,
  options: LinkMonitorOptions = {},
): LinkMonitor {
  const { libp2p, clock, logger } = components
  const pollMs = options.pollMs ?? 2_000
  const probeTimeoutMs = options.probeTimeoutMs ?? 3_000
  const readAddresses = components.addresses ?? localAddresses
  const probeOne = components.probe ?? pingConnection
  const probing = new Set<string>()
  const counts = { addressChanges: 0, probes: 0, closed: 0 }
  let known = ''
  let timer: TimerHandle | undefined
  let running = false

  const probe = async (connections: Connection[]): Promise<number> => {
    const results = await Promise.all(
      connections.map(async (conn) => {
        if (conn.status !== 'open' || probing.has(conn.id)) return false
        probing.add(conn.id)
        counts.probes++
        try {
          await withDeadline(probeTimeoutMs, undefined, (signal) => probeOne(conn, signal))
          return false
        } catch (err) {
          if (!running || conn.status !== 'open') return false
          counts.closed++
          logger.info('closing a connection that no longer answers', {
            peer: conn.remotePeer.toString(),
            addr: conn.remoteAddr.toString(),
            err: describeError(err),
          })
          conn.abort(new Error('the link stopped answering (address change or a peer that moved)'))
          return true
        } finally {
          probing.delete(conn.id)
        }
      }),
    )
    return results.filter(Boolean).length
  }

  const poll = () => {
    timer = undefined
    if (!running) return
    const now = readAddresses()
    const key = now.join(',')
    if (key !== known) {
      logger.info('this machine’s addresses changed: checking every connection', {
        was: known.split(',').filter(Boolean),
        now,
      })
      known = key
      counts.addressChanges++
      void probe(libp2p.getConnections())
      options.onAddressesChanged?.(now)
    }
    timer = clock.setTimeout(poll, pollMs)
  }

  const onOpen = (evt: CustomEvent<Connection>) => {
    const fresh = evt.detail
    const older = libp2p
      .getConnections()
      .filter(
        (c) =>
          c.id !== fresh.id &&
          c.status === 'open' &&
          c.remotePeer.equals(fresh.remotePeer) &&
          c.timeline.open < fresh.timeline.open,
      )
    if (older.length > 0) void probe(older)
  }

  return {
    start() {
      if (running) return
      running = true
      known = readAddresses().join(',')
      libp2p.addEventListener('connection:open', onOpen)
      timer = clock.setTimeout(poll, pollMs)
    },
    stop() {
      running = false
      libp2p.removeEventListener('connection:open', onOpen)
      if (timer) clock.clearTimeout(timer)
      timer = undefined
    },
    probe,
    stats: () => ({ ...counts }),
  }
}
