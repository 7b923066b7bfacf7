/**
 * The block exchange: serves /rmesh/blocks/1.0.0 from the local store, tells subscribers
 * which blocks of a manifest it holds (/rmesh/blocks-have/1.0.0, pushed as they arrive),
 * and fetches a manifest's blocks from every provider in parallel.
 *
 * Invariants:
 *  - a block is stored only after its bytes hash to the CID we asked for; a peer that
 *    sends a bad block, a block we did not ask for, or garbage is dropped from the fetch
 *    (and penalised for `penaltyMs`), and what it owed us is fetched from the others;
 *  - at most `window` blocks are outstanding per peer and at most `window` of its verified
 *    blocks are being written, so a fetch buffers at most 2 x window x (block + frame
 *    overhead) per peer, whatever the file size;
 *  - a fetch asks only for blocks the store lacks when it starts, so a fetch interrupted
 *    by a restart resumes where it stopped;
 *  - every network wait is bounded: per-block timeout, stall timeout for the fetch, idle
 *    timeout for a served stream;
 *  - with `isAdmitted`, unadmitted peers are refused before any byte is read;
 *  - a failed write to the store (disk full) ends the fetch with that typed error; blocks
 *    already stored stay stored;
 *  - swarming: a peer is asked only for blocks its have-bitfield names (peers without the
 *    have protocol are asked blindly), rarest first in this fetch's random order (see
 *    selection.ts), and every block stored is announced at once to the subscribers of its
 *    manifest, so peers serve what they hold while they still fetch the rest;
 *  - a have-subscription costs the server one small frame per change, never a store scan:
 *    the bitfield is computed once per manifest and then kept by the fetches of this node.
 */
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import {
  DEFAULT_TIMEOUTS,
  linkSignals,
  sleep,
  throwIfAborted,
  withDeadline,
} from '../util/abort.js'
import { type Clock, systemClock } from '../util/clock.js'
import {
  AbortedError,
  NotFoundError,
  RmeshError,
  TimeoutError,
  describeError,
} from '../util/errors.js'
import type { Logger } from '../util/logger.js'
import type { BlockStore } from './block-store.js'
import { matchesCid } from './manifest.js'
import {
  BLOCKS_PROTOCOL,
  MAX_REQUEST_BYTES,
  MAX_RESPONSE_BYTES,
  MAX_WANTS,
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponseParts,
  HAVE_PROTOCOL,
  MAX_HAVE_FRAME_BYTES,
  MAX_HAVE_REQUEST_BYTES,
  decodeHaveBits,
  decodeHaveSubscribe,
  encodeHaveBits,
  encodeHaveSubscribe,
} from './wire.js'
import {
  bitfieldFromMissing,
  bitfieldHas,
  bitfieldSet,
  selectBlocks,
  validBitfield,
} from './selection.js'

export { BLOCKS_PROTOCOL, HAVE_PROTOCOL }

/** No provider could supply some blocks before the stall timeout. */
export class NoProvidersError extends RmeshError {
  constructor(what: string, details?: Record<string, unknown>) {
    super('ERR_NO_PROVIDERS', `no provider could supply ${what}; check that a holder is online`, {
      details,
    })
    this.name = 'NoProvidersError'
  }
}

/** A peer broke the protocol (bad block, unrequested frame, garbage). Internal to a fetch. */
class PeerMisbehaved extends RmeshError {
  constructor(peer: string, reason: string) {
    super('ERR_PEER_MISBEHAVED', `peer ${peer} misbehaved: ${reason}`, {
      details: { peer, reason },
    })
    this.name = 'PeerMisbehaved'
  }
}

export interface BlockExchangeComponents {
  libp2p: Libp2p
  store: BlockStore
  logger: Logger
  /** When given, only peers for which it returns true are served. */
  isAdmitted?: (peerId: string) => boolean
  clock?: Clock
}

