/**
 * The lease manager: decides, on this node, which chunks to claim and render, and judges
 * other nodes' leases dead. No one is in charge; every node runs one of these over its
 * replica of the job logs.
 *
 * Invariants:
 *  - event-driven: every new entry schedules a pass at once (plus a tick for liveness),
 *    so a frame starts within milliseconds of its announce arriving;
 *  - which chunk to claim is lease-choice.ts (rendezvous ownership in a window), whether
 *    another node's lease is dead is lease-liveness.ts (this node's monotonic clock only,
 *    counted since its own last stall); the task table is lease-tasks.ts, one pass (judge,
 *    release, claim, seal) lease-pass.ts, the renders and their outcomes lease-render.ts;
 *    this module wires them, folds entries and schedules the passes;
 *  - a render runs only while the local fold says this node holds that (chunk, attempt)
 *    in a live or paused job; the moment it does not (lost race, done elsewhere, cancel,
 *    delete, job failed) the render is aborted and its slot freed; a paused job's renders
 *    finish, its chunks claimed ahead and not started are released, nothing new is claimed;
 *  - just woken from a stall it claims nothing new for a moment (MAX_CATCH_UP_MS at most),
 *    so it does not take chunks done while it slept;
 *  - at most `slots` renders run, and at most one extra chunk is held (prefetched) and only
 *    when open chunks outnumber live renderers, so a job's tail is not hoarded; a chunk
 *    whose engine has finished and whose outputs are being stored no longer takes a render
 *    slot (the prefetched chunk starts at once) nor a claim slot (the next chunk is decided
 *    when its complete is written and appended right behind it, one gossip message for
 *    both, or is claimed while it stores once that has taken prefetchWaitMs: storing can
 *    take longer than a render on a busy mesh, and must not idle the renderer; in a job's
 *    tail, with no chunk prefetched, the free slot claims at once), but stays held
 *    (heartbeats list it) and at most STORING_PER_SLOT × slots chunks store at once;
 *  - a complete entry is written only with the outputs the runner returned (stored);
 *    a fail entry only for a render that failed on its own, never for one we aborted;
 *  - memory is bounded by live jobs, not by every job ever seen: a deleted job's fold is
 *    dropped for a chunk-less tombstone (the newest MAX_TOMBSTONES kept; its later entries
 *    are ignored), a sealed job's fold is rebuilt from its seal (the same state; what a
 *    restart loads), and per-chunk caches of jobs no longer live are pruned.
 */
import type { TimerHandle } from '../util/clock.js'
import { describeError } from '../util/errors.js'
import type { LogEntry } from '../log/types.js'
import { jobLogId } from '../log/types.js'
import type { JobState, ReduceOptions } from './reducer.js'
import { createJobFolds } from './job-folds.js'
import { createChunkChooser } from './lease-choice.js'
import { createLeaseLiveness, STRAGGLER_MIN_SAMPLES } from './lease-liveness.js'
import { createLeasePass } from './lease-pass.js'
import { createLeaseRenders } from './lease-render.js'
import { createTaskTable, type LeaseCoreDeps } from './lease-tasks.js'
import type {
  HeartbeatPace,
  LeaseManager,
  LeaseManagerComponents,
  LeaseManagerOptions,
  LeaseStats,
} from './lease-types.js'
import { jobHeld, jobLive, leaseKey } from './lease-types.js'

export type {
  JobLogView,
  LeaseManager,
  LeaseManagerComponents,
  LeaseManagerOptions,
  LeaseRef,
  LeaseStats,
  Liveness,
  NodeCapabilities,
} from './lease-types.js'
export { MAX_CATCH_UP_MS, STRAGGLER_MIN_SAMPLES } from './lease-liveness.js'
export { PREFETCH_WITH_COMPLETE_MS, prefetchWaitMs, STORING_PER_SLOT } from './lease-pass.js'
export { MAX_TOMBSTONES } from './job-folds.js'

/**
 * Heartbeats per typical chunk a busy node sends (heartbeatPace) near a job's end: every
 * heartbeat costs every node of the mesh a message, and with 10-s chunks at a fixed 2-s
 * pace they were 10.5 of the 12.9 messages a bystander received per chunk on a 30-daemon
 * mesh.
 */
export const BEATS_PER_CHUNK = 2

/**
 * Far from a job's end its holders beat every 1.5 typical chunks: the log message each
 * chunk's end sends (protocols/presence.md "Log gossip is a heartbeat") comes first, so
 * most chunks need no heartbeat at all. At one chunk the heartbeat fell due just before
 * the chunk's end and went out anyway.
 */
