/**
 * The lease manager's renders: starting held chunks in render slots, and the path of one
 * render from its engine to its complete, fail or release entry (storing between).
 *
 * Invariants:
 *  - at most `slots` tasks run; queued tasks start oldest claim first, and a finished or
 *    rendered chunk hands its slot to the prefetched one before anything else;
 *  - a render's outcome is written only while its task is current and not aborted: an
 *    aborted render (lease lost, cancel, stop) writes nothing;
 *  - a complete entry is written only with the outputs the runner returned (stored), even
 *    for a lease lost a moment ago (the output is valid); never for a chunk already done
 *    (a duplicate avoided);
 *  - a fail entry only for a render that failed on its own, never for one we aborted; a
 *    deferred chunk (ChunkDeferredError) is released, not failed, and its job left alone
 *    for deferMs;
 *  - while an outcome is written the lease is `finishing` (lease-tasks.ts), so no pass
 *    releases it as "not running"; a pass is scheduled once it is written;
 *  - a complete and the next claim (if a pass would make one now: same chooser and rules,
 *    lease-pass.ts) are decided before either is written and appended back to back,
 *    complete first, so they leave in one gossip message; the job's tail (nothing to claim)
 *    writes the complete alone; a claim that cannot be written drops its task (no render,
 *    slot free); a complete that cannot be written is logged and its lease released by a
 *    later pass, as before.
 */
import { describeError, isRmeshError } from '../util/errors.js'
import type { PendingClaim } from './lease-pass.js'
import type { LeaseCoreDeps, Task } from './lease-tasks.js'
import type { LeaseManagerOptions, NodeCapabilities } from './lease-types.js'
import type { ChunkState, JobState } from './reducer.js'
import type { ChunkProgress, ChunkResult, ChunkTask } from './runner.js'
import { ChunkDeferredError, ChunkFailedError } from './runner.js'

export interface LeaseRenderDeps extends LeaseCoreDeps {
  /** A lease pass soon. */
  schedule(): void
  /**
   * The claim a pass would make now, taken in the task table but not written
   * (lease-pass.ts nextClaim): written right after a complete, in the same gossip message.
   */
  nextClaim(): PendingClaim | undefined
  stopped(): boolean
  /** Jobs left alone until a monotonic time (a chunk was deferred). */
  deferredUntil: Map<string, number>
  deferMs: number
  onProgress?: LeaseManagerOptions['onProgress']
}

export interface LeaseRenders {
  /** Start queued tasks while render slots are free. */
  startQueued(caps: NodeCapabilities): void
  /** Stop a held chunk and release it, so another node (or a later pass) takes it. */
  handBack(task: Task, reason: string): Promise<void>
  chunkTask(s: JobState, c: ChunkState, attempt: number): ChunkTask
}

export function createLeaseRenders(deps: LeaseRenderDeps): LeaseRenders {
  const { tasks, jobs, runner, stats, logger, now, append } = deps

  function startQueued(caps: NodeCapabilities): void {
    if (deps.stopped()) return
    let running = tasks.running()
    for (const task of tasks.queued()) {
      if (running >= caps.slots) break
      running++
      render(task)
    }
  }

  function chunkTask(s: JobState, c: ChunkState, attempt: number): ChunkTask {
    return { jobId: s.jobId, job: s.job, chunk: c.index, attempt, frames: c.frames, kind: c.kind }
  }

  function render(task: Task): void {
    const s = jobs.get(task.jobId)!.state!
    const c = s.chunks[task.chunk]
    task.phase = 'running'
    task.renderStartedAt = now()
    stats.rendersStarted++
    const info = chunkTask(s, c, task.attempt)
    const onProgress = deps.onProgress ? (p: ChunkProgress) => deps.onProgress!(info, p) : undefined
    // The engine is done and only storing remains: hand the slot to the prefetched chunk.
    const onRendered = () => {
      if (task.phase !== 'running' || !tasks.isCurrent(task)) return
      task.phase = 'storing'
      task.storingSince = now()
      startQueued(deps.capabilities())
      // The claim slot is free too: the next chunk is claimed with this one's complete
      // entry, or while it stores if that takes long (prefetchWaitMs, lease-pass.ts).
      deps.schedule()
    }
    let started: Promise<ChunkResult>
    try {
      started = runner.start(info, task.controller.signal, onProgress, onRendered)
    } catch (err) {
      started = Promise.reject(err)
    }
    started.then(
      (result) => finished(task, result),
      (err: unknown) => failed(task, err),
    )
  }

  async function finished(task: Task, result: ChunkResult): Promise<void> {
    if (!settle(task)) return
    tasks.beginFinish(task)
    const cur = jobs.get(task.jobId)?.state?.chunks[task.chunk]
    if (cur?.state === 'done') {
      stats.duplicatesAvoided++
    } else {
      // The next claim is decided before the complete is written and both appends are
      // issued back to back (complete first): one message for both (issue 17), instead of
      // a claim one pass after the complete's write, mostly past the publish window. The
      // chunk left the task table above, so the decision sees the room the pass after the
      // complete would see.
      const next = deps.nextClaim()
      // Even a lease lost a moment ago: the output is stored and valid, so record it.
      stats.completes++
      const written = append(task.jobId, 'complete', {
        chunk: task.chunk,
        attempt: task.attempt,
        outputs: result.outputs,
        ...(result.log !== undefined ? { log: result.log } : {}),
        renderMs: Math.max(0, Math.round(result.renderMs)),
      })
      const claimed = next?.write()
      if (next) {
        stats.claimsWithComplete++
        // Another job's log: its own append queue, so maybe a message of its own.
        if (next.jobId !== task.jobId) stats.claimsWithCompleteApart++
      }
      await Promise.all([written, claimed])
    }
    tasks.endFinish(task)
    deps.schedule()
  }

  async function failed(task: Task, err: unknown): Promise<void> {
    if (!settle(task)) return
    tasks.beginFinish(task)
    if (err instanceof ChunkDeferredError) {
      // Not a failure: hand the chunk back and leave the job alone for a while, so a
      // mesh whose submitter is offline waits for it instead of failing the job.
      stats.deferrals++
      deps.deferredUntil.set(task.jobId, now() + deps.deferMs)
      logger.info('chunk deferred', {
        jobId: task.jobId,
        chunk: task.chunk,
        attempt: task.attempt,
        reason: err.reason,
        retryInMs: deps.deferMs,
      })
      await append(task.jobId, 'release', {
        chunk: task.chunk,
        attempt: task.attempt,
        reason: err.reason.slice(0, 1_000),
      })
      tasks.endFinish(task)
      deps.schedule()
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
    tasks.endFinish(task)
    deps.schedule()
  }

  async function handBack(task: Task, reason: string): Promise<void> {
    tasks.beginFinish(task)
    tasks.abort(task, reason)
    stats.releases++
    await append(task.jobId, 'release', {
      chunk: task.chunk,
      attempt: task.attempt,
      reason: reason.slice(0, 1_000),
    })
    tasks.endFinish(task)
  }

  /** A finished render frees its slot and starts the prefetched chunk before anything else. */
  function settle(task: Task): boolean {
    if (deps.stopped() || task.controller.signal.aborted || !tasks.isCurrent(task)) return false
    tasks.remove(task)
    startQueued(deps.capabilities())
    return true
  }

  return { startQueued, handBack, chunkTask }
}
