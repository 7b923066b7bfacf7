/**
 * An index over one job's chunks for the lease manager, kept up to date entry by entry
 * (jobs/fold-changes.ts), so a pass costs what it looks at, not the job's size: the
 * chunks that may need a node (open or claimed), in chunk order; the chunks this node
 * holds; how many are open; and the median render time of finished frame chunks (the straggler bound).
 *
 * Invariants: after update(state, changes) the index describes `state` exactly, provided
 * every chunk record that changed since the last update is in `changes` (or it is 'all',
 * which rebuilds in O(chunks)); memory is O(chunks).
 */
import type { PeerIdString } from '../log/types.js'
import type { FoldChanges } from './fold-changes.js'
import type { ChunkState, JobState } from './reducer.js'

export class ChunkIndex {
  /** Bit i: chunk i is open or claimed. */
  private needyBits = new Uint32Array(0)
  /** Bit i: chunk i is open (nobody holds it). */
  private openBits = new Uint32Array(0)
  private openChunks = 0
  /** Chunks claimed by this node. */
  readonly mine = new Set<number>()
  /** Render time recorded per chunk in `times` (NaN: none). */
  private recorded = new Float64Array(0)
  /** Render times of done frame chunks, ascending. */
  private readonly times: number[] = []

  constructor(private readonly self: PeerIdString) {}

  /** Bring the index to `s`; `onClaimed` sees every changed chunk that is claimed. */
  update(s: JobState, changes: FoldChanges, onClaimed?: (c: ChunkState) => void): void {
    if (changes === 'all' || this.recorded.length !== s.chunks.length) {
      this.needyBits = new Uint32Array((s.chunks.length + 31) >> 5)
      this.openBits = new Uint32Array((s.chunks.length + 31) >> 5)
      this.openChunks = 0
      this.recorded = new Float64Array(s.chunks.length).fill(Number.NaN)
      this.times.length = 0
      this.mine.clear()
      for (const c of s.chunks) this.note(c, onClaimed)
      return
    }
    for (const i of changes) {
      const c = s.chunks[i]
      if (c) this.note(c, onClaimed)
    }
  }

  /** Chunks open or claimed, in chunk order. */
  *needy(): Generator<number> {
    const bits = this.needyBits
    for (let w = 0; w < bits.length; w++) {
      let word = bits[w]
      while (word !== 0) {
        const low = word & -word
        yield (w << 5) + (31 - Math.clz32(low))
        word ^= low
      }
    }
  }

  /** How many chunks are open (waiting for a node). */
  get open(): number {
    return this.openChunks
  }

  /** Median render time of the done frame chunks, with at least `minSamples` of them. */
  medianRenderMs(minSamples: number): number | undefined {
    const n = this.times.length
    return n >= minSamples && n > 0 ? this.times[Math.floor(n / 2)] : undefined
  }

  private note(c: ChunkState, onClaimed?: (c: ChunkState) => void): void {
    const i = c.index
    const w = i >> 5
    const bit = 1 << (i & 31)
    if (c.state === 'open' || c.state === 'claimed') this.needyBits[w] |= bit
    else this.needyBits[w] &= ~bit
    const wasOpen = (this.openBits[w] & bit) !== 0
    if (c.state === 'open' && !wasOpen) {
      this.openBits[w] |= bit
      this.openChunks++
    } else if (c.state !== 'open' && wasOpen) {
      this.openBits[w] &= ~bit
      this.openChunks--
    }
    if (c.state === 'claimed' && c.holder === this.self) this.mine.add(i)
    else this.mine.delete(i)
    if (c.state === 'claimed') onClaimed?.(c)
    const ms =
      c.state === 'done' && c.kind === 'frames' && c.renderMs !== undefined
        ? c.renderMs
        : Number.NaN
    const was = this.recorded[i]
    if (Object.is(was, ms)) return
    if (!Number.isNaN(was)) this.times.splice(this.lowerBound(was), 1)
    if (!Number.isNaN(ms)) this.times.splice(this.lowerBound(ms), 0, ms)
    this.recorded[i] = ms
  }

  private lowerBound(x: number): number {
    let lo = 0
    let hi = this.times.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (this.times[mid] < x) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}
