/**
 * Finding who holds a manifest: gossip announcements on the LAN, kad-dht provider
 * records beyond it.
 *
 * Invariants:
 *  - an announcement is a signed gossip message (StrictSign), so its author is `from`;
 *    a peer can only claim to hold things itself, and a false claim costs the fetcher one
 *    not-have answer;
 *  - announcements are bounded (size checked before decoding, at most MAX_PER_MESSAGE
 *    CIDs) and expire after `ttlMs`: a holder that goes quiet is forgotten (swept every
 *    announce interval, so memory follows what is held now, not all ever announced);
 *  - a peer announces a manifest only when it holds every block of it;
 *  - gossip may drop a message: holders re-announce every `announceIntervalMs` (each round
 *    at a random point of its interval, ±25 %); the DHT is best effort and always bounded
 *    by a timeout;
 *  - a round leaves out a manifest when ENOUGH_HOLDERS other holders of it were heard within
 *    the last round's span (duplicate suppression, as mDNS answers do): fetchers need a few
 *    sources, not all of them, and every holder repeating itself cost every node of the mesh
 *    a message per holder and round (28 renderers holding one scene were 0.34 messages per
 *    chunk at each node of a 30-daemon mesh). A manifest's rounds so cost the mesh about
 *    ENOUGH_HOLDERS messages per interval, whatever the number of holders; a holder left
 *    out is still found by the job log (the submitter), the DHT, or its own first
 *    announcement while fresh;
 *  - the periodic re-announcement lists what `announcedPeriodically` names (the daemon:
 *    scenes and their files, which nodes fetch from many holders), not every output held:
 *    a chunk's complete entry names its outputs' holder, and each node re-announcing every
 *    output it kept cost every node of the mesh messages that grew with the farm's work
 *    (issue 17; a new output is never announced by gossip, see worker/runner.ts);
 *  - the DHT is the fallback, not the first resort: findProviders walks it only when
 *    neither the caller (who often knows the holder from the job log: a chunk's
 *    completer, a job's submitter) nor gossip names a holder. A walk costs RPCs to many
 *    peers and up to its timeout, once per output otherwise. Outputs are not provided in
 *    the DHT either (announce with dht: false): their complete entry names the holder.
 *    A new job's scene is provided a few seconds late (dht: 'deferred'): a provide walks
 *    the DHT, and right after a submit the CPU belongs to the first claims and renders.
 *    At start a node provides what `providedOnStart` names (the daemon: scenes), not
 *    every output it holds: thousands of provide walks at once would stall the start.
 *  - what this node provided and no longer holds (a deleted job's scene) is withdrawn at
 *    the next announce round: the DHT would otherwise re-provide it for days, and every
 *    node would keep its record (see the provider validity in net/host.ts).
 */
import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { Message } from '@libp2p/gossipsub'
import { CID } from 'multiformats/cid'
import type { RmeshLibp2p } from '../net/host.js'
import { deadline, withDeadline } from '../util/abort.js'
import { decodeBounded, encode } from '../util/cbor.js'
import { type Clock, systemClock } from '../util/clock.js'
import { describeError } from '../util/errors.js'
import { parseCid } from '../util/hash.js'
import type { Logger } from '../util/logger.js'
import type { BlockStore } from './block-store.js'
import { cidFromBytes, cidToBytes } from './manifest.js'

export const HAVE_TOPIC = 'rmesh/have/1.0.0'
export const MAX_HAVE_BYTES = 64 * 1024
export const MAX_PER_MESSAGE = 1024
/** How long a deferred DHT provide waits. */
export const DHT_DEFER_MS = 3_000
/** A round leaves out a manifest that this many other holders announced within its span. */
export const ENOUGH_HOLDERS = 4
/** Each round comes at a random point within ±this share of the interval. */
const ROUND_JITTER = 0.25

/**
 * The manifests a round re-announces: those held of which fewer than `enough` other
 * holders were heard since `since` (monotonic ms). `heardAt` gives a manifest's holders
 * and when each was last heard.
 */
export function manifestsToReannounce(
  held: readonly string[],
  heardAt: (cid: string) => ReadonlyMap<string, number> | undefined,
  since: number,
  enough = ENOUGH_HOLDERS,
): string[] {
  return held.filter((cid) => {
    let recent = 0
    for (const at of heardAt(cid)?.values() ?? [])
      if (at >= since && ++recent >= enough) return false
    return true
  })
}

export interface ProviderIndexComponents {
  libp2p: RmeshLibp2p
  logger: Logger
  /** When given, its complete manifests are announced periodically. */
  store?: BlockStore
  isAdmitted?: (peerId: string) => boolean
  /**
   * The held manifests worth a DHT record when the node starts (job scenes); default
   * every complete manifest held. Outputs need none: their complete entry names the holder.
   */
  providedOnStart?: () => Promise<string[]>
  /**
   * The held manifests the periodic gossip re-announces; default every complete manifest
   * held. The daemon: scenes and their files (outputs are named by their complete entry).
   */
  announcedPeriodically?: () => Promise<string[]>
  clock?: Clock
  /** In [0, 1): where in its jittered span each round falls. Default Math.random. */
  random?: () => number
}

