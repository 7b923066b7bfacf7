/**
 * Time is injected. Production uses the system clock; the simulator and unit tests use
 * a fake one. Two readings with different meanings:
 *  - wall(): milliseconds since the epoch, for humans and entry metadata only;
 *    never compared across machines to decide anything;
 *  - monotonic(): milliseconds on a clock that never goes back, for timeouts and lease
 *    liveness ("how long since I last heard X").
 */
export interface Clock {
  wall(): number
  monotonic(): number
  setTimeout(fn: () => void, ms: number): TimerHandle
  clearTimeout(handle: TimerHandle): void
}

export interface TimerHandle {
  readonly id: unknown
}

export const systemClock: Clock = {
  wall: () => Date.now(),
  monotonic: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms)
    t.unref?.()
    return { id: t }
  },
  clearTimeout: (h) => clearTimeout(h.id as NodeJS.Timeout),
}

/** A manually advanced clock for tests and the simulator. */
export class FakeClock implements Clock {
  private now: number
  private wallOffset: number
  private seq = 0
  private timers = new Map<number, { at: number; fn: () => void; seq: number }>()

  constructor(start = 0, wallOffset = 1_700_000_000_000) {
    this.now = start
    this.wallOffset = wallOffset
  }

  wall(): number {
    return this.now + this.wallOffset
  }

  monotonic(): number {
    return this.now
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = ++this.seq
    this.timers.set(id, { at: this.now + Math.max(0, ms), fn, seq: id })
    return { id }
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle.id as number)
  }

  /** Time of the next pending timer, or undefined. */
  nextTimerAt(): number | undefined {
    let best: number | undefined
    for (const t of this.timers.values()) if (best === undefined || t.at < best) best = t.at
    return best
  }

  /** Advance to `target`, firing due timers in time order (ties by creation order). */
  advanceTo(target: number): void {
    for (;;) {
      let next: [number, { at: number; fn: () => void; seq: number }] | undefined
      for (const e of this.timers) {
        if (
          e[1].at <= target &&
          (!next || e[1].at < next[1].at || (e[1].at === next[1].at && e[1].seq < next[1].seq))
        )
          next = e
      }
      if (!next) break
      this.timers.delete(next[0])
      this.now = Math.max(this.now, next[1].at)
      next[1].fn()
    }
    this.now = Math.max(this.now, target)
  }

  advance(ms: number): void {
    this.advanceTo(this.now + ms)
  }
}
