/**
 * Which chunk records one entry added to a JobFold may have changed, so that whoever keeps
 * an index over a fold's chunks (the lease manager's open-chunk index, the simulator's
 * invariant checks) updates it in O(1) per entry instead of rescanning every chunk.
 *
 * Invariants (checked against full comparisons by test/property/jobs/reducer.property.test.ts):
 *  - every chunk whose record differs after the add is in the answer, or the answer is
 *    'all'; it may name chunks that did not change;
 *  - 'all' whenever the fold replaced its state with another job's layout (the first
 *    announce, an effective seal) or the entry's kind can touch many chunks (retry) or is
 *    one this module does not know; after a replay from a checkpoint (an entry that sorts
 *    before the last one and does not commute), the chunks whose record objects differ:
 *    records are copy-on-write, so one that changed on either path is a new object;
 *  - an entry applied in place (at the tail, or where it commutes) touches only what the reducer's rule for its
 *    kind touches: the chunk it names, plus the encode chunk (it opens once every frame
 *    chunk is done, and waits again when one of them is rejected); ack names its chunks;
 *    cancel, abort, delete and priority change job fields only. Job-wide fields (state,
 *    blocklist, failure counts) are not chunk records: readers look at those directly.
 */
import type { LogEntry } from '../log/types.js'
import type { JobFold, JobState } from './reducer.js'

export type FoldChanges = 'all' | readonly number[]

/** What a fold looked like before an add. */
export interface FoldMark {
  state: JobState | undefined
  chunks: JobState['chunks'] | undefined
  length: number
}

export function markFold(fold: JobFold): FoldMark {
  const state = fold.state
  return { state, chunks: state?.chunks, length: fold.entries.length }
}

const CHUNK_KINDS = new Set(['claim', 'release', 'fail', 'complete', 'reject'])
const JOB_KINDS = new Set(['cancel', 'abort', 'delete', 'priority'])

/** The chunks `entry`, just given to `fold.add`, may have changed since `mark`. */
export function foldChanges(fold: JobFold, mark: FoldMark, entry: LogEntry): FoldChanges {
  const es = fold.entries
  if (es.length === mark.length) return []
  const s = fold.state
  if (s !== mark.state || s?.chunks !== mark.chunks) {
    // A replay from a checkpoint: chunk records are copy-on-write (jobs/reducer.ts), so a
    // record that changed on either path since that checkpoint is a different object.
    const before = mark.chunks
    if (!s || !mark.state || !before || s.announce.id !== mark.state.announce.id) return 'all'
    if (s.chunks.length !== before.length || s.sealedBy !== mark.state.sealedBy) return 'all'
    const out: number[] = []
    for (let i = 0; i < before.length; i++) if (s.chunks[i] !== before[i]) out.push(i)
    return out
  }
  if (!s) return []
  // The same state object: the fold applied this one entry in place (at the tail, or
  // earlier where it commutes with what follows); a replay would have replaced it.
  if (es.length !== mark.length + 1) return 'all'
  if (JOB_KINDS.has(entry.kind) || entry.kind === 'announce' || entry.kind === 'seal') {
    // A second announce or an ineffective seal changes nothing; an effective seal
    // replaced the state (caught above).
    return []
  }
  const body = entry.body as { chunk?: unknown; chunks?: unknown } | null
  if (entry.kind === 'ack') {
    if (!Array.isArray(body?.chunks)) return []
    return body.chunks.filter((i): i is number => Number.isSafeInteger(i))
  }
  if (!CHUNK_KINDS.has(entry.kind)) return 'all'
  const out: number[] = []
  if (Number.isSafeInteger(body?.chunk)) out.push(body!.chunk as number)
  const last = s.chunks.length - 1
  if (last >= 0 && s.chunks[last].kind === 'encode' && out[0] !== last) out.push(last)
  return out
}
