/**
 * The block exchange: serves /rmesh/blocks/1.0.0 from the local store and fetches a
 * manifest's blocks from every provider in parallel.
 *
 * Invariants:
 *  - a block is stored only after its bytes hash to the CID we asked for; a peer that
 *    sends a bad block, a block we did not ask for, or garbage is dropped from the fetch
 *    (and penalised for `penaltyMs`), and what it owed us is fetched from the others;
 *  - at most `window` blocks are outstanding per peer, so a fetch buffers at most
 *    window x (block + frame overhead) per peer, whatever the file size;
 *  - a fetch asks only for blocks the store lacks when it starts, so a fetch interrupted
 *    by a restart resumes where it stopped;
 *  - every network wait is bounded: per-block timeout, stall timeout for the fetch, idle
 *    timeout for a served stream;
 *  - with `isAdmitted`, unadmitted peers are refused before any byte is read;
 *  - a failed write to the store (disk full) ends the fetch with that typed error; blocks
 *    already stored stay stored.
 */
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import { DEFAULT_TIMEOUTS, sleep, throwIfAborted, timeoutSignal } from '../util/abort.js'
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
} from './wire.js'

export { BLOCKS_PROTOCOL }

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
  /** Ask one peer for one block or manifest; returns verified bytes or null (not have). */
  requestOne(
    peer: string,
    cid: string,
    options?: { signal?: AbortSignal },
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
  const random = options.random ?? Math.random
  const penalised = new Map<string, number>()
  const lifetime = new AbortController()
  const upload = createRateLimiter(options.uploadBytesPerSec, clock)
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
          frame = await lp.read({ signal: timeoutSignal(serveIdleTimeoutMs, lifetime.signal) })
        } catch {
          break // end of requests, idle, or a broken stream: nothing more to answer
        }
        const wants = decodeRequest(frame.subarray())
        for (const cid of wants) {
          const block = await lookup(cid)
          if (block) await upload(block.byteLength, lifetime.signal)
          const parts = encodeResponseParts(cid, block)
          await lp.write(new Uint8ArrayList(...parts), {
            signal: timeoutSignal(blockTimeoutMs, lifetime.signal),
          })
          if (block) {
            counters.servedBlocks++
            counters.servedBytes += block.byteLength
          }
        }
      }
      await stream
        .close({ signal: timeoutSignal(5_000) })
        .catch(() => stream.abort(new Error('close')))
    } catch (err) {
      // Garbage from a peer costs it its stream, never the daemon.
      log.debug('served stream ended with error', { peer, err: describeError(err) })
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }

  async function openStream(peer: string, signal: AbortSignal): Promise<Stream> {
    const id: PeerId = peerIdFromString(peer)
    return libp2p.dialProtocol(id, BLOCKS_PROTOCOL, {
      signal: timeoutSignal(DEFAULT_TIMEOUTS.dial, signal),
    })
  }

  async function requestOne(
    peer: string,
    cid: string,
    opts: { signal?: AbortSignal } = {},
  ): Promise<Uint8Array | null> {
    const signal = timeoutSignal(blockTimeoutMs, opts.signal)
    const stream = await openStream(peer, signal)
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_RESPONSE_BYTES })
      await lp.write(encodeRequest([cid]), { signal })
      const res = decodeResponse((await lp.read({ signal })).subarray())
      if (res.cid !== cid) throw new PeerMisbehaved(peer, 'answered a different CID')
      if (res.block && !matchesCid(cid, res.block)) throw new PeerMisbehaved(peer, 'bad bytes')
      await stream
        .close({ signal: timeoutSignal(2_000) })
        .catch(() => stream.abort(new Error('close')))
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
      await fetchManifestBytes(manifestCid, providers, AbortSignal.any([signal, lifetime.signal]))
    }
    const manifest = await store.getManifest(manifestCid)
    const missing = await store.missingBlocks(manifestCid)
    const total = new Set(manifest.blocks).size
    let done = total - missing.length
    let bytes = 0
    opts.onProgress?.({ blocksDone: done, blocksTotal: total, bytes })
    if (missing.length === 0) return
    const run = new FetchRun(shuffle(missing, random), providers, signal)
    await run.execute((n) => {
      done++
      bytes += n
      opts.onProgress?.({ blocksDone: done, blocksTotal: total, bytes })
    })
  }

  interface PeerState {
    id: string
    /** Blocks asked for, in the order the answers must come. */
    expected: string[]
    /** cid → time before which we do not ask this peer again (it said not-have). */
    lacks: Map<string, number>
    failures: number
    dropped: boolean
  }

  /** One multi-peer fetch: a shared queue of missing blocks, one session per provider. */
  class FetchRun {
    private pending: Set<string>
    private readonly peers: PeerState[]
    private readonly ctl = new AbortController()
    private wakers: Array<() => void> = []
    private fatal: unknown
    private lastProgress = clock.monotonic()
    private onBlock: (n: number) => void = () => {}

    constructor(
      missing: string[],
      providers: string[],
      private readonly signal: AbortSignal,
    ) {
      this.pending = new Set(missing)
      this.peers = providers.map((id) => ({
        id,
        expected: [],
        lacks: new Map(),
        failures: 0,
        dropped: false,
      }))
    }

    private get remaining(): number {
      return this.pending.size + this.peers.reduce((a, p) => a + p.expected.length, 0)
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
      const outer = AbortSignal.any([this.signal, lifetime.signal])
      outer.addEventListener('abort', stopOnAbort, { once: true })
      const watchdog = setInterval(() => this.checkStall(), Math.min(1_000, stallTimeoutMs))
      try {
        if (outer.aborted) stopOnAbort()
        await Promise.all(this.peers.map((p) => this.runPeer(p)))
      } finally {
        clearInterval(watchdog)
        outer.removeEventListener('abort', stopOnAbort)
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
            penalise(p.id, err.message)
            p.dropped = true
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

    /** Next blocks for `p`: pending, and not recently refused by it. Returns [] and a retry delay. */
    private pick(p: PeerState, n: number): { wants: string[]; retryIn: number } {
      const now = clock.monotonic()
      const wants: string[] = []
      let retryIn = stallTimeoutMs
      for (const cid of this.pending) {
        if (wants.length >= n) break
        const until = p.lacks.get(cid)
        if (until !== undefined && until > now) {
          retryIn = Math.min(retryIn, until - now)
          continue
        }
        wants.push(cid)
      }
      for (const cid of wants) this.pending.delete(cid)
      return { wants, retryIn }
    }

    private async session(p: PeerState): Promise<void> {
      const signal = this.ctl.signal
      const stream = await openStream(p.id, signal)
      const lp = lpStream(stream, {
        maxDataLength: MAX_RESPONSE_BYTES,
        // Only `window` answers can be owed: more buffered bytes mean a peer sending unasked.
        maxBufferSize: (window + 1) * (MAX_RESPONSE_BYTES + 16),
      })
      const sessionCtl = new AbortController()
      const sessionSignal = AbortSignal.any([signal, sessionCtl.signal])
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
          if (!matchesCid(want, res.block)) {
            counters.badBlocks++
            throw new PeerMisbehaved(p.id, `bad bytes for ${want}`)
          }
          // Stored before it leaves `expected`: a crash or failure here requeues it.
          await store.putBlock(want, res.block)
          p.expected.shift()
          counters.fetchedBlocks++
          counters.fetchedBytes += res.block.byteLength
          counters.fetchedFrom[p.id] = (counters.fetchedFrom[p.id] ?? 0) + 1
          this.lastProgress = clock.monotonic()
          this.onBlock(res.block.byteLength)
          if (this.remaining === 0) this.finish()
          this.wake()
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
        await stream
          .close({ signal: timeoutSignal(2_000) })
          .catch(() => stream.abort(new Error('close')))
      } catch (err) {
        stream.abort(err instanceof Error ? err : new Error(String(err)))
        if (signal.aborted && !(err instanceof PeerMisbehaved) && !isFatal(err)) return
        throw err
      } finally {
        clearInterval(watchdog)
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
    },
    async stop() {
      if (!started) return
      started = false
      lifetime.abort()
      await libp2p.unhandle(BLOCKS_PROTOCOL)
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

/** A token bucket shared by all served streams; a no-op when no rate is set. */
function createRateLimiter(bytesPerSec: number | undefined, clock: Clock) {
  let nextFree = 0
  return async (bytes: number, signal: AbortSignal): Promise<void> => {
    if (!bytesPerSec) return
    const now = clock.monotonic()
    nextFree = Math.max(now, nextFree) + (bytes / bytesPerSec) * 1000
    const wait = nextFree - now - 5
    if (wait > 0) await sleep(wait, signal)
  }
}