export interface ProviderIndexOptions {
  /** Re-announce held manifests this often (default 30 s; 0 disables the timer). */
  announceIntervalMs?: number
  /** Forget a holder not heard for this long (default 3 intervals + 10 s). */
  ttlMs?: number
  /** Publish provider records to the DHT (default true). */
  dht?: boolean
  dhtTimeoutMs?: number
}

export interface ProviderIndex {
  start(): Promise<void>
  stop(): Promise<void>
  /**
   * Announce now on gossip, and provide in the DHT in the background: at once (default),
   * DHT_DEFER_MS later ('deferred'), or not at all (false).
   */
  announce(manifestCids: string[], options?: { dht?: 'now' | 'deferred' | false }): Promise<void>
  /** Holders known from gossip (fresh within the TTL), most recently heard first. */
  providersOf(manifestCid: string): string[]
  /**
   * Holders to fetch from: `known` (the caller's, first) and gossip's, this node excluded;
   * only when those are none (or `dht` is 'always': the known ones failed), DHT providers
   * too, bounded by a timeout. Never throws for DHT trouble.
   */
  findProviders(
    manifestCid: string,
    options?: {
      known?: string[]
      dht?: 'fallback' | 'always'
      signal?: AbortSignal
      timeoutMs?: number
      max?: number
    },
  ): Promise<string[]>
}

export function encodeHave(manifestCids: string[]): Uint8Array {
  return encode({ manifests: manifestCids.map(cidToBytes) })
}

export function decodeHave(bytes: Uint8Array): string[] {
  const raw = decodeBounded(bytes, MAX_HAVE_BYTES, 'have announcement') as { manifests?: unknown }
  if (raw === null || typeof raw !== 'object' || !Array.isArray(raw.manifests)) {
    throw new TypeError('have announcement: no manifests array')
  }
  if (raw.manifests.length > MAX_PER_MESSAGE)
    throw new TypeError('have announcement: too many CIDs')
  return raw.manifests.map(cidFromBytes)
}

