/**
 * The submitter's actions on a job: cancel, retry (or unblock), priority, pause, resume,
 * delete. Each is one log entry;
 * the reducer decides what it means on every node.
 *
 * Invariant: an action is refused here, with a clear message, where the reducer would
 * ignore it (another node's job, an ended job, nothing to retry).
 */
import type * as Api from '../api/types.js'
import { parseFrameSpec } from '../jobs/frame-spec.js'
import type { JobState } from '../jobs/reducer.js'
import { jobLogId } from '../log/types.js'
import { InvalidInputError, RmeshError } from '../util/errors.js'
import { ConflictError, intField, type ServiceContext } from './context.js'

export interface JobActions {
  cancel(idOrPrefix: string): Promise<Api.JobSummary>
  retry(idOrPrefix: string, req: Api.RetryRequest): Promise<Api.RetryResponse>
  setPriority(idOrPrefix: string, priority: number): Promise<Api.JobSummary>
  pause(idOrPrefix: string): Promise<Api.JobSummary>
  resume(idOrPrefix: string): Promise<Api.JobSummary>
  remove(idOrPrefix: string): Promise<Api.DeleteResponse>
}

export function createJobActions(
  ctx: ServiceContext,
  hooks: {
    summaryOf(s: JobState): Api.JobSummary
    cleanupDeleted(jobId: string): Promise<void>
  },
): JobActions {
  const { c, jobOf, resolveId } = ctx

  const requireOwnerOrAdmin = (s: JobState) => {
    // The reducer ignores cancel/retry/priority/delete from anyone but the submitter
    // (and admins, where configured); refuse early here with a clear message.
    if (s.submitter !== c.self) {
      throw new RmeshError(
        'ERR_FORBIDDEN',
        `job ${s.jobId} was submitted by another node (${s.submitter}); run this command there`,
      )
    }
  }

  /** Take `who` (a peer id, or true: every node) off the job's blocklist. */
  const unblock = async (s: JobState, who: string | true): Promise<Api.RetryResponse> => {
    if (s.state === 'canceled')
      throw new ConflictError(`job ${s.jobId} was canceled: there is nothing to unblock`)
    if (s.blocklist.length === 0)
      throw new ConflictError(`job ${s.jobId} has no blocked node (rmesh status ${s.jobId})`)
    let unblocked: string[]
    if (who === true) unblocked = [...s.blocklist]
    else {
      // A unique prefix of a blocked peer id is enough (status shows them shortened).
      const matches = s.blocklist.filter((n) => n === who || n.startsWith(who))
      if (matches.length !== 1)
        throw new InvalidInputError(
          matches.length === 0
            ? `${who} is not blocked for job ${s.jobId} (blocked: ${s.blocklist.join(', ')})`
            : `${who} matches several blocked nodes: ${matches.join(', ')}`,
          { field: 'unblock' },
        )
      unblocked = matches
    }
    await c.log.append(jobLogId(s.jobId), 'unblock', who === true ? {} : { node: unblocked[0] })
    return { jobId: s.jobId, reopened: [], unblocked }
  }

  return {
    async cancel(id) {
      const s = jobOf(resolveId(id))
      requireOwnerOrAdmin(s)
      if (s.state === 'done' || s.state === 'failed' || s.state === 'canceled')
        throw new ConflictError(`job ${s.jobId} has already ended (${s.state})`)
      await c.log.append(jobLogId(s.jobId), 'cancel', {})
      return hooks.summaryOf(jobOf(s.jobId))
    },
    async retry(id, req) {
      const s = jobOf(resolveId(id))
      requireOwnerOrAdmin(s)
      if (req?.unblock !== undefined) return unblock(s, req.unblock)
      let chunks: number[]
      if (req?.frames) {
        const frames = new Set(parseFrameSpec(req.frames))
        chunks = s.chunks.filter((ch) => ch.frames.some((f) => frames.has(f))).map((ch) => ch.index)
        if (chunks.length === 0)
          throw new InvalidInputError(`none of frames ${req.frames} belong to job ${s.jobId}`, {
            field: 'frames',
          })
      } else {
        chunks = s.chunks.filter((ch) => ch.state === 'failed').map((ch) => ch.index)
        // An aborted job (no eligible node remained) has no failed chunk: retry revives it.
        if (chunks.length === 0 && s.abortReason === undefined)
          throw new ConflictError(`job ${s.jobId} has no failed frames to retry`)
      }
      await c.log.append(jobLogId(s.jobId), 'retry', { chunks })
      const aborted = s.abortReason !== undefined
      const reopened = [
        ...new Set(
          s.chunks
            .filter((ch) => chunks.includes(ch.index) || (aborted && ch.state !== 'done'))
            .flatMap((ch) => ch.frames),
        ),
      ]
      return { jobId: s.jobId, reopened }
    },
    async setPriority(id, priority) {
      const s = jobOf(resolveId(id))
      requireOwnerOrAdmin(s)
      const p = intField(priority, 'priority', 0, 100, 50)
      await c.log.append(jobLogId(s.jobId), 'priority', { priority: p })
      return hooks.summaryOf(jobOf(s.jobId))
    },
    async pause(id) {
      const s = jobOf(resolveId(id))
      requireOwnerOrAdmin(s)
      if (s.state === 'done' || s.state === 'failed' || s.state === 'canceled')
        throw new ConflictError(`job ${s.jobId} has already ended (${s.state})`)
      if (s.paused) throw new ConflictError(`job ${s.jobId} is already paused`)
      await c.log.append(jobLogId(s.jobId), 'pause', {})
      return hooks.summaryOf(jobOf(s.jobId))
    },
    async resume(id) {
      const s = jobOf(resolveId(id))
      requireOwnerOrAdmin(s)
      if (!s.paused) throw new ConflictError(`job ${s.jobId} is not paused (it is ${s.state})`)
      await c.log.append(jobLogId(s.jobId), 'resume', {})
      return hooks.summaryOf(jobOf(s.jobId))
    },
    async remove(id) {
      const s = jobOf(resolveId(id))
      requireOwnerOrAdmin(s)
      if (
        s.state === 'queued' ||
        s.state === 'rendering' ||
        s.state === 'paused' ||
        s.state === 'waiting'
      )
        throw new ConflictError(
          `job ${s.jobId} is still ${s.state}: cancel it first (rmesh cancel ${s.jobId})`,
        )
      await c.log.append(jobLogId(s.jobId), 'delete', {})
      await ctx.deleteLocal(s.jobId)
      await hooks.cleanupDeleted(s.jobId)
      return { jobId: s.jobId, deleted: true }
    },
  }
}
