/**
 * Simulated time: the seeded PRNG, the shared event clock, and each node's view of it (its
 * own wall skew, monotonic origin, pauses and crashes).
 *
 * Invariants: one seeded PRNG decides every random choice, so a seed replays a run; timers
 * fire in time order, ties in creation order (FakeClock's rule), in O(log n) each, so a
 * mesh of a hundred nodes with millions of messages stays fast; a crashed node's pending
 * timers never fire; a paused node's due timers fire, in order, at its resume.
 */
import type { Clock, TimerHandle } from '../../src/util/clock.js'

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A node's view of the shared fake time: its own wall skew, monotonic origin and pauses. */
export class NodeClock implements Clock {
  paused = false
  generation = 0
  private deferred: { gen: number; fn: () => void }[] = []

  constructor(
    private readonly base: SimClock,
    readonly wallSkew: number,
    private readonly monoOffset: number,
  ) {}

  wall(): number {
    return this.base.wall() + this.wallSkew
  }
  monotonic(): number {
    return this.base.monotonic() + this.monoOffset
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const gen = this.generation
    return this.base.setTimeout(() => {
      if (gen !== this.generation) return
      if (this.paused) this.deferred.push({ gen, fn })
      else fn()
    }, ms)
  }
  clearTimeout(h: TimerHandle): void {
    this.base.clearTimeout(h)
  }
  resume(): void {
    this.paused = false
    const due = this.deferred
    this.deferred = []
    for (const d of due) if (d.gen === this.generation) d.fn()
  }
  /** A crash: every pending timer of this node is void. */
  reset(): void {
    this.generation++
    this.deferred = []
    this.paused = false
  }
}

interface Timer {
  at: number
  seq: number
  fn: (() => void) | undefined
}

/** FakeClock's contract on a binary heap; a cleared timer is dropped when it surfaces. */
export class SimClock implements Clock {
  private now: number
  private seq = 0
  private heap: Timer[] = []
  private readonly byId = new Map<number, Timer>()

  constructor(
    start = 0,
    private readonly wallOffset = 1_700_000_000_000,
  ) {
    this.now = start
  }

  wall(): number {
    return this.now + this.wallOffset
  }
  monotonic(): number {
    return this.now
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const t: Timer = { at: this.now + Math.max(0, ms), seq: ++this.seq, fn }
    this.byId.set(t.seq, t)
    this.push(t)
    return { id: t.seq }
  }
  clearTimeout(handle: TimerHandle): void {
    const t = this.byId.get(handle.id as number)
    if (!t) return
    t.fn = undefined
    this.byId.delete(t.seq)
  }
  /** Pending timers (cleared ones excluded). */
  get pending(): number {
    return this.byId.size
  }
  /** Time of the next pending timer, or undefined. */
  nextTimerAt(): number | undefined {
    this.dropCleared()
    return this.heap[0]?.at
  }
  /** Advance to `target`, firing due timers in time order (ties by creation order). */
  advanceTo(target: number): void {
    for (;;) {
      this.dropCleared()
      const t = this.heap[0]
      if (!t || t.at > target) break
      this.pop()
      this.byId.delete(t.seq)
      this.now = Math.max(this.now, t.at)
      const fn = t.fn!
      t.fn = undefined
      fn()
    }
    this.now = Math.max(this.now, target)
  }

  private dropCleared(): void {
    while (this.heap.length > 0 && this.heap[0].fn === undefined) this.pop()
  }
  private less(a: Timer, b: Timer): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq)
  }
  private push(t: Timer): void {
    const h = this.heap
    h.push(t)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!this.less(h[i], h[p])) break
      ;[h[i], h[p]] = [h[p], h[i]]
      i = p
    }
  }
  private pop(): void {
    const h = this.heap
    const last = h.pop()!
    if (h.length === 0) return
    h[0] = last
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < h.length && this.less(h[l], h[m])) m = l
      if (r < h.length && this.less(h[r], h[m])) m = r
      if (m === i) break
      ;[h[i], h[m]] = [h[m], h[i]]
      i = m
    }
  }
}