export interface BlockExchangeOptions {
  /** Blocks in flight per peer (default 8). */
  window?: number
  /** A peer that owes us a block and sends nothing for this long is dropped (default 30 s). */
  blockTimeoutMs?: number
  /** A fetch that receives no block from anyone for this long fails (default 60 s). */
  stallTimeoutMs?: number
  /** Stream failures tolerated per peer per fetch before it is dropped (default 2). */
  maxPeerFailures?: number
  /** How long a peer that sent bad data is avoided by later fetches (default 10 min). */
  penaltyMs?: number
  /** Retry delay after a peer said it lacks a block (it may be fetching it; default 250 ms). */
  notHaveRetryMs?: number
  /** Serve at most this many bytes per second in total (default: unlimited). */
  uploadBytesPerSec?: number
  /**
   * Serve at most this many bytes per second in total over relayed connections (default:
   * unlimited): a relay carries every member's traffic, so bulk files through it are bounded.
   */
  relayedUploadBytesPerSec?: number
  /** A have-subscriber hears of changes at most this late, batched (default 20 ms). */
  haveCoalesceMs?: number
  /** Idle time after which a served stream is closed (default 60 s). */
  serveIdleTimeoutMs?: number
  maxInboundStreams?: number
  random?: () => number
}

export interface FetchProgress {
  blocksDone: number
  blocksTotal: number
  bytes: number
}

export interface FetchOptions {
  /** Peer ids (strings) that may hold the manifest. */
  providers: string[]
  signal?: AbortSignal
  onProgress?: (p: FetchProgress) => void
  /** Pin the manifest under this owner before fetching, so gc cannot race the fetch. */
  pinOwner?: string
}

export interface BlockExchange {
  start(): Promise<void>
  stop(): Promise<void>
  fetchManifest(manifestCid: string, options: FetchOptions): Promise<void>
  /**
   * Ask one peer for one block or manifest; returns verified bytes or null (not have).
   * Bounded by `timeoutMs` (default: the block timeout) and by `signal`.
   */
  requestOne(
    peer: string,
    cid: string,
    options?: { signal?: AbortSignal; timeoutMs?: number },
  ): Promise<Uint8Array | null>
  /** Counters since creation, for tests, the dashboard and the benchmark profile. */
  stats(): ExchangeStats
}

export interface ExchangeStats {
  servedBlocks: number
  servedBytes: number
  fetchedBlocks: number
  fetchedBytes: number
  /** Blocks received per provider peer id. */
  fetchedFrom: Record<string, number>
  badBlocks: number
}

