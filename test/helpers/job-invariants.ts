/**
 * The "done never reverts except by the submitter's reject of that exact attempt" check,
 * shared by the reducer property tests and the mesh simulator.
 *
 * Invariant checked: folding the entries in their total order (compareEntries), a chunk
 * that is done leaves done only at a `reject` entry authored by the job's submitter that
 * names that chunk and the chunk's completedAttempt at that point.
 */
import { JobFold } from '../../src/jobs/reducer.js'
import type { LogEntry } from '../../src/log/types.js'
import { compareEntries } from '../../src/log/types.js'

/** The first illegal done → not-done transition in the total order, or undefined. */
export function illegalDoneRevert(entries: readonly LogEntry[]): string | undefined {
  const fold = new JobFold()
  for (const e of [...entries].sort(compareEntries)) {
    const before = fold.state?.chunks.map((c) =>
      c.state === 'done' ? { attempt: c.completedAttempt } : undefined,
    )
    fold.add(e)
    const s = fold.state
    if (!s || !before) continue
    for (const c of s.chunks) {
      const was = before[c.index]
      if (!was || c.state === 'done') continue
      const body = e.body as { chunk?: unknown; attempt?: unknown }
      if (
        e.kind !== 'reject' ||
        e.author !== s.submitter ||
        body.chunk !== c.index ||
        body.attempt !== was.attempt
      )
        return `chunk ${c.index} left done (attempt ${was.attempt}) at ${e.kind} ${e.id} by ${e.author}`
    }
  }
  return undefined
}
