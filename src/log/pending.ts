/**
 * The pending set of the log manager: entries waiting for parents this node lacks, or for
 * their author's token (then `missing` is empty and retryPending() brings them back).
 *
 * Invariants:
 *  - bounded in count and bytes; adding past a bound evicts the oldest entry first (sync
 *    fetches what was lost again), and an entry too big for the bounds alone is refused;
 *  - `waiting` is the exact inverse of every held entry's `missing` set: removing an entry
 *    removes it from every parent's list, so no child is released or dropped twice;
 *  - it never touches the store: which parent is stored is the caller's question.
 */
import type { Logger } from '../util/logger.js'
import type { EntryId, LogEntry, LogId } from './types.js'

export interface Pending {
  entry: LogEntry
  /** Parents not stored yet; empty when waiting for authorization. */
  missing: Set<EntryId>
}

export interface PendingSet {
  readonly size: number
  has(id: EntryId): boolean
  get(id: EntryId): Pending | undefined
  values(): IterableIterator<Pending>
  /** Hold an entry; false when it cannot be held (too big for the bounds even alone). */
  add(entry: LogEntry, missing: Set<EntryId>): boolean
  remove(id: EntryId): Pending | undefined
  /**
   * `id` is now stored in `log`: its held children whose parents are now all stored leave
   * the set and are returned (to be integrated); children in another log are dropped.
   */
  release(log: LogId, id: EntryId): LogEntry[]
  /** `id` will never be stored: drop its held descendants, calling onDrop for each. */
  dropDescendants(id: EntryId, onDrop: (id: EntryId) => void): void
  /** The ids, neither held nor dropped, that the entries `ids` (transitively) wait for. */
  missingOf(ids: Iterable<EntryId>, dropped: ReadonlySet<EntryId>): EntryId[]
  /** Every parent id some held entry waits for. */
  awaited(): IterableIterator<EntryId>
}

export function createPendingSet(opts: {
  maxEntries: number
  maxBytes: number
  logger: Logger
}): PendingSet {
  const { maxEntries, maxBytes, logger } = opts
  const pending = new Map<EntryId, Pending>()
  const waiting = new Map<EntryId, Set<EntryId>>() // missing parent → pending children
  let bytes = 0

  function remove(id: EntryId): Pending | undefined {
    const p = pending.get(id)
    if (!p) return undefined
    pending.delete(id)
    bytes -= p.entry.bytes.byteLength
    for (const m of p.missing) {
      const set = waiting.get(m)
      set?.delete(id)
      if (set && set.size === 0) waiting.delete(m)
    }
    return p
  }

  function dropDescendants(id: EntryId, onDrop: (id: EntryId) => void): void {
    const children = waiting.get(id)
    if (!children) return
    waiting.delete(id)
    for (const c of children) {
      if (!remove(c)) continue
      onDrop(c)
      dropDescendants(c, onDrop)
    }
  }

  return {
    get size() {
      return pending.size
    },
    has: (id) => pending.has(id),
    get: (id) => pending.get(id),
    values: () => pending.values(),
    remove,
    dropDescendants,

    add(entry, missing) {
      if (entry.bytes.byteLength > maxBytes || maxEntries <= 0) return false
      while (pending.size >= maxEntries || bytes + entry.bytes.byteLength > maxBytes) {
        const oldest = pending.keys().next().value
        if (oldest === undefined) break
        remove(oldest)
        logger.debug('pending set full: evicted an entry', { id: oldest })
      }
      pending.set(entry.id, { entry, missing })
      bytes += entry.bytes.byteLength
      for (const m of missing) {
        let set = waiting.get(m)
        if (!set) {
          set = new Set()
          waiting.set(m, set)
        }
        set.add(entry.id)
      }
      return true
    },

    release(log, id) {
      const out: LogEntry[] = []
      const children = waiting.get(id)
      if (!children) return out
      waiting.delete(id)
      for (const c of children) {
        const p = pending.get(c)
        if (!p) continue
        p.missing.delete(id)
        // A child in another log can never be valid (parents stay in their log): drop it.
        if (p.entry.log !== log) remove(c)
        else if (p.missing.size === 0) {
          remove(c)
          out.push(p.entry)
        }
      }
      return out
    },

    missingOf(ids, dropped) {
      const out = new Set<EntryId>()
      const seen = new Set<EntryId>()
      const walk = (id: EntryId) => {
        if (seen.has(id)) return
        seen.add(id)
        const p = pending.get(id)
        if (!p) {
          if (!dropped.has(id)) out.add(id)
          return
        }
        for (const m of p.missing) walk(m)
      }
      for (const id of ids) walk(id)
      return [...out]
    },

    awaited: () => waiting.keys(),
  }
}
