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
 *    counted since its own last stall); this module runs the passes and the renders;
 *  - a render runs only while the local fold says this node holds that (chunk, attempt)
 *    in a live or paused job; the moment it does not (lost race, done elsewhere, cancel,
 *    delete, job failed) the render is aborted and its slot freed; a paused job's renders
 *    finish, its chunks claimed ahead and not started are released, nothing new is claimed;
 *  - just woken from a stall it claims nothing new for a moment (MAX_CATCH_UP_MS at most),
 *    so it does not take chunks done while it slept;
 *  - at most `slots` renders run, and at most one extra chunk is held (prefetched) and only
 *    when open chunks outnumber live renderers, so a job's tail is not hoarded; a chunk
 *    whose engine has finished and whose outputs are being stored no longer takes a render
 *    slot (the prefetched chunk starts at once) nor a claim slot (the next chunk is claimed
 *    with the last one's complete entry, in the same gossip message, or while it stores once
 *    that has taken PREFETCH_WITH_COMPLETE_MS: storing can take longer than a render on a
 *    busy mesh, and must not idle the renderer), but stays held (heartbeats list it) and at
 *    most STORING_PER_SLOT × slots chunks store at once;
 *  - a complete entry is written only with the outputs the runner returned (stored);
 *    a fail entry only for a render that failed on its own, never for one we aborted;
 *  - memory is bounded by live jobs, not by every job ever seen: a deleted job's fold is
 *    dropped for a chunk-less tombstone (the newest MAX_TOMBSTONES kept; its later entries
 *    are ignored), a sealed job's fold is rebuilt from its seal (the same state; what a
 *    restart loads), and per-chunk caches of jobs no longer live are pruned.
 */
import type { TimerHandle } from '../util/clock.js'
import { AbortedError, describeError, isRmeshError } from '../util/errors.js'
import type { LogEntry } from '../log/types.js'
import { jobLogId } from '../log/types.js'
import type { ChunkState, JobState, ReduceOptions } from './reducer.js'
import { isRunnable, keepsRenders } from './reducer.js'
import type { ChunkProgress, ChunkResult, ChunkTask } from './runner.js'
import { ChunkDeferredError, ChunkFailedError } from './runner.js'
import { createJobFolds } from './job-folds.js'
import { createChunkChooser } from './lease-choice.js'
import { createLeaseLiveness, STRAGGLER_MIN_SAMPLES } from './lease-liveness.js'
import type {
  LeaseManager,
  LeaseManagerComponents,
  LeaseManagerOptions,
  LeaseStats,
  NodeCapabilities,
} from './lease-types.js'
import { keyOf, leaseKey } from './lease-types.js'

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

/**
 * Heartbeats per typical chunk a busy node sends (heartbeatPaceMs): every heartbeat costs
 * every node of the mesh a message, and with 10-s chunks at a fixed 2-s pace they were
 * 10.5 of the 12.9 messages a bystander received per chunk on a 30-daemon mesh.
 */
export const BEATS_PER_CHUNK = 2

/** With no live job the lease tick (and stall probe) runs this many times less often. */
export const REST_TICKS = 5

interface Task {
  jobId: string
  chunk: number
  attempt: number
  phase: 'claiming' | 'queued' | 'running' | 'storing'
  claimedAt: number
  /** Monotonic ms when its engine finished and storing began. */
  storingSince?: number
  controller: AbortController
}

export { MAX_TOMBSTONES } from './job-folds.js'

/**
 * Rendered chunks still storing per render slot before no further claim is made: a bound on
 * the leases a node holds when its disk or log is slower than its renderer.
 */
export const STORING_PER_SLOT = 2

/**
 * While a rendered chunk stores, the claim of the chunk after next waits this long at most
 * for its complete entry, so that claim and complete leave in one gossip message: every
 * message costs every node of the mesh (issue 17), and claim + complete apart were two per
 * chunk. The prefetched chunk is already rendering meanwhile, so the wait idles nothing
 * unless a render is shorter than this.
 */
export const PREFETCH_WITH_COMPLETE_MS = 250

