/**
 * Bounding an insertion-ordered Map or Set (oldest first) used as a cache.
 *
 * Invariants: after trimToBound(c, max), c.size <= max; only the oldest entries go.
 * Why in slices: V8 keeps a deleted entry's slot until the table is rebuilt, and
 * keys().next() walks over those slots, so dropping one oldest entry per insert costs a
 * walk over every earlier deletion (~2.5 µs per insert at 5,000 entries, measured; in the
 * log's id caches, paid for every entry received). Past the bound, one walk drops the
 * oldest sixteenth at once (~0.15 µs per insert).
 */
export function trimToBound<K>(cache: Map<K, unknown> | Set<K>, max: number): void {
  if (cache.size <= max) return
  let drop = cache.size - max + (max >> 4)
  for (const k of cache.keys()) {
    if (drop-- <= 0) break
    cache.delete(k)
  }
}
