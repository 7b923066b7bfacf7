/**
 * The state a job log folds into (jobs/reducer.ts): the job, its chunks, their holders,
 * failures and outputs, and the predicates that read it. Types and pure reads only; how
 * entries change it is jobs/fold-rules.ts.
 *
 * Invariants: a state object is only mutated by the accumulator that owns it (fold-rules.ts)
 * or its copy made by cloneState; everything else reads it.
 */
import type { EntryId, PeerIdString } from '../log/types.js'
import type { AnnounceBody, ChunkOutput } from './entries.js'

/**
 * 'paused': its submitter paused it (no new claim; running chunks finish); 'waiting': it
 * waits for the jobs of its announce's `after` (no claim until its `ready` entry).
 */
export type JobStatus =
  | 'queued'
  | 'rendering'
  | 'paused'
  | 'waiting'
  | 'done'
  | 'failed'
  | 'canceled'
/** 'waiting' is the encode chunk before every frame chunk is done. */
export type ChunkStatus = 'waiting' | 'open' | 'claimed' | 'done' | 'failed'
export type ChunkKind = 'frames' | 'encode'

export interface ChunkFailure {
  node: PeerIdString
  attempt: number
  reason: string
}

export interface ChunkState {
  index: number
  kind: ChunkKind
  frames: number[]
  state: ChunkStatus
  /** The latest attempt number claimed (0: never claimed). The next claim must be higher. */
  attempt: number
  /** Set exactly when state is 'claimed'. */
  holder?: PeerIdString
  /** Lamport clock of the winning claim of `attempt` (0: never claimed). */
  claimClock: number
  failures: ChunkFailure[]
  outputs?: ChunkOutput[]
  log?: string
  completedBy?: PeerIdString
  /** The attempt named by the complete that made the chunk done: what a reject must name. */
  completedAttempt?: number
  renderMs?: number
  acked: boolean
}

export interface JobState {
  jobId: string
  name: string
  submitter: PeerIdString
  state: JobStatus
  priority: number
  /** The announce's wall time: informational (and the FIFO tie-break of the queue). */
  createdAt: number
  announce: { id: EntryId; clock: number; author: PeerIdString }
  job: AnnounceBody
  chunks: ChunkState[]
  framesDone: number
  framesTotal: number
  /** Nodes with at least maxFailuresPerNode failures in this job: their claims are ignored. */
  blocklist: PeerIdString[]
  nodeFailures: Record<string, number>
  /** Valid completes beyond the first for a chunk. */
  duplicates: number
  canceled: boolean
  /** Set by a pause, dropped by a resume: no claim is honoured meanwhile. */
  paused?: true
  /** Set while the announce's `after` jobs are not known done (until the `ready` entry). */
  waiting?: true
  /** Set by the submitter's abort (no node can take what is left): the job is failed until retried. */
  abortReason?: string
  deleted: boolean
  /** Every chunk done and acked by the submitter. */
  allAcked: boolean
  /** Id of the seal entry this state started from, if any. */
  sealedBy?: EntryId
}

export interface ReduceOptions {
  /** Authors allowed to cancel, retry, reprioritise and delete any job. Must be deterministic. */
  isAdmin?: (peer: PeerIdString) => boolean
}

/**
 * A copy for an accumulator to mutate: job-wide fields it mutates in place (the failure
 * counts) are copied; chunk records are shared and copied on write by the Acc (own).
 * Frames, outputs and the announce body are never mutated, so shared.
 */
export function cloneState(s: JobState): JobState {
  return {
    ...s,
    announce: { ...s.announce },
    nodeFailures: { ...s.nodeFailures },
    blocklist: s.blocklist.slice(),
    chunks: s.chunks.slice(),
  }
}

/** Queued or rendering, not canceled or deleted: a job whose open chunks may be claimed. */
export function isRunnable(s: JobState): boolean {
  return !s.canceled && !s.deleted && (s.state === 'queued' || s.state === 'rendering')
}

/**
 * A job whose held leases keep rendering: runnable, or paused (a pause stops new claims,
 * not the renders already running).
 */
export function keepsRenders(s: JobState): boolean {
  return isRunnable(s) || (!s.canceled && !s.deleted && s.state === 'paused')
}
