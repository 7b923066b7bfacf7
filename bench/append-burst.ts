/**
 * The append pattern of the log benches: `count` appends in bursts of `burst` issued
 * together (no append awaits another of its burst, as a daemon's handlers of one network
 * read append, e.g. a chunk's complete and the next claim), with a yield to the event loop
 * after each burst so gossip and sync run meanwhile. burst 1 awaits every append (the
 * pattern before group commit), yielding every 64 appends.
 *
 * Invariant: appends are issued in index order and all of them are awaited; the entry of
 * the last index is returned.
 */
import type { LogEntry } from '../src/log/types.js'

/** With burst 1: appends between two yields to the event loop. */
const YIELD_EVERY = 64

export async function appendBurst(
  count: number,
  burst: number,
  append: (i: number) => Promise<LogEntry>,
): Promise<LogEntry> {
  let last: LogEntry | undefined
  let sinceYield = 0
  for (let i = 0; i < count; ) {
    const n = Math.min(burst, count - i)
    const group: Array<Promise<LogEntry>> = []
    for (let k = 0; k < n; k++) group.push(append(i + k))
    const done = await Promise.all(group)
    last = done[done.length - 1]
    i += n
    sinceYield += n
    // A daemon appends from events, between network reads; on a memory store a tight
    // loop of awaits never yields, and nothing would go out until the last append.
    if (burst > 1 || sinceYield >= YIELD_EVERY) {
      sinceYield = 0
      await new Promise((r) => setImmediate(r))
    }
  }
  if (!last) throw new Error('appendBurst: count must be at least 1')
  return last
}
