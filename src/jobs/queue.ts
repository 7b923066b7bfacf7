/**
 * The queue across jobs: which unfinished jobs nodes claim from, in what order, within each
 * submitter's quota. Pure.
 */
import type { PeerIdString } from '../log/types.js'
import { isRunnable, type JobState } from './job-state.js'

export interface QueueItem {
  job: JobState
  /** False when the submitter is over its maxQueuedJobs quota: the job waits, nobody claims it. */
  admitted: boolean
  reason?: 'quota'
}

export interface QueueOptions {
  /** maxQueuedJobs of a submitter (from its token); undefined: no limit. */
  quotaOf?: (submitter: PeerIdString) => number | undefined
}

/** Submission order: the announce's wall time, then its entry id (a deterministic tie-break). */
export function compareSubmission(a: JobState, b: JobState): number {
  if (a.createdAt !== b.createdAt) return a.createdAt - b.createdAt
  return a.announce.id < b.announce.id ? -1 : a.announce.id > b.announce.id ? 1 : 0
}

/**
 * The runnable queue: unfinished, undeleted jobs, priority descending then submission
 * order. Quotas are applied per submitter in submission order: the first maxQueuedJobs
 * unfinished jobs of a submitter are admitted, later ones wait (reason 'quota') until
 * earlier ones finish. Pure.
 */
export function reduceQueue(jobs: readonly JobState[], options: QueueOptions = {}): QueueItem[] {
  const live = jobs.filter((j) => !j.deleted && isRunnable(j))
  const bySubmission = [...live].sort(compareSubmission)
  const counts = new Map<string, number>()
  const admitted = new Map<JobState, boolean>()
  for (const j of bySubmission) {
    const quota = options.quotaOf?.(j.submitter)
    const n = counts.get(j.submitter) ?? 0
    const ok = quota === undefined || n < quota
    if (ok) counts.set(j.submitter, n + 1)
    admitted.set(j, ok)
  }
  return bySubmission
    .sort((a, b) => b.priority - a.priority || compareSubmission(a, b))
    .map((job) =>
      admitted.get(job)
        ? { job, admitted: true }
        : { job, admitted: false, reason: 'quota' as const },
    )
}