export const FAR_PACE_PER_CHUNK = 1.5

/**
 * A job is far from its end while it has at least this many open chunks per live renderer,
 * and more where its chunks are short for the heartbeat interval (farOpenPerRenderer). A
 * dead holder beating every 1.5 chunks is found after 5 of its beats, 7.5 chunk times,
 * instead of 2.5: every other renderer still has 10 chunks of its own to render before the
 * queue runs dry, so the reopened chunk is taken before anyone waits for it and the job
 * ends no later. Near the end, where a late reopen would hold the whole job up, the pace
 * is half a chunk again.
 */
export const BULK_OPEN_PER_RENDERER = 10

/**
 * Open chunks per live renderer from which a job whose chunks take `chunkMs` (or more) is
 * far from its end: the chunk times a dead holder's lease waits at the far pace (the lease
 * timeout's `leaseTimeoutMs ÷ intervalMs` beats of 1.5 chunks, rounded up to the interval
 * as presence rounds it, at most up), and 2.5 more; never below BULK_OPEN_PER_RENDERER.
 */
export function farOpenPerRenderer(
  chunkMs: number,
  intervalMs: number,
  leaseTimeoutMs: number,
): number {
  if (!(chunkMs > 0)) return Number.POSITIVE_INFINITY
  const farPaceMs = Math.max(
    intervalMs,
    Math.ceil((chunkMs * FAR_PACE_PER_CHUNK) / intervalMs) * intervalMs,
  )
  const waitChunks = ((leaseTimeoutMs / intervalMs) * farPaceMs) / chunkMs
  return Math.max(BULK_OPEN_PER_RENDERER, waitChunks + 2.5)
}

/** With no live job the lease tick (and stall probe) runs this many times less often. */
export const REST_TICKS = 5