export function createProviderIndex(
  components: ProviderIndexComponents,
  options: ProviderIndexOptions = {},
): ProviderIndex {
  const { libp2p, store, isAdmitted } = components
  const log = components.logger.child('providers')
  const clock = components.clock ?? systemClock
  const random = components.random ?? Math.random
  const interval = options.announceIntervalMs ?? 30_000
  const ttlMs = options.ttlMs ?? 3 * (interval || 30_000) + 10_000
  const useDht = options.dht ?? true
  const dhtTimeoutMs = options.dhtTimeoutMs ?? 10_000
  const pubsub = libp2p.services.pubsub
  // manifest → (peer → last heard, monotonic)
  const holders = new Map<string, Map<string, number>>()
  const complete = new Set<string>()
  // Provided in the DHT by us: the DHT re-provides them until told otherwise.
  const providedInDht = new Set<string>()
  const lifetime = new AbortController()
  let timer: ReturnType<Clock['setTimeout']> | undefined
  let running = false

  const onMessage = (evt: CustomEvent<Message>) => {
    const msg = evt.detail
    if (msg.topic !== HAVE_TOPIC || msg.type !== 'signed') return
    const from = msg.from.toString()
    if (isAdmitted && !isAdmitted(from)) return
    let cids: string[]
    try {
      cids = decodeHave(msg.data)
    } catch (err) {
      log.debug('dropping bad have announcement', { from, err: describeError(err) })
      return
    }
    const now = clock.monotonic()
    for (const cid of cids) {
      const m = holders.get(cid) ?? new Map<string, number>()
      holders.set(cid, m)
      m.set(from, now)
    }
  }

  async function heldComplete(): Promise<string[]> {
    if (!store) return []
    const out: string[] = []
    const held = await store.listManifests()
    // Removed manifests (deleted jobs) leave the cache too.
    const heldSet = new Set(held)
    for (const cid of complete) if (!heldSet.has(cid)) complete.delete(cid)
    for (const cid of providedInDht) if (!heldSet.has(cid)) withdrawFromDht(cid)
    for (const cid of held) {
      if (complete.has(cid)) {
        out.push(cid)
        continue
      }
      try {
        if ((await store.missingBlocks(cid)).length === 0) {
          complete.add(cid)
          out.push(cid)
        }
      } catch {
        // Unreadable or removed meanwhile: not announced.
      }
    }
    return out
  }

  async function publish(cids: string[]): Promise<void> {
    for (let i = 0; i < cids.length; i += MAX_PER_MESSAGE) {
      try {
        await pubsub.publish(HAVE_TOPIC, encodeHave(cids.slice(i, i + MAX_PER_MESSAGE)))
      } catch (err) {
        log.debug('have publish failed', { err: describeError(err) })
      }
    }
  }

  function provideInDht(cids: string[]): void {
    if (!useDht) return
    for (const cid of cids) {
      providedInDht.add(cid)
      withDeadline(dhtTimeoutMs, lifetime.signal, (signal) =>
        libp2p.contentRouting.provide(CID.parse(cid), { signal }),
      ).catch((err) => log.debug('dht provide failed', { cid, err: describeError(err) }))
    }
  }

  /** Stop re-providing what this node no longer holds (our own record goes at once). */
  function withdrawFromDht(cid: string): void {
    providedInDht.delete(cid)
    withDeadline(dhtTimeoutMs, lifetime.signal, (signal) =>
      libp2p.contentRouting.cancelReprovide(CID.parse(cid), { signal }),
    ).catch((err) => log.debug('dht cancel reprovide failed', { cid, err: describeError(err) }))
  }

  function sweepHolders(): void {
    const now = clock.monotonic()
    for (const [cid, m] of holders) {
      for (const [peer, at] of m) if (now - at > ttlMs) m.delete(peer)
      if (m.size === 0) holders.delete(cid)
    }
  }

  /** The complete manifests held, narrowed to what `wanted` names when it is given. */
  async function heldAmong(wanted?: () => Promise<string[]>): Promise<string[]> {
    const held = await heldComplete()
    if (!wanted) return held
    const names = new Set(await wanted())
    return held.filter((cid) => names.has(cid))
  }

  async function startProvide(): Promise<void> {
    provideInDht(await heldAmong(components.providedOnStart))
  }

  // A round's span: the longest two rounds can be apart, so a holder that announced in
  // its last round is still counted by every other holder's next one.
  const roundSpan = interval * (1 + 2 * ROUND_JITTER)

  async function periodic(): Promise<void> {
    sweepHolders()
    const held = await heldAmong(components.announcedPeriodically).catch(() => [] as string[])
    const cids = manifestsToReannounce(
      held,
      (cid) => holders.get(cid),
      clock.monotonic() - roundSpan,
    )
    if (cids.length > 0) await publish(cids)
  }

  function scheduleRound(): void {
    if (!running || interval <= 0) return
    const wait = interval * (1 - ROUND_JITTER + 2 * ROUND_JITTER * random())
    timer = clock.setTimeout(() => {
      void periodic().finally(scheduleRound)
    }, wait)
  }

  return {
    async start() {
      if (running) return
      running = true
      if (isAdmitted) {
        // Not delivered and not forwarded: gossip from or through unadmitted peers.
        pubsub.topicValidators.set(HAVE_TOPIC, (peer) =>
          isAdmitted(peer.toString()) ? TopicValidatorResult.Accept : TopicValidatorResult.Reject,
        )
      }
      pubsub.subscribe(HAVE_TOPIC)
      pubsub.addEventListener('message', onMessage)
      scheduleRound()
      // Our holdings reach the DHT once per start; gossip repeats them every interval.
      void startProvide().catch((err) =>
        log.debug('dht provide on start failed', { err: describeError(err) }),
      )
    },
    async stop() {
      if (!running) return
      running = false
      if (timer) clock.clearTimeout(timer)
      lifetime.abort()
      pubsub.removeEventListener('message', onMessage)
      pubsub.unsubscribe(HAVE_TOPIC)
    },
    async announce(manifestCids, announceOptions = {}) {
      for (const cid of manifestCids) parseCid(cid)
      for (const cid of manifestCids) complete.add(cid)
      await publish(manifestCids)
      const dht = announceOptions.dht ?? 'now'
      if (dht === 'now') provideInDht(manifestCids)
      else if (dht === 'deferred') {
        const t = setTimeout(() => {
          if (running) provideInDht(manifestCids)
        }, DHT_DEFER_MS)
        t.unref?.()
      }
    },
    providersOf(manifestCid) {
      const m = holders.get(manifestCid)
      if (!m) return []
      const now = clock.monotonic()
      for (const [peer, at] of m) if (now - at > ttlMs) m.delete(peer)
      if (m.size === 0) holders.delete(manifestCid)
      return [...m.entries()].sort((a, b) => b[1] - a[1]).map(([p]) => p)
    },
    async findProviders(manifestCid, opts = {}) {
      const self = libp2p.peerId.toString()
      const found = new Set([...(opts.known ?? []), ...this.providersOf(manifestCid)])
      found.delete(self)
      if (!useDht || (found.size > 0 && opts.dht !== 'always')) return [...found]
      const max = opts.max ?? 20
      const bound = deadline(opts.timeoutMs ?? dhtTimeoutMs, opts.signal)
      const signal = bound.signal
      try {
        for await (const p of libp2p.contentRouting.findProviders(parseCid(manifestCid), {
          signal,
        })) {
          const id = p.id.toString()
          if (id === self || (isAdmitted && !isAdmitted(id))) continue
          // Remember addresses so the exchange can dial a provider found beyond the LAN.
          if (p.multiaddrs.length > 0) {
            await libp2p.peerStore.merge(p.id, { multiaddrs: p.multiaddrs }).catch(() => undefined)
          }
          found.add(id)
          if (found.size >= max) break
        }
      } catch (err) {
        log.debug('dht findProviders ended', { manifestCid, err: describeError(err) })
      } finally {
        bound.clear()
      }
      return [...found]
    },
  }
}