export function createLeaseManager(
  components: LeaseManagerComponents,
  options: LeaseManagerOptions = {},
): LeaseManager {
  const { self, clock, log, liveness, runner } = components
  const logger = components.logger.child('leases')
  const leaseTimeoutMs = options.leaseTimeoutMs ?? 10_000
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
  const tasks = new Map<string, Task>()
  const sealing = new Set<string>()
  /** Leases whose render ended and whose complete/fail entry is being written. */
  const finishing = new Set<string>()
  const stats: LeaseStats = {
    claims: 0,
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
      busy: (jobId, chunk) => tasks.has(keyOf(jobId, chunk)),
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
        await step()
      } while (again && !stopped)
    } catch (err) {
      logger.error('lease pass failed', { error: describeError(err) })
    } finally {
      pumping = false
    }
  }

  const now = () => clock.monotonic()

  /** A job whose open chunks may be claimed (not paused, not waiting for another job). */
  function jobLive(s: JobState | undefined): s is JobState {
    return !!s && isRunnable(s)
  }

  /** A job whose chunks held here keep rendering: live, or paused (renders finish). */
  function jobHeld(s: JobState | undefined): s is JobState {
    return !!s && keepsRenders(s)
  }

  function abortTask(task: Task, why: string): void {
    tasks.delete(keyOf(task.jobId, task.chunk))
    task.controller.abort(new AbortedError(why))
  }

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

  async function step(): Promise<void> {
    const t = now()
    // A pass can come before the first probe after a stall: judge nothing before seeing it.
    judge.observeLoop(t)
    const caps = components.capabilities()

    // 1. Our own tasks: stop what we no longer hold, time out what ran too long.
    for (const task of [...tasks.values()]) {
      if (task.phase === 'claiming') continue
      const s = folds.get(task.jobId)?.state
      const c = s?.chunks[task.chunk]
      if (
        !jobHeld(s) ||
        !c ||
        c.state !== 'claimed' ||
        c.holder !== self ||
        c.attempt !== task.attempt
      ) {
        if (c?.state === 'done') stats.duplicatesAvoided++
        else if (jobLive(s)) stats.lostClaims++
        abortTask(task, 'lease lost')
        continue
      }
      // A paused job: what renders finishes, a prefetched chunk not started goes back.
      if (s.state === 'paused' && task.phase === 'queued') {
        await handBackTask(task, 'job paused')
        continue
      }
      const timeout = judge.chunkTimeoutOf(s)
      if (timeout !== undefined && t - task.claimedAt >= timeout) {
        abortTask(task, 'chunk timeout')
        stats.fails++
        await append(task.jobId, 'fail', {
          chunk: task.chunk,
          attempt: task.attempt,
          reason: 'timeout',
        })
      }
    }

    // 2. Leases the log says we hold but we are not running (we restarted): release them
    //    so others need not wait for the lease timeout.
    for (const [jobId, fold] of folds) {
      const s = fold.state
      if (!jobHeld(s)) continue
      for (const i of [...indexOf(jobId).mine].sort((a, b) => a - b)) {
        const c = s.chunks[i]
        if (c.state !== 'claimed' || c.holder !== self) continue
        const task = tasks.get(keyOf(jobId, c.index))
        if (task && task.attempt === c.attempt) continue
        if (task && task.phase === 'claiming') continue
        if (finishing.has(leaseKey(jobId, c.index, c.attempt, self))) continue
        stats.releases++
        await append(jobId, 'release', {
          chunk: c.index,
          attempt: c.attempt,
          reason: 'not running',
        })
      }
    }

    startQueued(caps)

    // 3. Claim while we have room (bounded: a failing append must not spin). A node with
    // no render slot never claims, not even ahead (it would hold a chunk it cannot start).
    // Just woken from a stall, it first reads what queued: its view of open chunks is stale.
    for (let i = 0; caps.slots > 0 && t >= judge.catchUpUntil() && i <= caps.slots; i++) {
      if (stopped) return
      // Storing chunks hold no claim slot (see the header), up to their own bound.
      let storing = 0
      let rendering = 0
      let storingSince = Number.POSITIVE_INFINITY
      for (const x of tasks.values()) {
        if (x.phase === 'storing') {
          storing++
          storingSince = Math.min(storingSince, x.storingSince ?? t)
        } else if (x.phase !== 'queued') rendering++
      }
      const held = tasks.size - storing
      if (storing >= STORING_PER_SLOT * Math.max(1, caps.slots)) break
      // Room for a claim, or for a prefetch if enough chunks are open: look for one only then.
      const free = held < caps.slots
      if (!free && !(prefetch && held < caps.slots + 1 && rendering >= caps.slots)) break
      // A prefetch while a chunk stores goes out with its complete entry (or after a while).
      if (!free && storing > 0 && t < storingSince + PREFETCH_WITH_COMPLETE_MS) {
        passAt(storingSince + PREFETCH_WITH_COMPLETE_MS - t)
        break
      }
      const pick = chooser.choose(caps, t)
      if (!pick) break
      if (!free && !(pick.open > judge.liveRenderers(t))) break
      if (!(await claim(pick.job, pick.chunk, pick.dead))) break
    }

    // 4. Seal what we submitted once done and acked.
    if (autoSeal) {
      for (const [jobId, fold] of folds) {
        const s = fold.state
        if (
          !s ||
          s.submitter !== self ||
          !s.allAcked ||
          s.sealedBy ||
          s.deleted ||
          sealing.has(jobId)
        )
          continue
        sealing.add(jobId)
        await append(jobId, 'seal', { state: structuredClone(s) })
      }
    }
  }

  /** False when the claim could not even be written. */
  async function claim(s: JobState, c: ChunkState, dead: boolean): Promise<boolean> {
    const task: Task = {
      jobId: s.jobId,
      chunk: c.index,
      attempt: c.attempt + 1,
      phase: 'claiming',
      claimedAt: now(),
      controller: new AbortController(),
    }
    const key = keyOf(task.jobId, task.chunk)
    tasks.set(key, task)
    stats.claims++
    if (dead) stats.reclaims++
    // The scene fetch overlaps the claim's signing, storing and gossip.
    runner.prepare?.(chunkTask(s, c, task.attempt))
    const entry = await append(task.jobId, 'claim', { chunk: task.chunk, attempt: task.attempt })
    if (tasks.get(key) !== task) return !!entry
    const after = folds.get(task.jobId)?.state?.chunks[task.chunk]
    if (
      !entry ||
      after?.state !== 'claimed' ||
      after.holder !== self ||
      after.attempt !== task.attempt
    ) {
      if (entry) stats.lostClaims++
      tasks.delete(key)
      return !!entry
    }
    task.phase = 'queued'
    logger.debug('chunk claimed', {
      jobId: task.jobId,
      chunk: task.chunk,
      attempt: task.attempt,
      claimMs: Math.round(now() - task.claimedAt),
    })
    startQueued(components.capabilities())
    return true
  }

  function startQueued(caps: NodeCapabilities): void {
    if (stopped) return
    let running = 0
    for (const x of tasks.values()) if (x.phase === 'running') running++
    const queued = [...tasks.values()]
      .filter((x) => x.phase === 'queued')
      .sort((a, b) => a.claimedAt - b.claimedAt)
    for (const task of queued) {
      if (running >= caps.slots) break
      running++
      render(task)
    }
  }

  function render(task: Task): void {
    const s = folds.get(task.jobId)!.state!
    const c = s.chunks[task.chunk]
    task.phase = 'running'
    stats.rendersStarted++
    const info = chunkTask(s, c, task.attempt)
    const onProgress = options.onProgress
      ? (p: ChunkProgress) => options.onProgress!(info, p)
      : undefined
    // The engine is done and only storing remains: hand the slot to the prefetched chunk.
    const onRendered = () => {
      if (task.phase !== 'running' || tasks.get(keyOf(task.jobId, task.chunk)) !== task) return
      task.phase = 'storing'
      task.storingSince = now()
      startQueued(components.capabilities())
      // The claim slot is free too: the next chunk is claimed with this one's complete
      // entry, or while it stores if that takes long (PREFETCH_WITH_COMPLETE_MS).
      schedule()
    }
    let started: Promise<ChunkResult>
    try {
      started = runner.start(info, task.controller.signal, onProgress, onRendered)
    } catch (err) {
      started = Promise.reject(err)
    }
    started.then(
      async (result) => {
        if (!settle(task)) return
        const fin = leaseKey(task.jobId, task.chunk, task.attempt, self)
        finishing.add(fin)
        const cur = folds.get(task.jobId)?.state?.chunks[task.chunk]
        if (cur?.state === 'done') {
          stats.duplicatesAvoided++
        } else {
          // Even a lease lost a moment ago: the output is stored and valid, so record it.
          stats.completes++
          await append(task.jobId, 'complete', {
            chunk: task.chunk,
            attempt: task.attempt,
            outputs: result.outputs,
            ...(result.log !== undefined ? { log: result.log } : {}),
            renderMs: Math.max(0, Math.round(result.renderMs)),
          })
        }
        finishing.delete(fin)
        schedule()
      },
      async (err: unknown) => {
        if (!settle(task)) return
        const fin = leaseKey(task.jobId, task.chunk, task.attempt, self)
        finishing.add(fin)
        if (err instanceof ChunkDeferredError) {
          // Not a failure: hand the chunk back and leave the job alone for a while, so a
          // mesh whose submitter is offline waits for it instead of failing the job.
          stats.deferrals++
          deferredUntil.set(task.jobId, now() + deferMs)
          logger.info('chunk deferred', {
            jobId: task.jobId,
            chunk: task.chunk,
            attempt: task.attempt,
            reason: err.reason,
            retryInMs: deferMs,
          })
          await append(task.jobId, 'release', {
            chunk: task.chunk,
            attempt: task.attempt,
            reason: err.reason.slice(0, 1_000),
          })
          finishing.delete(fin)
          schedule()
          return
        }
        const reason =
          err instanceof ChunkFailedError
            ? err.reason
            : isRmeshError(err)
              ? err.code
              : describeError(err)
        const logCid = err instanceof ChunkFailedError ? err.log : undefined
        stats.fails++
        logger.warn('chunk failed', {
          jobId: task.jobId,
          chunk: task.chunk,
          attempt: task.attempt,
          reason,
        })
        await append(task.jobId, 'fail', {
          chunk: task.chunk,
          attempt: task.attempt,
          reason: reason.slice(0, 1_000),
          ...(logCid !== undefined ? { log: logCid } : {}),
        })
        finishing.delete(fin)
        schedule()
      },
    )
  }

  /** Stop a held chunk and release it, so another node (or a later pass) takes it. */
  async function handBackTask(task: Task, reason: string): Promise<void> {
    const fin = leaseKey(task.jobId, task.chunk, task.attempt, self)
    finishing.add(fin)
    abortTask(task, reason)
    stats.releases++
    await append(task.jobId, 'release', {
      chunk: task.chunk,
      attempt: task.attempt,
      reason: reason.slice(0, 1_000),
    })
    finishing.delete(fin)
  }

  function chunkTask(s: JobState, c: ChunkState, attempt: number): ChunkTask {
    return { jobId: s.jobId, job: s.job, chunk: c.index, attempt, frames: c.frames, kind: c.kind }
  }

  /** A finished render frees its slot and starts the prefetched chunk before anything else. */
  function settle(task: Task): boolean {
    if (
      stopped ||
      task.controller.signal.aborted ||
      tasks.get(keyOf(task.jobId, task.chunk)) !== task
    )
      return false
    tasks.delete(keyOf(task.jobId, task.chunk))
    startQueued(components.capabilities())
    return true
  }

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
      const held = [...tasks.values()].filter((x) => x.phase !== 'claiming')
      for (const task of [...tasks.values()]) abortTask(task, 'stopping')
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
      await Promise.all(back.map((x) => handBackTask(x, reason)))
      schedule()
      return back.length
    },

    heldLeases() {
      return [...tasks.values()]
        .filter((x) => x.phase !== 'claiming')
        .map((x) => ({ jobId: x.jobId, chunk: x.chunk, attempt: x.attempt }))
    },

    heartbeatPaceMs() {
      let shortest: number | undefined
      for (const x of tasks.values()) {
        const typical = indexOf(x.jobId).medianRenderMs(STRAGGLER_MIN_SAMPLES)
        if (typical !== undefined && (shortest === undefined || typical < shortest))
          shortest = typical
      }
      return shortest === undefined ? undefined : shortest / BEATS_PER_CHUNK
    },

    noteHeartbeat(peer, leases) {
      if (peer === self) return
      judge.noteHeartbeat(peer, leases, now())
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
