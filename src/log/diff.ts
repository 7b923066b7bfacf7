/**
 * The difference between two replicas of one log, for sync: which of our entries the other
 * side lacks, given its heads. Pure functions over a log's entries by id.
 *
 * Invariant relied on: a stored entry's Lamport clock is greater than each of its parents'
 * (log.ts refuses others, EntryClockError), so walking in descending fold order meets an
 * entry only after every child that reaches it.
 */
import { compareEntries, type EntryId, type LogEntry } from './types.js'

/**
 * The entries of `byId` that are not ancestors of (or equal to) `theirs`, in fold order,
 * found by walking down from both sides' heads at once in descending clock order: a
 * parent's clock is below its child's, so an entry is popped only after every child that
 * reaches it, and its mark (reachable from their heads or not) is final. The walk stops
 * when nothing left to visit is ours only: the rest is below their heads. During a burst
 * the other side is a few entries behind, so this costs the difference, not the log.
 */
export function walkDiff(
  byId: ReadonlyMap<EntryId, LogEntry>,
  ours: readonly EntryId[],
  theirs: readonly EntryId[],
): LogEntry[] {
  const theirsMark = new Map<EntryId, boolean>()
  const heap: LogEntry[] = []
  let oursQueued = 0
  const visit = (id: EntryId, mark: boolean) => {
    const seen = theirsMark.get(id)
    if (seen === undefined) {
      theirsMark.set(id, mark)
      heapPush(heap, byId.get(id)!)
      if (!mark) oursQueued++
    } else if (mark && !seen) {
      theirsMark.set(id, true) // still queued: its clock is below the entry being popped
      oursQueued--
    }
  }
  for (const h of theirs) visit(h, true)
  for (const h of ours) visit(h, false)
  const out: LogEntry[] = []
  while (oursQueued > 0) {
    const e = heapPop(heap)!
    const mark = theirsMark.get(e.id)!
    if (!mark) {
      oursQueued--
      out.push(e)
    }
    for (const p of e.next) if (byId.has(p)) visit(p, mark)
  }
  return out.sort(compareEntries)
}

/** The same difference by marking every ancestor of their heads (a whole-log walk). */
export function fullDiff(
  entries: readonly LogEntry[],
  byId: ReadonlyMap<EntryId, LogEntry>,
  theirs: readonly EntryId[],
): LogEntry[] {
  const seen = new Set<EntryId>()
  const stack = [...theirs]
  while (stack.length > 0) {
    const id = stack.pop()!
    if (seen.has(id)) continue
    seen.add(id)
    for (const p of byId.get(id)?.next ?? []) if (byId.has(p)) stack.push(p)
  }
  return entries.filter((e) => !seen.has(e.id))
}

/** A binary max-heap in fold order (greatest clock on top). */
function heapPush(heap: LogEntry[], e: LogEntry): void {
  let i = heap.push(e) - 1
  while (i > 0) {
    const parent = (i - 1) >> 1
    if (compareEntries(heap[parent], heap[i]) >= 0) break
    ;[heap[parent], heap[i]] = [heap[i], heap[parent]]
    i = parent
  }
}

function heapPop(heap: LogEntry[]): LogEntry | undefined {
  const top = heap[0]
  const last = heap.pop()
  if (heap.length === 0 || last === undefined) return top
  heap[0] = last
  let i = 0
  for (;;) {
    const l = 2 * i + 1
    const r = l + 1
    let m = i
    if (l < heap.length && compareEntries(heap[l], heap[m]) > 0) m = l
    if (r < heap.length && compareEntries(heap[r], heap[m]) > 0) m = r
    if (m === i) break
    ;[heap[m], heap[i]] = [heap[i], heap[m]]
    i = m
  }
  return top
}
