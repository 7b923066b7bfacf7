/**
 * TEST ONLY: a partition gate for the fault tests (test/integration/faults/). When the
 * environment variable RMESH_TEST_BLOCK_PEERS_FILE names a file, each line of it is one
 * side of a partition (peer ids separated by spaces): a daemon listed on one line refuses
 * connections to and from every peer listed on the other lines and closes the open ones.
 * Every daemon of a test reads the same file, every 200 ms; emptying it heals.
 *
 * Invariants: with the variable unset (always, outside tests) nothing here exists: the
 * daemon gets its own gater unchanged and no timer runs. A missing or unreadable file
 * blocks nobody.
 */
import { readFile } from 'node:fs/promises'
import type { ConnectionGater, PeerId } from '@libp2p/interface'
import type { RmeshLibp2p } from './host.js'

export const TEST_BLOCK_PEERS_ENV = 'RMESH_TEST_BLOCK_PEERS_FILE'

export interface TestPartition {
  /** The daemon's gater, refusing blocked peers first. */
  wrap(inner: ConnectionGater): ConnectionGater
  start(libp2p: RmeshLibp2p): void
  stop(): void
}

export function testPartitionFromEnv(
  env: NodeJS.ProcessEnv = process.env,
): TestPartition | undefined {
  const file = env[TEST_BLOCK_PEERS_ENV]
  if (!file) return undefined
  let blocked = new Set<string>()
  let timer: ReturnType<typeof setInterval> | undefined
  const isBlocked = (p: PeerId) => blocked.has(p.toString())
  const refresh = async (libp2p: RmeshLibp2p) => {
    const self = libp2p.peerId.toString()
    try {
      const sides = (await readFile(file, 'utf8'))
        .split('\n')
        .map((l) => l.split(/\s+/).filter(Boolean))
      blocked = sides.some((side) => side.includes(self))
        ? new Set(sides.filter((side) => !side.includes(self)).flat())
        : new Set()
    } catch {
      blocked = new Set()
    }
    for (const c of libp2p.getConnections())
      if (isBlocked(c.remotePeer)) c.abort(new Error('test partition'))
  }
  return {
    wrap(inner) {
      return {
        ...inner,
        denyDialPeer: (p) => isBlocked(p) || (inner.denyDialPeer?.(p) ?? false),
        denyOutboundEncryptedConnection: (p, c) =>
          isBlocked(p) || (inner.denyOutboundEncryptedConnection?.(p, c) ?? false),
        denyInboundEncryptedConnection: (p, c) =>
          isBlocked(p) || (inner.denyInboundEncryptedConnection?.(p, c) ?? false),
      }
    },
    start(libp2p) {
      void refresh(libp2p)
      timer = setInterval(() => void refresh(libp2p), 200)
      timer.unref()
    },
    stop() {
      if (timer) clearInterval(timer)
    },
  }
}
