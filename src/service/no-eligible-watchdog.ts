/**
 * The submitter's "no eligible node remains" watchdog (Flamenco's rule: a job that no
 * worker may work on any more fails, with a reason). Runs on the submitter's node only,
 * for the jobs that node submitted.
 *
 * Invariants:
 *  - a job is aborted only after its eligibility verdict (src/jobs/eligibility.ts) was
 *    `stuck` at every check for a whole grace period (monotonic clock); one `ok` check
 *    resets it, so a node that restarts or flaps within the grace never fails a job;
 *  - nothing is judged during a warm-up after start (presence has not heard the peers
 *    yet), so a daemon restart does not see an empty mesh;
 *  - checks never overlap, so at most one abort is in flight; after an abort the job's
 *    grace starts over (a retry that revives it gets a whole grace again); a failed append
 *    is retried at the next check;
 *  - if the submitter is offline nobody aborts: the job just waits (other nodes only show
 *    the waiting hint).
 */
import { eligibilityVerdict, type MeshNode } from '../jobs/eligibility.js'
import { LIMITS } from '../jobs/entries.js'
import type { JobState } from '../jobs/reducer.js'
import type { Clock, TimerHandle } from '../util/clock.js'
import { describeError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'

export const DEFAULT_NO_ELIGIBLE_GRACE_MS = 60_000

export interface NoEligibleWatchdogComponents {
  self: string
  clock: Clock
  /** The jobs this node knows (any submitter; only its own are watched). */
  jobs: () => readonly JobState[]
  /** The live nodes of the mesh, this node included. */
  nodes: () => readonly MeshNode[]
  /** Append the job's `abort` entry. */
  abort: (jobId: string, reason: string) => Promise<void>
  logger: Logger
}

export interface NoEligibleWatchdogOptions {
  /** How long a job must stay stuck before it is failed; default 60 s. */
  graceMs?: number
  /** No verdict counts before this long after start (presence warm-up); default 0. */
  warmupMs?: number
  /** Check period; default min(1 s, grace / 4). */
  tickMs?: number
}

export interface NoEligibleWatchdog {
  start(): void
  stop(): void
  /** One pass over our jobs (the timer runs it every tick). */
  check(): Promise<void>
  /** Ms left before a job of ours that is stuck now is failed; undefined when not stuck. */
  remainingMs(jobId: string): number | undefined
  readonly graceMs: number
}

export function createNoEligibleWatchdog(
  c: NoEligibleWatchdogComponents,
  options: NoEligibleWatchdogOptions = {},
): NoEligibleWatchdog {
  const graceMs = options.graceMs ?? DEFAULT_NO_ELIGIBLE_GRACE_MS
  const tickMs = options.tickMs ?? Math.max(50, Math.min(1_000, Math.floor(graceMs / 4)))
  const warmupMs = options.warmupMs ?? 0
  /** Per stuck job of ours: since when (monotonic) every check found it stuck. */
  const stuckSince = new Map<string, number>()
  let startedAt = 0
  let timer: TimerHandle | undefined
  let stopped = true
  let checking = false

  const live = (s: JobState) =>
    !s.canceled && !s.deleted && (s.state === 'queued' || s.state === 'rendering')

  async function check(): Promise<void> {
    if (checking) return
    checking = true
    try {
      const t = c.clock.monotonic()
      if (t - startedAt < warmupMs) return
      const nodes = c.nodes()
      const seen = new Set<string>()
      for (const s of c.jobs()) {
        if (s.submitter !== c.self || !live(s)) continue
        const v = eligibilityVerdict(s, nodes)
        if (v.ok) continue
        seen.add(s.jobId)
        const since = stuckSince.get(s.jobId) ?? t
        stuckSince.set(s.jobId, since)
        if (t - since < graceMs) continue
        const reason = `no eligible node remains: ${v.why}`.slice(0, LIMITS.maxAbortReason)
        c.logger.warn('failing a job no node can run', { jobId: s.jobId, reason, graceMs })
        try {
          await c.abort(s.jobId, reason)
          stuckSince.delete(s.jobId)
          seen.delete(s.jobId)
        } catch (err) {
          c.logger.warn('abort failed; will retry', { jobId: s.jobId, err: describeError(err) })
        }
      }
      for (const id of stuckSince.keys()) if (!seen.has(id)) stuckSince.delete(id)
    } finally {
      checking = false
    }
  }

  function tick(): void {
    if (stopped) return
    void check().finally(() => {
      if (!stopped) timer = c.clock.setTimeout(tick, tickMs)
    })
  }

  return {
    graceMs,
    start() {
      if (!stopped) return
      stopped = false
      startedAt = c.clock.monotonic()
      timer = c.clock.setTimeout(tick, tickMs)
    },
    stop() {
      stopped = true
      if (timer) c.clock.clearTimeout(timer)
      timer = undefined
    },
    check,
    remainingMs(jobId) {
      const since = stuckSince.get(jobId)
      if (since === undefined) return undefined
      return Math.max(0, graceMs - (c.clock.monotonic() - since))
    },
  }
}
