/**
 * Dialing policy. libp2p 3 does not dial what discovery finds; this module does.
 *
 * Invariants:
 *  - for symmetric discovery (mDNS, peer exchange through presence) only the side with
 *    the smaller peer id dials, so a pair ends up with one connection, not two;
 *  - bootstrap addresses and remembered peers are dialed by us whatever the ids (the
 *    other side does not know us yet);
 *  - every dial has a timeout, and a failed target is retried with exponential backoff
 *    (1 s doubling to 60 s, with jitter) for as long as it is wanted;
 *  - a peer the connection gater refuses is not retried (it would only be refused again);
 *  - a known peer that cannot be reached at the addresses we have (a laptop that moved
 *    from home to the office) is looked up in the DHT once its backoff reaches 4 s, at most
 *    once a minute per peer: the addresses found are tried on the next attempt;
 *  - reconnect (a link that stopped delivering) hangs up and dials once, whatever the ids;
 *  - libp2p emits `peer:discovery` only the first time a peer enters its peer store, and
 *    mDNS answers arrive within milliseconds of the host starting, before this module
 *    listens: start() therefore treats every peer already in the peer store as discovered.
 */
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { DEFAULT_TIMEOUTS, withDeadline } from '../util/abort.js'
import type { Clock, TimerHandle } from '../util/clock.js'
import { describeError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'
import type { RmeshLibp2p } from './host.js'
import type { PeerBook } from './peerbook.js'

export interface DialerComponents {
  libp2p: RmeshLibp2p
  peerBook: PeerBook
  clock: Clock
  logger: Logger
  random?: () => number
}

export interface DialerOptions {
  bootstrap: string[]
  minBackoffMs?: number
  maxBackoffMs?: number
}

export interface Dialer {
  start(): Promise<void>
  stop(): void
  /** A peer found by symmetric discovery: dial if our id is the smaller. */
  discovered(peerId: string, addrs: string[]): void
  /** Keep a connection to this peer (dial now and after every disconnect). */
  keep(peerId: string, addrs: string[]): void
  /** Stop dialing this peer (revoked, refused). */
  drop(peerId: string): void
  /**
   * Replace the connections to this peer with a new one (a link that stopped delivering):
   * hang up, then dial once whatever the ids; a peer we keep is redialed as usual too.
   */
  reconnect(peerId: string): Promise<void>
}

interface Target {
  key: string
  peerId?: string
  addrs: string[]
  backoff: number
  timer?: TimerHandle
  inFlight: boolean
  lookedUpAt?: number
}

/** A target's backoff from which its addresses are looked up in the DHT, and how often. */
const LOOKUP_FROM_BACKOFF_MS = 4_000
const LOOKUP_EVERY_MS = 60_000

export function createDialer(components: DialerComponents, options: DialerOptions): Dialer {
  const { libp2p, clock, logger, peerBook } = components
  const random = components.random ?? Math.random
  const selfId = libp2p.peerId.toString()
  const minBackoff = options.minBackoffMs ?? 1_000
  const maxBackoff = options.maxBackoffMs ?? 60_000
  const targets = new Map<string, Target>()
  let running = false

  const connected = (peerId: string) =>
    libp2p.getConnections().some((c) => c.remotePeer.toString() === peerId && c.status === 'open')

  const schedule = (t: Target, delay: number) => {
    if (!running || t.timer) return
    t.timer = clock.setTimeout(() => {
      t.timer = undefined
      void attempt(t)
    }, delay)
  }

  const attempt = async (t: Target) => {
    if (!running || t.inFlight || !targets.has(t.key)) return
    if (t.peerId && connected(t.peerId)) {
      t.backoff = minBackoff
      return
    }
    t.inFlight = true
    try {
      let target: PeerId | Multiaddr | Multiaddr[]
      if (t.peerId) {
        const id = peerIdFromString(t.peerId)
        const addrs = t.addrs.map((a) => multiaddr(a))
        if (addrs.length > 0) await libp2p.peerStore.merge(id, { multiaddrs: addrs })
        target = id
      } else {
        target = t.addrs.map((a) => multiaddr(a))
      }
      const conn = await withDeadline(DEFAULT_TIMEOUTS.dial, undefined, (signal) =>
        libp2p.dial(target, { signal }),
      )
      t.backoff = minBackoff
      if (!t.peerId) {
        // A bootstrap address without /p2p/: from now on we know whom it reaches.
        t.peerId = conn.remotePeer.toString()
      }
    } catch (err) {
      logger.debug('dial failed', { target: t.key, err: describeError(err), retryInMs: t.backoff })
      if (
        t.peerId &&
        t.backoff >= LOOKUP_FROM_BACKOFF_MS &&
        (t.lookedUpAt === undefined || clock.monotonic() - t.lookedUpAt >= LOOKUP_EVERY_MS)
      ) {
        t.lookedUpAt = clock.monotonic()
        void lookUp(t)
      }
      const delay = t.backoff * (0.8 + random() * 0.4)
      t.backoff = Math.min(maxBackoff, t.backoff * 2)
      schedule(t, delay)
    } finally {
      t.inFlight = false
    }
  }

  /** Ask the DHT where a peer is now; what it finds joins the target's addresses. */
  const lookUp = async (t: Target) => {
    try {
      const id = peerIdFromString(t.peerId as string)
      const info = await withDeadline(DEFAULT_TIMEOUTS.request, undefined, (signal) =>
        libp2p.peerRouting.findPeer(id, { signal }),
      )
      const found = info.multiaddrs.map((a) => a.toString())
      if (found.length === 0) return
      t.addrs = [...new Set([...found, ...t.addrs])].slice(0, 16)
      logger.debug('found a peer again through the DHT', { peer: t.peerId, addrs: found })
    } catch (err) {
      logger.debug('DHT lookup failed', { peer: t.peerId, err: describeError(err) })
    }
  }

  const want = (key: string, peerId: string | undefined, addrs: string[]) => {
    if (peerId === selfId) return
    let t = targets.get(key)
    if (!t) {
      t = { key, peerId, addrs, backoff: minBackoff, inFlight: false }
      targets.set(key, t)
    } else if (addrs.length > 0) {
      t.addrs = [...new Set([...addrs, ...t.addrs])].slice(0, 16)
    }
    if (!t.timer) void attempt(t)
  }

  const onDisconnect = (evt: CustomEvent<PeerId>) => {
    const peerId = evt.detail.toString()
    for (const t of targets.values()) {
      if (t.peerId === peerId) schedule(t, t.backoff)
    }
  }

  const onConnect = (evt: CustomEvent<PeerId>) => {
    const peerId = evt.detail.toString()
    const addrs = libp2p
      .getConnections(evt.detail)
      .filter((c) => c.direction === 'outbound')
      .map((c) => c.remoteAddr.toString())
    void peerBook.remember(peerId, addrs, clock.wall()).catch(() => {})
    // Remember whoever connects, so we redial them after a restart.
    if (!targets.has(peerId) && addrs.length > 0)
      targets.set(peerId, { key: peerId, peerId, addrs, backoff: minBackoff, inFlight: false })
  }

  const onDiscovery = (evt: CustomEvent<{ id: PeerId; multiaddrs: Multiaddr[] }>) => {
    const peerId = evt.detail.id.toString()
    const addrs = evt.detail.multiaddrs.map((a) => a.toString())
    const isBootstrap = options.bootstrap.some((b) => b.includes(peerId))
    if (isBootstrap) want(peerId, peerId, addrs)
    else api.discovered(peerId, addrs)
  }

  const api: Dialer = {
    async start() {
      running = true
      libp2p.addEventListener('peer:disconnect', onDisconnect)
      libp2p.addEventListener('peer:connect', onConnect)
      libp2p.addEventListener('peer:discovery', onDiscovery)
      for (const addr of options.bootstrap) {
        try {
          const peerId = multiaddr(addr)
            .getComponents()
            .find((c) => c.name === 'p2p')?.value
          if (peerId) peerIdFromString(peerId)
          want(peerId ?? addr, peerId, [addr])
        } catch (err) {
          logger.warn('ignoring a bootstrap address that does not parse', {
            addr,
            err: describeError(err),
          })
        }
      }
      for (const rec of await peerBook.all()) want(rec.peerId, rec.peerId, rec.addrs)
      for (const peer of await libp2p.peerStore.all()) {
        api.discovered(
          peer.id.toString(),
          peer.addresses.map((a) => a.multiaddr.toString()),
        )
      }
    },
    stop() {
      running = false
      libp2p.removeEventListener('peer:disconnect', onDisconnect)
      libp2p.removeEventListener('peer:connect', onConnect)
      libp2p.removeEventListener('peer:discovery', onDiscovery)
      for (const t of targets.values()) if (t.timer) clock.clearTimeout(t.timer)
      targets.clear()
    },
    discovered(peerId, addrs) {
      if (peerId === selfId || connected(peerId)) return
      if (selfId < peerId) want(peerId, peerId, addrs)
    },
    keep(peerId, addrs) {
      want(peerId, peerId, addrs)
    },
    async reconnect(peerId) {
      if (!running || peerId === selfId) return
      try {
        const id = peerIdFromString(peerId)
        await libp2p.hangUp(id).catch(() => undefined)
        await withDeadline(DEFAULT_TIMEOUTS.dial, undefined, (signal) =>
          libp2p.dial(id, { signal }),
        )
      } catch (err) {
        // The other side, a kept target or the next introduction dials again.
        logger.debug('reconnect failed', { peer: peerId, err: describeError(err) })
      }
    },
    drop(peerId) {
      const t = targets.get(peerId)
      if (t?.timer) clock.clearTimeout(t.timer)
      targets.delete(peerId)
      void peerBook.forget(peerId).catch(() => {})
    },
  }
  return api
}