export function createBlockExchange(
  components: BlockExchangeComponents,
  options: BlockExchangeOptions = {},
): BlockExchange {
  const { libp2p, store, isAdmitted } = components
  const log = components.logger.child('exchange')
  const clock = components.clock ?? systemClock
  const window = Math.max(1, Math.min(options.window ?? 8, MAX_WANTS))
  const blockTimeoutMs = options.blockTimeoutMs ?? DEFAULT_TIMEOUTS.blockRequest
  const stallTimeoutMs = options.stallTimeoutMs ?? 60_000
  const maxPeerFailures = options.maxPeerFailures ?? 2
  const penaltyMs = options.penaltyMs ?? 10 * 60_000
  const notHaveRetryMs = options.notHaveRetryMs ?? 250
  const serveIdleTimeoutMs = options.serveIdleTimeoutMs ?? 60_000
  const haveCoalesceMs = options.haveCoalesceMs ?? 20
  const random = options.random ?? Math.random
  const penalised = new Map<string, number>()
  const lifetime = new AbortController()
  const upload = createRateLimiter(options.uploadBytesPerSec, clock)
  const relayedUpload = createRateLimiter(options.relayedUploadBytesPerSec, clock)
  const isRelayed = (c: Connection) => c.remoteAddr.toString().includes('/p2p-circuit')
  let started = false
  const counters: ExchangeStats = {
    servedBlocks: 0,
    servedBytes: 0,
    fetchedBlocks: 0,
    fetchedBytes: 0,
    fetchedFrom: {},
    badBlocks: 0,
  }

  function penalise(peer: string, reason: string): void {
    log.warn('penalising peer', { peer, reason })
    penalised.set(peer, clock.monotonic() + penaltyMs)
  }

  function isPenalised(peer: string): boolean {
    const until = penalised.get(peer)
    if (until === undefined) return false
    if (until > clock.monotonic()) return true
    penalised.delete(peer)
    return false
  }

  async function lookup(cid: string): Promise<Uint8Array | null> {
    try {
      return await store.getBlock(cid)
    } catch (err) {
      if (!(err instanceof NotFoundError)) {
        if (!(err instanceof RmeshError)) throw err
        return null
      }
    }
    try {
      return await store.getManifestBytes(cid)
    } catch (err) {
      if (err instanceof RmeshError) return null
      throw err
    }
  }

  /** What this node holds of one manifest, shared by the have-streams that watch it. */
  interface Holding {
    /** null: the manifest is not held here (the bitfield is then empty). */
    blocks: string[] | null
    bits: Uint8Array
    positions: Map<string, number[]>
    listeners: Set<() => void>
  }
  interface HoldingEntry {
    users: number
    ready: Promise<Holding>
  }
  const holdings = new Map<string, HoldingEntry>()

  function setHolding(h: Holding, blocks: string[], missing: Iterable<string>): void {
    h.blocks = blocks
    h.bits = bitfieldFromMissing(blocks, missing)
    h.positions = new Map()
    blocks.forEach((cid, i) => {
      const at = h.positions.get(cid)
      if (at) at.push(i)
      else h.positions.set(cid, [i])
    })
    for (const f of h.listeners) f()
  }

  function markHeld(h: Holding, cid: string): void {
    for (const i of h.positions.get(cid) ?? []) bitfieldSet(h.bits, i)
    for (const f of h.listeners) f()
  }

  async function loadHolding(manifestCid: string): Promise<Holding> {
    const h: Holding = {
      blocks: null,
      bits: new Uint8Array(0),
      positions: new Map(),
      listeners: new Set(),
    }
    try {
      if (await store.hasManifest(manifestCid)) {
        const m = await store.getManifest(manifestCid)
        setHolding(h, m.blocks, await store.missingBlocks(manifestCid))
      }
    } catch (err) {
      // Unreadable here: we hold nothing of it as far as peers are concerned.
      log.debug('holding unreadable', { manifestCid, err: describeError(err) })
    }
    return h
  }

  /** The holding of a manifest; `known` (from a fetch that just scanned the store) spares a scan. */
  function acquireHolding(
    manifestCid: string,
    known?: { blocks: string[]; missing: string[] },
  ): HoldingEntry {
    let e = holdings.get(manifestCid)
    if (!e) {
      e = {
        users: 0,
        ready: known
          ? Promise.resolve({
              blocks: null,
              bits: new Uint8Array(0),
              positions: new Map(),
              listeners: new Set<() => void>(),
            })
          : loadHolding(manifestCid),
      }
      holdings.set(manifestCid, e)
    }
    if (known) {
      e.ready = e.ready.then((h) => {
        setHolding(h, known.blocks, known.missing)
        return h
      })
    }
    e.users++
    return e
  }

  function releaseHolding(manifestCid: string, e: HoldingEntry): void {
    if (--e.users === 0 && holdings.get(manifestCid) === e) holdings.delete(manifestCid)
  }

  /**
   * One have-subscription: the full bitfield now and again after every change (changes
   * during a write are coalesced into the next frame), until the client closes, nothing
   * changes for `serveIdleTimeoutMs` (the client resubscribes if it still cares), or we stop.
   */
  async function serveHave(stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    if (isAdmitted && !isAdmitted(peer)) {
      stream.abort(new Error('not admitted'))
      return
    }
    const lp = lpStream(stream, { maxDataLength: MAX_HAVE_REQUEST_BYTES })
    let manifestCid: string
    try {
      manifestCid = decodeHaveSubscribe(
        (
          await withDeadline(serveIdleTimeoutMs, lifetime.signal, (signal) => lp.read({ signal }))
        ).subarray(),
      )
    } catch (err) {
      log.debug('bad have subscription', { peer, err: describeError(err) })
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      return
    }
    const entry = acquireHolding(manifestCid)
    let dirty = true
    let ended = false
    let wakeUp: (() => void) | undefined
    const listener = () => {
      dirty = true
      wakeUp?.()
    }
    const end = () => {
      ended = true
      wakeUp?.()
    }
    lifetime.signal.addEventListener('abort', end, { once: true })
    // The client says nothing more: a read that ends (close, reset, extra frame) ends it.
    void lp.read({ signal: lifetime.signal }).then(end, end)
    let h: Holding | undefined
    try {
      h = await entry.ready
      h.listeners.add(listener)
      while (!ended) {
        if (dirty) {
          dirty = false
          const bits = encodeHaveBits(h.bits)
          await withDeadline(blockTimeoutMs, lifetime.signal, (signal) =>
            lp.write(bits, { signal }),
          )
          continue
        }
        const idle = await new Promise<boolean>((resolve) => {
          const t = setTimeout(() => resolve(true), serveIdleTimeoutMs)
          wakeUp = () => {
            clearTimeout(t)
            resolve(false)
          }
        })
        wakeUp = undefined
        if (idle) break
        // Blocks stored in a burst go out as one frame: fewer frames, same information.
        if (!ended) await sleep(haveCoalesceMs, lifetime.signal).catch(() => undefined)
      }
      await closeOrAbort(stream, 2_000)
    } catch (err) {
      log.debug('have stream ended with error', { peer, err: describeError(err) })
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      h?.listeners.delete(listener)
      lifetime.signal.removeEventListener('abort', end)
      releaseHolding(manifestCid, entry)
    }
  }

  async function serve(stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    if (isAdmitted && !isAdmitted(peer)) {
      log.debug('refusing unadmitted peer', { peer })
      stream.abort(new Error('not admitted'))
      return
    }
    const lp = lpStream(stream, { maxDataLength: MAX_REQUEST_BYTES })
    try {
      while (!lifetime.signal.aborted) {
        let frame: Uint8ArrayList
        try {
          frame = await withDeadline(serveIdleTimeoutMs, lifetime.signal, (signal) =>
            lp.read({ signal }),
          )
        } catch {
          break // end of requests, idle, or a broken stream: nothing more to answer
        }
        const wants = decodeRequest(frame.subarray())
        for (const cid of wants) {
          const block = await lookup(cid)
          if (block) await upload(block.byteLength, lifetime.signal)
          if (block && isRelayed(connection)) await relayedUpload(block.byteLength, lifetime.signal)
          const parts = encodeResponseParts(cid, block)
          await withDeadline(blockTimeoutMs, lifetime.signal, (signal) =>
            lp.write(new Uint8ArrayList(...parts), { signal }),
          )
          if (block) {
            counters.servedBlocks++
            counters.servedBytes += block.byteLength
          }
        }
      }
      await closeOrAbort(stream, 5_000)
    } catch (err) {
      // Garbage from a peer costs it its stream, never the daemon.
      log.debug('served stream ended with error', { peer, err: describeError(err) })
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }

  async function openStream(peer: string, signal: AbortSignal): Promise<Stream> {
    const id: PeerId = peerIdFromString(peer)
    return withDeadline(DEFAULT_TIMEOUTS.dial, signal, (s) =>
      libp2p.dialProtocol(id, BLOCKS_PROTOCOL, { signal: s }),
    )
  }

  async function requestOne(
    peer: string,
    cid: string,
    opts: { signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<Uint8Array | null> {
    return withDeadline(opts.timeoutMs ?? blockTimeoutMs, opts.signal, (signal) =>
      requestOneWithin(peer, cid, signal),
    )
  }

  async function requestOneWithin(
    peer: string,
    cid: string,
    signal: AbortSignal,
  ): Promise<Uint8Array | null> {
    const stream = await openStream(peer, signal)
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_RESPONSE_BYTES })
      await lp.write(encodeRequest([cid]), { signal })
      const res = decodeResponse((await lp.read({ signal })).subarray())
      if (res.cid !== cid) throw new PeerMisbehaved(peer, 'answered a different CID')
      if (res.block && !matchesCid(cid, res.block)) throw new PeerMisbehaved(peer, 'bad bytes')
      await closeOrAbort(stream, 2_000)
      return res.block
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      if (err instanceof PeerMisbehaved) penalise(peer, err.message)
      throw err
    }
  }

  async function fetchManifestBytes(
    manifestCid: string,
    providers: string[],
    signal: AbortSignal,
  ): Promise<void> {
    for (const peer of providers) {
      throwIfAborted(signal, 'fetch')
      try {
        const bytes = await requestOne(peer, manifestCid, { signal })
        if (!bytes) continue
        await store.putManifest(bytes)
        return
      } catch (err) {
        if (isFatal(err)) throw err
        log.debug('manifest request failed', { peer, err: describeError(err) })
      }
    }
    throw new NoProvidersError(`manifest ${manifestCid}`, { providers: providers.length })
  }

  async function fetchManifest(manifestCid: string, opts: FetchOptions): Promise<void> {
    const signal = opts.signal ?? lifetime.signal
    const self = libp2p.peerId.toString()
    const unique = [...new Set(opts.providers)].filter((p) => p !== self)
    // Penalised peers come last: used only when nobody else has what we need.
    const providers = [
      ...shuffle(
        unique.filter((p) => !isPenalised(p)),
        random,
      ),
      ...unique.filter((p) => isPenalised(p)),
    ]
    if (opts.pinOwner) await store.pin(opts.pinOwner, manifestCid)
    if (!(await store.hasManifest(manifestCid))) {
      await withDeadline(Number.POSITIVE_INFINITY, [signal, lifetime.signal], (s) =>
        fetchManifestBytes(manifestCid, providers, s),
      )
    }
    const manifest = await store.getManifest(manifestCid)
    const missing = await store.missingBlocks(manifestCid)
    const total = new Set(manifest.blocks).size
    let done = total - missing.length
    let bytes = 0
    opts.onProgress?.({ blocksDone: done, blocksTotal: total, bytes })
    if (missing.length === 0) return
    const holding = acquireHolding(manifestCid, { blocks: manifest.blocks, missing })
    try {
      const held = await holding.ready
      const run = new FetchRun(
        manifestCid,
        manifest.blocks,
        shuffle(missing, random),
        providers,
        signal,
        held,
      )
      await run.execute((n) => {
        done++
        bytes += n
        opts.onProgress?.({ blocksDone: done, blocksTotal: total, bytes })
      })
    } finally {
      releaseHolding(manifestCid, holding)
    }
  }

  interface PeerState {
    id: string
    /** Blocks asked for, in the order the answers must come. */
    expected: string[]
    /** cid → time before which we do not ask this peer again (it said not-have). */
    lacks: Map<string, number>
    failures: number
    dropped: boolean
    /** pending: no answer on the have protocol yet (not asked meanwhile); blind: none to be had. */
    haveState: 'pending' | 'known' | 'blind'
    bits: Uint8Array
    /** Aborts this peer's session when it is dropped from outside it (a bad bitfield). */
    ctl: AbortController
    /** Its verified blocks being written (bounded by `window`). */
    writes: Set<Promise<void>>
  }

  /**
   * One multi-peer fetch: a shared queue of missing blocks, one session per provider, and
   * one have-subscription per provider telling which of them it can serve.
   */
  class FetchRun {
    private pending: Set<string>
    private readonly peers: PeerState[]
    private readonly ctl = new AbortController()
    private wakers: Array<() => void> = []
    private fatal: unknown
    private lastProgress = clock.monotonic()
    private onBlock: (n: number) => void = () => {}
    /** Block CID → its first position in the manifest (its bit in a have-bitfield). */
    private readonly position = new Map<string, number>()

    constructor(
      private readonly manifestCid: string,
      private readonly blocks: string[],
      missing: string[],
      providers: string[],
      private readonly signal: AbortSignal,
      private readonly holding: Holding,
    ) {
      this.pending = new Set(missing)
      blocks.forEach((cid, i) => {
        if (!this.position.has(cid)) this.position.set(cid, i)
      })
      this.peers = providers.map((id) => ({
        id,
        expected: [],
        lacks: new Map(),
        failures: 0,
        dropped: false,
        haveState: 'pending',
        bits: new Uint8Array(0),
        ctl: new AbortController(),
        writes: new Set(),
      }))
    }

    /** Does `p` hold `cid` as far as we know (blind peers: maybe, so yes)? */
    private holds(p: PeerState, cid: string): boolean {
      if (p.haveState === 'blind') return true
      return p.haveState === 'known' && bitfieldHas(p.bits, this.position.get(cid) ?? -1)
    }

    /** Known holders of `cid` among the peers still in the fetch. */
    private holders(cid: string): number {
      const at = this.position.get(cid) ?? -1
      let n = 0
      for (const p of this.peers) {
        if (!p.dropped && p.haveState === 'known' && bitfieldHas(p.bits, at)) n++
      }
      return n
    }

    private drop(p: PeerState, reason: string): void {
      penalise(p.id, reason)
      p.dropped = true
      p.ctl.abort()
      this.wake()
    }

    /** Verified blocks being written to the store: still owed, not yet received. */
    private readonly storing = new Set<string>()
    private readonly writes = new Set<Promise<void>>()

    private get remaining(): number {
      return (
        this.pending.size +
        this.storing.size +
        this.peers.reduce((a, p) => a + p.expected.length, 0)
      )
    }

    private wake(): void {
      const w = this.wakers
      this.wakers = []
      for (const f of w) f()
    }

    private waitForChange(ms: number): Promise<void> {
      return new Promise((resolve) => {
        const t = setTimeout(resolve, Math.max(1, ms))
        this.wakers.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }

    private finish(err?: unknown): void {
      if (err !== undefined && this.fatal === undefined) this.fatal = err
      this.ctl.abort()
      this.wake()
    }

    async execute(onBlock: (n: number) => void): Promise<void> {
      this.onBlock = onBlock
      const stopOnAbort = () => this.finish(new AbortedError('fetch'))
      const outer = linkSignals([this.signal, lifetime.signal])
      outer.signal.addEventListener('abort', stopOnAbort, { once: true })
      const watchdog = setInterval(() => this.checkStall(), Math.min(1_000, stallTimeoutMs))
      try {
        if (outer.signal.aborted) stopOnAbort()
        await Promise.all([
          ...this.peers.map((p) => this.runPeer(p)),
          ...this.peers.map((p) => this.watchHaves(p)),
        ])
        // Nothing is written behind the caller's back once the fetch has returned.
        await Promise.allSettled([...this.writes])
      } finally {
        clearInterval(watchdog)
        outer.signal.removeEventListener('abort', stopOnAbort)
        outer.clear()
      }
      if (this.fatal !== undefined) throw this.fatal
      if (this.remaining > 0) {
        throw new NoProvidersError(`${this.remaining} blocks`, { remaining: this.remaining })
      }
    }

    private checkStall(): void {
      if (clock.monotonic() - this.lastProgress > stallTimeoutMs) {
        this.finish(
          new NoProvidersError(`${this.remaining} blocks (stalled)`, { remaining: this.remaining }),
        )
      }
    }

    private activePeers(): number {
      return this.peers.filter((p) => !p.dropped).length
    }

    private async runPeer(p: PeerState): Promise<void> {
      while (!this.ctl.signal.aborted && !p.dropped && this.remaining > 0) {
        try {
          await this.session(p)
        } catch (err) {
          this.requeue(p)
          if (this.ctl.signal.aborted) break
          if (err instanceof PeerMisbehaved) {
            this.drop(p, err.message)
          } else if (isFatal(err)) {
            this.finish(err)
          } else if (++p.failures > maxPeerFailures) {
            log.debug('dropping peer from fetch', { peer: p.id, err: describeError(err) })
            p.dropped = true
          } else {
            await sleep(100 * p.failures).catch(() => undefined)
          }
        }
      }
      this.requeue(p)
      if (p.dropped && this.activePeers() === 0 && this.remaining > 0) {
        this.finish(new NoProvidersError(`${this.remaining} blocks`, { remaining: this.remaining }))
      }
      this.wake()
    }

    private requeue(p: PeerState): void {
      for (const cid of p.expected) this.pending.add(cid)
      p.expected = []
      this.wake()
    }

    /**
     * Next blocks for `p`: pending, held by it (or it cannot tell us), not recently refused
     * by it; rarest first. Returns [] and how long to wait at most before trying again.
     */
    private pick(p: PeerState, n: number): { wants: string[]; retryIn: number } {
      const now = clock.monotonic()
      for (const [cid, until] of p.lacks) if (until <= now) p.lacks.delete(cid)
      const wants =
        p.haveState === 'pending'
          ? []
          : selectBlocks({
              pending: this.pending,
              count: n,
              canAsk: (cid) => !p.lacks.has(cid) && this.holds(p, cid),
              holders: (cid) => this.holders(cid),
            })
      for (const cid of wants) this.pending.delete(cid)
      // Bitfield updates and requeues wake the writer; a refusal expires on its own.
      return { wants, retryIn: p.lacks.size > 0 ? notHaveRetryMs : stallTimeoutMs }
    }

    /**
     * Keeps `p.bits` current from a have-subscription. A peer without the protocol (or
     * that keeps failing it) is asked blindly; one that sends a bitfield that cannot fit
     * the manifest is dropped like one that sends a bad block.
     */
    private async watchHaves(p: PeerState): Promise<void> {
      let failures = 0
      const link = linkSignals([this.ctl.signal, p.ctl.signal])
      const signal = link.signal
      try {
        while (!signal.aborted) {
          let stream: Stream | undefined
          try {
            stream = await withDeadline(DEFAULT_TIMEOUTS.dial, signal, (s) =>
              libp2p.dialProtocol(peerIdFromString(p.id), HAVE_PROTOCOL, { signal: s }),
            )
            const lp = lpStream(stream, { maxDataLength: MAX_HAVE_FRAME_BYTES })
            await withDeadline(blockTimeoutMs, signal, (s) =>
              lp.write(encodeHaveSubscribe(this.manifestCid), { signal: s }),
            )
            while (!signal.aborted) {
              const frame = await lp.read({ signal })
              let bits: Uint8Array
              try {
                bits = decodeHaveBits(frame.subarray())
              } catch (err) {
                throw new PeerMisbehaved(p.id, `undecodable have bitfield: ${describeError(err)}`)
              }
              if (!validBitfield(bits, this.blocks.length)) {
                throw new PeerMisbehaved(p.id, 'have bitfield does not fit the manifest')
              }
              p.bits = bits
              p.haveState = 'known'
              failures = 0
              this.wake()
            }
          } catch (err) {
            stream?.abort(err instanceof Error ? err : new Error(String(err)))
            if (signal.aborted) break
            if (err instanceof PeerMisbehaved) {
              this.drop(p, err.message)
              break
            }
            // A peer without the protocol says so at once: no point asking again.
            const unsupported = err instanceof Error && err.name === 'UnsupportedProtocolError'
            if (unsupported || ++failures > maxPeerFailures) {
              log.debug('no have-bitfield from peer; asking it blindly', {
                peer: p.id,
                err: describeError(err),
              })
              p.haveState = 'blind'
              this.wake()
              break
            }
            await sleep(100 * failures, signal).catch(() => undefined)
          }
        }
      } finally {
        link.clear()
      }
      if (p.haveState === 'pending') p.haveState = 'blind'
    }

    /**
     * Never rejects: bytes that do not hash to the CID drop their sender; a failed write of
     * our own disk ends the fetch; anything else puts the block back in the queue.
     */
    private async storeBlock(p: PeerState, cid: string, block: Uint8Array): Promise<void> {
      try {
        await store.putBlock(cid, block)
      } catch (err) {
        this.storing.delete(cid)
        if (err instanceof RmeshError && err.code === 'ERR_BLOCK_MISMATCH') {
          counters.badBlocks++
          this.pending.add(cid)
          this.drop(p, `bad bytes for ${cid}`)
        } else if (isFatal(err)) {
          this.finish(err)
        } else {
          log.debug('storing a block failed; asking again', { cid, err: describeError(err) })
          this.pending.add(cid)
          this.wake()
        }
        return
      }
      this.storing.delete(cid)
      markHeld(this.holding, cid)
      counters.fetchedBlocks++
      counters.fetchedBytes += block.byteLength
      counters.fetchedFrom[p.id] = (counters.fetchedFrom[p.id] ?? 0) + 1
      this.lastProgress = clock.monotonic()
      this.onBlock(block.byteLength)
      if (this.remaining === 0) this.finish()
      this.wake()
    }

    private async session(p: PeerState): Promise<void> {
      const link = linkSignals([this.ctl.signal, p.ctl.signal])
      const signal = link.signal
      const stream = await openStream(p.id, signal).catch((err) => {
        link.clear()
        throw err
      })
      const lp = lpStream(stream, {
        maxDataLength: MAX_RESPONSE_BYTES,
        // Only `window` answers can be owed: more buffered bytes mean a peer sending unasked.
        maxBufferSize: (window + 1) * (MAX_RESPONSE_BYTES + 16),
      })
      const sessionCtl = new AbortController()
      const sessionLink = linkSignals([signal, sessionCtl.signal])
      const sessionSignal = sessionLink.signal
      let lastHeard = clock.monotonic()
      const watchdog = setInterval(
        () => {
          if (p.expected.length > 0 && clock.monotonic() - lastHeard > blockTimeoutMs) {
            sessionCtl.abort(new TimeoutError(`block from ${p.id}`, blockTimeoutMs))
          }
        },
        Math.min(1_000, blockTimeoutMs),
      )
      const writer = async () => {
        while (!sessionSignal.aborted && this.remaining > 0) {
          const room = window - p.expected.length
          const { wants, retryIn } =
            room > 0 ? this.pick(p, room) : { wants: [], retryIn: stallTimeoutMs }
          if (wants.length === 0) {
            await this.waitForChange(retryIn)
            continue
          }
          if (p.expected.length === 0) lastHeard = clock.monotonic()
          p.expected.push(...wants)
          await lp.write(encodeRequest(wants), { signal: sessionSignal })
        }
      }
      const reader = async () => {
        while (!sessionSignal.aborted && this.remaining > 0) {
          const frame = await lp.read({ signal: sessionSignal })
          lastHeard = clock.monotonic()
          let res: ReturnType<typeof decodeResponse>
          try {
            res = decodeResponse(frame.subarray())
          } catch (err) {
            throw new PeerMisbehaved(p.id, `undecodable response: ${describeError(err)}`)
          }
          const want = p.expected[0]
          if (want === undefined || res.cid !== want) {
            throw new PeerMisbehaved(p.id, 'sent a block that was not asked for')
          }
          if (res.block === null) {
            p.expected.shift()
            p.lacks.set(want, clock.monotonic() + notHaveRetryMs)
            this.pending.add(want)
            this.wake()
            continue
          }
          // It leaves `expected` for `storing`: the store hashes it (a mismatch drops the
          // peer, in storeBlock) and writes it (an fsync) while the next frames are read, at
          // most `window` writes per peer. One hash per block received, not two.
          p.expected.shift()
          this.storing.add(want)
          const write = this.storeBlock(p, want, res.block)
          this.writes.add(write)
          p.writes.add(write)
          void write.finally(() => {
            this.writes.delete(write)
            p.writes.delete(write)
          })
          while (p.writes.size >= window) await Promise.race(p.writes)
        }
      }
      try {
        // Whichever side fails first ends the session; the other is unblocked by the abort.
        await Promise.all([
          writer().catch((err) => {
            sessionCtl.abort(err)
            throw err
          }),
          reader().catch((err) => {
            sessionCtl.abort(err)
            throw err
          }),
        ]).catch((err) => {
          const reason = sessionCtl.signal.reason
          // Report the first cause (a misbehaviour beats the abort it triggered elsewhere).
          throw reason instanceof RmeshError ? reason : err
        })
        await closeOrAbort(stream, 2_000)
      } catch (err) {
        stream.abort(err instanceof Error ? err : new Error(String(err)))
        if (signal.aborted && !(err instanceof PeerMisbehaved) && !isFatal(err)) return
        throw err
      } finally {
        clearInterval(watchdog)
        sessionLink.clear()
        link.clear()
        this.wake()
      }
    }
  }

  return {
    async start() {
      if (started) return
      started = true
      await libp2p.handle(
        BLOCKS_PROTOCOL,
        (stream, connection) => {
          serve(stream, connection).catch((err) =>
            log.debug('serve failed', { err: describeError(err) }),
          )
        },
        { maxInboundStreams: options.maxInboundStreams ?? 32, maxOutboundStreams: 32 },
      )
      await libp2p.handle(
        HAVE_PROTOCOL,
        (stream, connection) => {
          serveHave(stream, connection).catch((err) =>
            log.debug('serve have failed', { err: describeError(err) }),
          )
        },
        { maxInboundStreams: options.maxInboundStreams ?? 32, maxOutboundStreams: 32 },
      )
    },
    async stop() {
      if (!started) return
      started = false
      lifetime.abort()
      await libp2p.unhandle(BLOCKS_PROTOCOL)
      await libp2p.unhandle(HAVE_PROTOCOL)
    },
    fetchManifest,
    requestOne,
    stats: () => ({ ...counters, fetchedFrom: { ...counters.fetchedFrom } }),
  }
}

/** Errors that end a whole fetch instead of one peer's part of it: our own disk, not theirs. */
function isFatal(err: unknown): boolean {
  return (
    err instanceof RmeshError &&
    (err.code === 'ERR_DISK_FULL' || err.code === 'ERR_STORE_WRITE' || err.code === 'ERR_ABORTED')
  )
}

function shuffle<T>(items: T[], random: () => number): T[] {
  const a = [...items]
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[a[i], a[j]] = [a[j], a[i]]
  }
  return a
}

/**
 * A token bucket shared by all served streams; a no-op when no rate is set. It keeps up to
 * `burstMs` of unused rate, so a server that spends time reading and hashing a block
 * between two sends still reaches the rate instead of losing that time on every block.
 */
function createRateLimiter(bytesPerSec: number | undefined, clock: Clock, burstMs = 100) {
  let nextFree = Number.NEGATIVE_INFINITY
  return async (bytes: number, signal: AbortSignal): Promise<void> => {
    if (!bytesPerSec) return
    const now = clock.monotonic()
    nextFree = Math.max(now - burstMs, nextFree) + (bytes / bytesPerSec) * 1000
    const wait = nextFree - now
    if (wait > 1) await sleep(wait, signal)
  }
}

/** Close politely within `ms`; a peer that does not take the close gets a reset. */
async function closeOrAbort(stream: Stream, ms: number): Promise<void> {
  await withDeadline(ms, undefined, (signal) => stream.close({ signal })).catch(() =>
    stream.abort(new Error('close')),
  )
}
