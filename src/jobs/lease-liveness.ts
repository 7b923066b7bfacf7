/**
 * How one node judges other nodes' leases: by its own monotonic clock only, from when it
 * first saw each claim and when the holder's heartbeats last listed it.
 *
 * Invariants:
 *  - a lease is dead when, since this node first saw the claim, the holder has not listed
 *    it in a heartbeat (or, for a peer that never sent one, not been heard at all) for
 *    its lease timeout: leaseTimeoutMs stretched by the holder's announced pace (at most
 *    MAX_LEASE_STRETCH times; a holder beating every 5 s where this node beats every 2 s
 *    gets 2.5 × leaseTimeoutMs, the same number of its beats), or the attempt is older
 *    than chunkTimeoutMs, or than stragglerFactor × the job's median chunk time (doubled
 *    per attempt): heartbeats alone never hold a chunk forever. Wall clocks never enter;
 *  - those spans count only time since this node's last stall: when its own loop stood
 *    still for half a lease timeout or more (util/stalls.ts), every silence restarts at
 *    the wake, and claims wait a moment (MAX_CATCH_UP_MS at most) for the backlog;
 *  - a log gossip message its holder published counts as a heartbeat listing every lease
 *    this node's fold gives it (notePublished; protocols/presence.md "Log gossip is a
 *    heartbeat"): a live node holds what its log says until it writes otherwise (it
 *    releases what it no longer runs, a restart included), and the chunk timeout and the
 *    straggler bound still end a lease that a chatty holder never finishes;
 *  - a lease's baseline is when this node first saw the claim (noteClaim, as it arrives);
 *  - memory is bounded: baselines of leases that no longer exist and listings older than
 *    4 of the peer's lease timeouts are dropped (prune).
 */
import type { Clock } from '../util/clock.js'
import type { Logger } from '../util/logger.js'
import { createStallWatch } from '../util/stalls.js'
import type { PeerIdString } from '../log/types.js'
import type { ChunkState, JobState } from './reducer.js'
import type { LeaseRef, LeaseStats, Liveness } from './lease-types.js'
import { leaseKey } from './lease-types.js'

/** After a stall, at most this long without new claims while the backlog is read. */
export const MAX_CATCH_UP_MS = 2_000

/**
 * The most a holder's slow pace stretches its lease timeout (and how long it counts as
 * heard): presence caps a busy pace at its rest interval (5 × the busy one by default), and
 * at twice that while the jobs of its leases are far from their end (protocols/presence.md
 * "Busy pace"); a peer announcing more gains nothing.
 */
export const MAX_LEASE_STRETCH = 10

/** Finished chunks needed before a job's typical render time bounds its leases. */
export const STRAGGLER_MIN_SAMPLES = 1

export interface LeaseLivenessOptions {
  leaseTimeoutMs: number
  tickMs: number
  stragglerFactor: number
  defaultChunkTimeoutMs?: number
}

export interface LeaseLiveness {
  /** Peers known to exist (authors and heartbeat senders), for the live-renderer count. */
  readonly peers: Set<PeerIdString>
  /** How often the loop is looked at, at the latest (the lease manager's tick). */
  readonly stallProbeMs: number
  /** Start afresh (time spent stopped is not a stall). */
  restart(): void
  /** The loop runs now: record a stall that just ended; the next look comes within `nextLookWithinMs`. */
  observeLoop(t: number, nextLookWithinMs?: number): void
  /** After a stall, no new claim before this (monotonic). */
  catchUpUntil(): number
  heardRecently(p: PeerIdString, t: number): boolean
  liveRenderers(t: number): number
  /** Some other live peer has not failed this chunk yet. */
  untriedPeerAlive(c: ChunkState, t: number): boolean
  /** Live peers that render: the nodes a chunk's rendezvous owner is chosen among. */
  rivals(t: number): PeerIdString[]
  chunkTimeoutOf(s: JobState): number | undefined
  /** A claim of another node is seen now (its liveness baseline, if it has none yet). */
  noteClaim(s: JobState, c: ChunkState, t: number): void
  /** `typicalMs`: the job's median render time (lease-index.ts), if known. */
  leaseDead(s: JobState, c: ChunkState, t: number, typicalMs: number | undefined): boolean
  noteHeartbeat(peer: PeerIdString, leases: readonly LeaseRef[], t: number): void
  /** `peer` published a log gossip message at `t`: every lease it holds counts as listed. */
  notePublished(peer: PeerIdString, t: number): void
  /** Keep baselines only of `current` leases. */
  prune(current: ReadonlySet<string>): void
  sizes(): { firstSeen: number; listed: number }
}

