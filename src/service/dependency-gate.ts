/**
 * Job order (`submit --after`): the submitter's node decides when a job that waits for
 * other jobs starts or fails, and writes that decision into the job's own log, so every
 * replica folds the same state from that log alone (protocols/job-entries.md, "Job
 * order"). Runs on the submitter's node only, for the jobs that node submitted.
 *
 * Invariants:
 *  - a `ready` entry is written only when every job of `after` is done on this replica
 *    (done never reverts except by its submitter's reject, which is a re-render, not a
 *    failure: the dependent has started by then and keeps going);
 *  - an `abort` naming the dependency is written when one has failed, was canceled or
 *    deleted, or is still unknown here `unknownGraceMs` after start (its log may still be
 *    syncing: a restart must not fail jobs); a retry of the aborted job is judged again;
 *  - event-driven: any job entry schedules one check (coalesced); a timer runs only while a
 *    job waits for an unknown dependency, to end its grace;
 *  - checks never overlap, so at most one entry per job is in flight; a failed append is
 *    tried again at the next check.
 */
import { LIMITS } from '../jobs/entries.js'
import type { JobState } from '../jobs/reducer.js'
import type { Clock, TimerHandle } from '../util/clock.js'
import { describeError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'

/** How long a dependency may stay unknown after start before the job waiting for it fails. */
export const DEFAULT_UNKNOWN_DEPENDENCY_GRACE_MS = 30_000

export interface DependencyGateComponents {
  self: string
  clock: Clock
  /** The jobs this node knows (only its own that wait are judged). */
  jobs: () => readonly JobState[]
  /** A job by id, a deleted one as a tombstone; undefined when unknown here. */
  job: (jobId: string) => JobState | undefined
  append: (jobId: string, kind: 'ready' | 'abort', body: object) => Promise<void>
  logger: Logger
}

export interface DependencyGate {
  start(): void
  stop(): void
  /** Schedule a check (after any job entry). */
  poke(): void
  /** One pass over our waiting jobs. */
  check(): Promise<void>
}

/** What one dependency says about the job waiting for it. */
export type DependencyVerdict =
  | { kind: 'done' }
  | { kind: 'pending' }
  | { kind: 'unknown' }
  | { kind: 'failed'; reason: string }

/** Pure: the verdict on dependency `id` given its state on this replica. */
export function dependencyVerdict(id: string, dep: JobState | undefined): DependencyVerdict {
  if (!dep) return { kind: 'unknown' }
  if (dep.state === 'done') return { kind: 'done' }
  if (dep.deleted) return { kind: 'failed', reason: `dependency ${id} was deleted` }
  if (dep.state === 'canceled') return { kind: 'failed', reason: `dependency ${id} was canceled` }
  if (dep.state === 'failed')
    return {
      kind: 'failed',
      reason: `dependency ${id} failed${dep.abortReason ? `: ${dep.abortReason}` : ''}`,
    }
  return { kind: 'pending' }
}

/** A job of ours that waits for its `after` jobs and may still start. */
function gated(s: JobState, self: string): boolean {
  return (
    s.submitter === self &&
    s.waiting === true &&
    !s.canceled &&
    !s.deleted &&
    s.abortReason === undefined &&
    s.state !== 'failed' &&
    s.state !== 'done'
  )
}

export function createDependencyGate(
  c: DependencyGateComponents,
  options: { unknownGraceMs?: number } = {},
): DependencyGate {
  const graceMs = options.unknownGraceMs ?? DEFAULT_UNKNOWN_DEPENDENCY_GRACE_MS
  let startedAt = 0
  let stopped = true
  let checking = false
  let again = false
  let soon: TimerHandle | undefined
  let graceTimer: TimerHandle | undefined
  /** Jobs whose decision is written and not yet folded back: not written twice. */
  const inFlight = new Set<string>()

  async function judge(s: JobState): Promise<'unknown' | undefined> {
    let unknown = false
    let allDone = true
    for (const id of s.job.after ?? []) {
      const v = dependencyVerdict(id, c.job(id))
      if (v.kind === 'failed') {
        await decide(s, 'abort', { reason: v.reason.slice(0, LIMITS.maxAbortReason) })
        return undefined
      }
      if (v.kind !== 'done') allDone = false
      if (v.kind === 'unknown') unknown = true
    }
    if (allDone) {
      await decide(s, 'ready', {})
      return undefined
    }
    if (!unknown) return undefined
    if (c.clock.monotonic() - startedAt < graceMs) return 'unknown'
    const missing = (s.job.after ?? []).filter((id) => !c.job(id))
    await decide(s, 'abort', {
      reason: `dependency ${missing.join(', ')} is unknown on this mesh (deleted, or never synced here)`,
    })
    return undefined
  }

  async function decide(s: JobState, kind: 'ready' | 'abort', body: object): Promise<void> {
    if (inFlight.has(s.jobId)) return
    inFlight.add(s.jobId)
    try {
      c.logger.info(kind === 'ready' ? 'job dependencies done' : 'job dependency failed', {
        jobId: s.jobId,
        ...body,
      })
      await c.append(s.jobId, kind, body)
    } catch (err) {
      c.logger.warn('job order entry failed; will retry', {
        jobId: s.jobId,
        kind,
        err: describeError(err),
      })
    } finally {
      inFlight.delete(s.jobId)
    }
  }

  async function check(): Promise<void> {
    if (checking) {
      again = true
      return
    }
    checking = true
    try {
      do {
        again = false
        let waitsOnUnknown = false
        for (const s of c.jobs()) {
          if (stopped) return
          if (!gated(s, c.self)) continue
          if ((await judge(s)) === 'unknown') waitsOnUnknown = true
        }
        if (waitsOnUnknown && !graceTimer && !stopped) {
          const left = Math.max(0, startedAt + graceMs - c.clock.monotonic())
          graceTimer = c.clock.setTimeout(() => {
            graceTimer = undefined
            poke()
          }, left + 10)
        }
      } while (again && !stopped)
    } finally {
      checking = false
    }
  }

  function poke(): void {
    if (stopped || soon) return
    soon = c.clock.setTimeout(() => {
      soon = undefined
      void check()
    }, 0)
  }

  return {
    start() {
      if (!stopped) return
      stopped = false
      startedAt = c.clock.monotonic()
      poke()
    },
    stop() {
      stopped = true
      for (const t of [soon, graceTimer]) if (t) c.clock.clearTimeout(t)
      soon = graceTimer = undefined
    },
    poke,
    check,
  }
}