export function createLeaseManager(
  components: LeaseManagerComponents,
  options: LeaseManagerOptions = {},
): LeaseManager {
  const { self, clock, log, liveness, runner } = components
  const logger = components.logger.child('leases')
  const leaseTimeoutMs = options.leaseTimeoutMs ?? 10_000
  const heartbeatIntervalMs = options.heartbeatIntervalMs ?? 2_000
  const tickMs = options.tickMs ?? 1_000
  const deferMs = options.deferMs ?? 10_000
  const prefetch = options.prefetch ?? true
  const windowMin = options.window ?? 8
  const autoSeal = options.autoSeal ?? true
  const reduceOptions: ReduceOptions = { isAdmin: options.isAdmin }

  /** The fold and chunk index of every job this node knows (job-folds.ts). */
  const jobs = createJobFolds(self, reduceOptions)
  const folds = {
    get: (jobId: string) => jobs.get(jobId),
    values: () => jobs.values(),
    [Symbol.iterator]: () => jobs.entries(),
  }
  const indexOf = (jobId: string) => jobs.indexOf(jobId)
  const tasks = createTaskTable(self)
  const sealing = new Set<string>()
  const stats: LeaseStats = {
    claims: 0,
    claimsWithComplete: 0,
    claimsWithCompleteApart: 0,
    lostClaims: 0,
    duplicatesAvoided: 0,
    rendersStarted: 0,
    completes: 0,
    fails: 0,
    releases: 0,
    deferrals: 0,
    reclaims: 0,
    stalls: 0,
    stalledMs: 0,
  }
  /** Jobs this node leaves alone until the given monotonic time (a chunk was deferred). */
  const deferredUntil = new Map<string, number>()
  const judge = createLeaseLiveness(
    { clock, liveness, logger, stats },
    {
      leaseTimeoutMs,
      tickMs,
      stragglerFactor: options.stragglerFactor ?? 10,
      defaultChunkTimeoutMs: options.defaultChunkTimeoutMs,
    },
  )
  const peers = judge.peers
  const chooser = createChunkChooser(
    {
      self,
      liveness: judge,
      *states() {
        for (const f of folds.values()) if (jobLive(f.state)) yield f.state
      },
      index: indexOf,
      busy: (jobId, chunk) => tasks.has(jobId, chunk),
      deferredUntil: (jobId) => deferredUntil.get(jobId) ?? 0,
    },
    { windowMin, quotaOf: options.quotaOf },
  )

  let stopped = true
  let unsubscribe: (() => void) | undefined
  let tickTimer: TimerHandle | undefined
  /** The tick is at its slow pace (no live job at its last run). */
  let restTicking = false
  let scheduled: TimerHandle | undefined
  let deferredPass: TimerHandle | undefined
  let pumping = false
  let again = false

  function setRest(rest: boolean): void {
    if (rest === restTicking) return
    restTicking = rest
    options.onRest?.(rest)
  }

  function ingest(entry: LogEntry): void {
    const t = now()
    const changed = jobs.ingest(
      entry,
      (s, c) => {
        if (c.holder !== self) judge.noteClaim(s, c, t)
      },
      (jobId) => sealing.delete(jobId),
    )
    if (!changed) return
    if (entry.author !== self) peers.add(entry.author)
    schedule()
  }

  /** A pass in `ms`, unless one is already due sooner. */
  function passAt(ms: number): void {
    if (stopped || deferredPass) return
    deferredPass = clock.setTimeout(
      () => {
        deferredPass = undefined
        schedule()
      },
      Math.max(0, ms),
    )
  }

  /** A pass soon; from the slow tick at rest, back to the fast one (something happened). */
  function schedule(): void {
    if (stopped) return
    if (restTicking) {
      setRest(false)
      if (tickTimer) clock.clearTimeout(tickTimer)
      tickTimer = clock.setTimeout(tick, tickMs)
      // The stall probe now looks within tickMs, not the rest tick's span: a stall soon
      // after a job arrives is measured in full.
      judge.observeLoop(now(), tickMs)
    }
    schedulePass()
  }

  function schedulePass(): void {
    if (stopped || scheduled) return
    scheduled = clock.setTimeout(() => {
      scheduled = undefined
      void pump()
    }, 0)
  }

  // The tick is also the stall probe: it looks at the loop at least every tickMs, which is
  // all the stall watch needs (a stall is half a lease timeout or more). A probe of its
  // own at 250 ms woke an idle daemon four times a second for nothing. With no live job
  // there is nothing to claim or judge (a new entry schedules a pass at once and brings the
  // fast tick back, and a lease seen after a missed stall is judged from when it is seen),
  // so it ticks REST_TICKS times slower.
  let lastPrune = clock.monotonic()
  function tick(): void {
    if (stopped) return
    let live = false
    for (const f of folds.values()) if (jobLive(f.state)) live = true
    const next = live ? tickMs : tickMs * REST_TICKS
    const t = now()
    judge.observeLoop(t, next)
    if (t - lastPrune >= 30 * tickMs) {
      lastPrune = t
      prune()
    }
    setRest(!live)
    tickTimer = clock.setTimeout(tick, next)
    schedulePass()
  }

  /**
   * Forget liveness baselines of leases that no longer exist, and the ranking and timing
   * caches of jobs no longer live (recomputed if a retry revives one), so memory stays
   * bounded.
   */
  function prune(): void {
    const current = new Set<string>()
    const live = new Set<string>()
    for (const f of folds.values()) {
      if (jobHeld(f.state)) live.add(f.state.jobId)
      for (const c of f.state?.chunks ?? []) {
        if (c.state === 'claimed')
          current.add(leaseKey(f.state!.jobId, c.index, c.attempt, c.holder!))
      }
    }
    judge.prune(current)
    chooser.prune(live)
    jobs.pruneIndexes(live)
    const t = now()
    for (const [k, until] of deferredUntil) if (!live.has(k) || until <= t) deferredUntil.delete(k)
  }

  async function pump(): Promise<void> {
    if (pumping) {
      again = true
      return
    }
    pumping = true
    try {
      do {
        again = false
        await pass.step()
      } while (again && !stopped)
    } catch (err) {
      logger.error('lease pass failed', { error: describeError(err) })
    } finally {
      pumping = false
    }
  }

  const now = () => clock.monotonic()

  async function append(jobId: string, kind: string, body: unknown): Promise<LogEntry | undefined> {
    try {
      const entry = await log.append(jobLogId(jobId), kind, body)
      ingest(entry)
      return entry
    } catch (err) {
      logger.warn('append failed', { jobId, kind, error: describeError(err) })
      return undefined
    }
  }

  const core: LeaseCoreDeps = {
    tasks,
    jobs,
    runner,
    stats,
    logger,
    now,
    capabilities: () => components.capabilities(),
    append,
  }
  const renders = createLeaseRenders({
    ...core,
    schedule,
    nextClaim: () => pass.nextClaim(),
    stopped: () => stopped,
    deferredUntil,
    deferMs,
    onProgress: options.onProgress,
  })
  const pass = createLeasePass({
    ...core,
    self,
    judge,
    chooser,
    renders,
    passAt,
    stopped: () => stopped,
    prefetch,
    autoSeal,
    sealing,
  })

  return {
    async start() {
      if (!stopped) return
      stopped = false
      // Time spent stopped is not a stall: the watch starts from now.
      judge.restart()
      unsubscribe = log.onEntry(ingest)
      for (const id of await log.jobLogs()) {
        for (const e of await log.entries(id)) ingest(e)
      }
      tick()
      schedule()
    },

    async stop(opts = {}) {
      if (stopped) return
      stopped = true
      unsubscribe?.()
      for (const timer of [tickTimer, scheduled, deferredPass]) if (timer) clock.clearTimeout(timer)
      tickTimer = scheduled = deferredPass = undefined
      const held = tasks.held()
      for (const task of [...tasks.values()]) tasks.abort(task, 'stopping')
      if (opts.release ?? true) {
        await Promise.all(
          held.map((x) =>
            log
              .append(jobLogId(x.jobId), 'release', {
                chunk: x.chunk,
                attempt: x.attempt,
                reason: 'stopping',
              })
              .catch(() => undefined),
          ),
        )
      }
    },

    async handBack({ running, reason }) {
      // Storing chunks are rendered: their complete entry is on its way, nothing to hand back.
      const back = [...tasks.values()].filter(
        (x) => x.phase === 'queued' || (running && x.phase === 'running'),
      )
      await Promise.all(back.map((x) => renders.handBack(x, reason)))
      schedule()
      return back.length
    },

    heldLeases() {
      return tasks.held().map((x) => ({ jobId: x.jobId, chunk: x.chunk, attempt: x.attempt }))
    },

    heartbeatPace() {
      let pace: HeartbeatPace | undefined
      const t = now()
      const renderers = Math.max(1, judge.liveRenderers(t))
      // Per job, the longest any of its chunks here has rendered so far: a lower bound of
      // its chunks' render time before one of them has finished.
      const rendered = new Map<string, number>()
      for (const x of tasks.values())
        if (x.phase === 'running' && x.renderStartedAt !== undefined)
          rendered.set(x.jobId, Math.max(rendered.get(x.jobId) ?? 0, t - x.renderStartedAt))
      for (const x of tasks.values()) {
        const index = indexOf(x.jobId)
        const typical = index.medianRenderMs(STRAGGLER_MIN_SAMPLES)
        // Before a chunk finished, the time one has rendered is a lower bound of the chunk
        // time: the open chunks it asks for are then an upper bound.
        const chunkMs = typical ?? rendered.get(x.jobId) ?? 0
        const far =
          index.open >= renderers * farOpenPerRenderer(chunkMs, heartbeatIntervalMs, leaseTimeoutMs)
        // With no chunk of the job finished, the far pace by that lower bound waits no
        // longer than the far pace by the chunk time itself (1-s chunks stay at the busy
        // interval; a 2-min first chunk is not beaten every 2 s), and covers a chunk claimed
        // ahead too; near its end, or before any render, the busy interval (0).
        const ms = far
          ? chunkMs * FAR_PACE_PER_CHUNK
          : typical !== undefined
            ? typical / BEATS_PER_CHUNK
            : 0
        // The shortest pace any lease wants, far from the end only if every job is.
        pace = {
          ms: Math.min(ms, pace?.ms ?? ms),
          farFromEnd: far && (pace?.farFromEnd ?? true),
        }
      }
      // Nothing known at all (no chunk finished, nothing rendering far from its end): the
      // busy interval, as for a node that says nothing.
      return pace && pace.ms > 0 ? pace : undefined
    },

    noteHeartbeat(peer, leases) {
      if (peer === self) return
      judge.noteHeartbeat(peer, leases, now())
    },

    notePublished(peer) {
      if (peer === self) return
      judge.notePublished(peer, now())
    },

    job(jobId) {
      return folds.get(jobId)?.state ?? jobs.tombstone(jobId)
    },

    jobs() {
      const out: JobState[] = []
      for (const f of folds.values()) if (f.state && !f.state.deleted) out.push(f.state)
      return out
    },

    stats() {
      return { ...stats }
    },

    sizes() {
      const judged = judge.sizes()
      let entries = 0
      for (const f of folds.values()) entries += f.entries.length
      const kept = jobs.sizes()
      return {
        folds: kept.folds,
        foldEntries: entries,
        tombstones: kept.tombstones,
        firstSeen: judged.firstSeen,
        scores: chooser.size(),
        typical: kept.indexes,
        listed: judged.listed,
        tasks: tasks.size,
        deferred: deferredUntil.size,
      }
    },
  }
}
