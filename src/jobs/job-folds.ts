/**
 * The folds of the jobs this node knows, kept entry by entry for the lease manager: each
 * job's JobFold and the chunk index of its open and claimed chunks.
 *
 * Invariants:
 *  - a deleted job's fold is dropped for a chunk-less tombstone (the newest MAX_TOMBSTONES
 *    kept), and its later entries are ignored, so memory follows live jobs, not every job
 *    ever seen;
 *  - a job sealed by an effective seal is folded again from that seal on: the same state,
 *    without the history the log drops too (what a restart loads);
 *  - a job's chunk index is updated with every entry that changes its fold, and built from
 *    the fold when missing (new, pruned, or revived by a retry).
 *  Pure bookkeeping: no clock, no I/O; the caller says when and what.
 */
import type { LogEntry, PeerIdString } from '../log/types.js'
import { jobIdOfLog } from '../log/types.js'
import { foldChanges, markFold } from './fold-changes.js'
import { ChunkIndex } from './lease-index.js'
import type { ChunkState, JobState, ReduceOptions } from './reducer.js'
import { JobFold } from './reducer.js'

/** Deleted jobs remembered (as tombstones) so their late entries do not revive a fold. */
export const MAX_TOMBSTONES = 2_000

export interface JobFolds {
  /**
   * Fold one entry of a job log. `onClaimed` sees each claimed chunk the entry changed
   * (after the index took it); `onBuried` a job the entry deleted. False when the entry was
   * not new to its job (or its job is a tombstone).
   */
  ingest(
    entry: LogEntry,
    onClaimed: (s: JobState, c: ChunkState) => void,
    onBuried: (jobId: string) => void,
  ): boolean
  get(jobId: string): JobFold | undefined
  values(): IterableIterator<JobFold>
  entries(): IterableIterator<[string, JobFold]>
  /** The job's chunk index, built from its fold when missing. */
  indexOf(jobId: string): ChunkIndex
  tombstone(jobId: string): JobState | undefined
  /** Forget the chunk indexes of jobs not in `live` (rebuilt if one comes back). */
  pruneIndexes(live: ReadonlySet<string>): void
  sizes(): { folds: number; tombstones: number; indexes: number }
}

export function createJobFolds(self: PeerIdString, reduceOptions: ReduceOptions): JobFolds {
  const folds = new Map<string, JobFold>()
  const indexes = new Map<string, ChunkIndex>()
  const tombstones = new Map<string, JobState>()

  function indexOf(jobId: string): ChunkIndex {
    let index = indexes.get(jobId)
    if (!index) {
      index = new ChunkIndex(self)
      indexes.set(jobId, index)
      const s = folds.get(jobId)?.state
      if (s) index.update(s, 'all')
    }
    return index
  }

  function bury(jobId: string, s: JobState): void {
    folds.delete(jobId)
    indexes.delete(jobId)
    // Without chunks and frame list a tombstone is ~1 KiB, whatever the job's size.
    tombstones.set(jobId, { ...s, chunks: [], job: { ...s.job, frames: [] } })
    if (tombstones.size > MAX_TOMBSTONES) {
      const oldest = tombstones.keys().next().value
      if (oldest !== undefined) tombstones.delete(oldest)
    }
  }

  /**
   * An effective seal replaces the whole state, so the entries sorted before it no longer
   * matter (the log drops them too): a fold of the seal and what follows it is the same
   * state, without the job's history and checkpoints.
   */
  function rebuiltFromSeal(fold: JobFold, seal: LogEntry): JobFold {
    const es = fold.entries
    const from = es.indexOf(seal)
    if (from <= 0) return fold
    const next = new JobFold(reduceOptions)
    for (let i = from; i < es.length; i++) next.add(es[i])
    return next.state?.sealedBy === seal.id ? next : fold
  }

  return {
    ingest(entry, onClaimed, onBuried) {
      const jobId = jobIdOfLog(entry.log)
      if (jobId === undefined || tombstones.has(jobId)) return false
      let fold = folds.get(jobId)
      if (!fold) {
        fold = new JobFold(reduceOptions)
        folds.set(jobId, fold)
      }
      const mark = markFold(fold)
      if (!fold.add(entry)) return false
      let changes = foldChanges(fold, mark, entry)
      if (fold.state?.deleted) {
        bury(jobId, fold.state)
        onBuried(jobId)
      } else if (entry.kind === 'seal' && fold.state?.sealedBy === entry.id) {
        fold = rebuiltFromSeal(fold, entry)
        folds.set(jobId, fold)
        changes = 'all'
      }
      const s = folds.get(jobId)?.state
      if (s) indexOf(jobId).update(s, changes, (c) => onClaimed(s, c))
      return true
    },
    get: (jobId) => folds.get(jobId),
    values: () => folds.values(),
    entries: () => folds.entries(),
    indexOf,
    tombstone: (jobId) => tombstones.get(jobId),
    pruneIndexes(live) {
      for (const k of indexes.keys()) if (!live.has(k)) indexes.delete(k)
    },
    sizes: () => ({ folds: folds.size, tombstones: tombstones.size, indexes: indexes.size }),
  }
}