export function createLeaseLiveness(
  components: { clock: Clock; liveness: Liveness; logger: Logger; stats: LeaseStats },
  options: LeaseLivenessOptions,
): LeaseLiveness {
  const { clock, liveness, logger, stats } = components
  const { leaseTimeoutMs, tickMs, stragglerFactor } = options
  /** When this node first saw each (chunk, attempt, holder) claim: the liveness baseline. */
  const firstSeen = new Map<string, number>()
  /** Per peer: when its heartbeat last listed each lease. */
  const listed = new Map<string, Map<string, number>>()
  /** Per peer: when it last published a log gossip message (all its leases listed). */
  const published = new Map<string, number>()
  const peers = new Set<PeerIdString>()

  /**
   * The loop is looked at this often (a no-op timer), so a stall is measured to within it
   * rather than to within a tick.
   */
  const stallProbeMs = tickMs

  /**
   * Stopped for half a lease or more: every silence restarts at the wake. A shorter stall
   * leaves at least half a lease to read what queued meanwhile.
   */
  const newStallWatch = () =>
    createStallWatch({
      periodMs: stallProbeMs,
      minStallMs: leaseTimeoutMs / 2,
      start: clock.monotonic(),
    })
  let stallWatch = newStallWatch()
  let catchUpUntil = Number.NEGATIVE_INFINITY

  /** Milliseconds of [since, t] that count as silence (since this node's last stall). */
  const awake = (since: number, t: number) => stallWatch.awake(since, t)

  /** `p`'s lease timeout: leaseTimeoutMs in as many of its own heartbeats as ours. */
  function timeoutOf(p: PeerIdString): number {
    const pace = liveness.pace?.(p) ?? 1
    return (
      leaseTimeoutMs * Math.min(MAX_LEASE_STRETCH, Number.isFinite(pace) ? Math.max(1, pace) : 1)
    )
  }

  /** Heard within its lease timeout (counted since this node's last stall). */
  function heardRecently(p: PeerIdString, t: number): boolean {
    const heard = liveness.lastHeard(p)
    return heard !== undefined && awake(heard, t) < timeoutOf(p)
  }

  function chunkTimeoutOf(s: JobState): number | undefined {
    return s.job.limits.chunkTimeoutMs ?? options.defaultChunkTimeoutMs
  }

  return {
    peers,
    stallProbeMs,

    restart() {
      stallWatch = newStallWatch()
    },

    observeLoop(t, nextLookWithinMs) {
      const stalledMs = stallWatch.observe(t, nextLookWithinMs)
      if (stalledMs <= 0) return
      stats.stalls++
      stats.stalledMs += Math.round(stalledMs)
      catchUpUntil = t + Math.min(leaseTimeoutMs / 2, MAX_CATCH_UP_MS)
      logger.warn(
        'this node was stalled (stopped, suspended or blocked); its own silence is not counted against peers',
        { stalledMs: Math.round(stalledMs) },
      )
    },

    catchUpUntil: () => catchUpUntil,

    heardRecently,

    liveRenderers(t) {
      // This node and every live peer that renders: a node with no render slot (a
      // bystander, a paused machine) takes no chunk, so it must not widen the claim window
      // nor hold back the tail's prefetch cut-off.
      let n = 1
      for (const p of peers) if (heardRecently(p, t) && liveness.renders?.(p) !== false) n++
      return n
    },

    untriedPeerAlive(c, t) {
      for (const p of peers) {
        if (heardRecently(p, t) && !c.failures.some((f) => f.node === p)) return true
      }
      return false
    },

    rivals(t) {
      const out: PeerIdString[] = []
      for (const p of peers) {
        if (!heardRecently(p, t) || liveness.renders?.(p) === false) continue
        out.push(p)
      }
      return out
    },

    chunkTimeoutOf,

    noteClaim(s, c, t) {
      const key = leaseKey(s.jobId, c.index, c.attempt, c.holder!)
      if (!firstSeen.has(key)) firstSeen.set(key, t)
    },

    leaseDead(s, c, t, typicalMs) {
      const holder = c.holder!
      const key = leaseKey(s.jobId, c.index, c.attempt, holder)
      let seen = firstSeen.get(key)
      if (seen === undefined) {
        seen = t
        firstSeen.set(key, t)
      }
      const timeout = chunkTimeoutOf(s)
      if (timeout !== undefined && awake(seen, t) >= timeout) return true
      // A heartbeat proves the holder alive, not working: one that claims and never renders
      // must not keep chunks forever. Doubling per attempt lets a truly slow chunk finish.
      if (
        stragglerFactor > 0 &&
        typicalMs !== undefined &&
        awake(seen, t) >=
          Math.max(leaseTimeoutMs, stragglerFactor * typicalMs) *
            2 ** Math.min(16, Math.max(0, c.attempt - 1))
      )
        return true
      const hb = listed.get(holder)
      const since = Math.max(
        hb
          ? Math.max(seen, hb.get(key) ?? -Infinity)
          : Math.max(seen, liveness.lastHeard(holder) ?? -Infinity),
        published.get(holder) ?? -Infinity,
      )
      return awake(since, t) >= timeoutOf(holder)
    },

    noteHeartbeat(peer, leases, t) {
      peers.add(peer)
      let m = listed.get(peer)
      if (!m) {
        m = new Map()
        listed.set(peer, m)
      }
      for (const l of leases.slice(0, 10_000)) {
        if (
          typeof l?.jobId !== 'string' ||
          !Number.isSafeInteger(l.chunk) ||
          !Number.isSafeInteger(l.attempt)
        )
          continue
        m.set(leaseKey(l.jobId, l.chunk, l.attempt, peer), t)
      }
      // Forget listings long past: they no longer keep anything alive.
      const keep = 4 * timeoutOf(peer)
      for (const [k, at] of m) if (t - at > keep) m.delete(k)
    },

    notePublished(peer, t) {
      peers.add(peer)
      published.set(peer, t)
    },

    prune(current) {
      for (const k of firstSeen.keys()) if (!current.has(k)) firstSeen.delete(k)
    },

    sizes() {
      let listings = 0
      for (const m of listed.values()) listings += m.size
      return { firstSeen: firstSeen.size, listed: listings }
    },
  }
}
