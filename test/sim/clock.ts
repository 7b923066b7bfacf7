/**
 * Simulated time: the seeded PRNG and each node's view of the shared fake clock (its own
 * wall skew, monotonic origin, pauses and crashes).
 *
 * Invariants: one seeded PRNG decides every random choice, so a seed replays a run; a
 * crashed node's pending timers never fire; a paused node's due timers fire, in order, at
 * its resume.
 */
import type { Clock, TimerHandle } from '../../src/util/clock.js'
import type { FakeClock } from '../../src/util/clock.js'

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
    private readonly base: FakeClock,
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
