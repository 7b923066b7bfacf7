/**
 * Stalls of this process's own event loop: a SIGSTOP, a suspended VM, a laptop lid, a long
 * GC or a blocking call. While stalled a node hears nothing, and when it wakes, the timers
 * that came due fire before it reads what its peers sent meanwhile (that waits in socket
 * buffers and is decoded over many turns of the loop). A liveness judgment made at that
 * moment would call the whole mesh dead. So a silence is judged only on time this node
 * has been running since its last stall (the idea of Cassandra's failure detector, which
 * ignores intervals that contain a local pause).
 *
 * A stall is seen, not guessed: the caller looks at the loop at least every `periodMs`
 * (a repeating timer), or within the span it promised at its last look; a look that comes `minStallMs` or more after the next one was due
 * means the loop stood still from then until now. Smaller lateness is load, not a stall:
 * a merely slow loop reads its sockets late too, so the silences it measures stay fair,
 * and discounting it would stop a busy node from ever judging.
 *
 * Invariants: pure over the times it is given (no clock of its own, O(1) memory);
 * awake(since, t) is never negative and never more than t − since.
 */

export interface StallWatch {
  /**
   * The loop is running at `t` (never earlier than a previous call): call it from the
   * periodic timer and wherever else the loop is seen running. Returns the length of the
   * stall that just ended, or 0. `nextLookWithinMs`: the periodic prober's promise to look
   * again within this (a timer that slows down while there is nothing to judge, or is
   * re-armed sooner); it replaces the last promise. Without it (a look in passing) the next
   * look is due periodMs from now, or at the last promise if that is later.
   */
  observe(t: number, nextLookWithinMs?: number): number
  /**
   * Milliseconds of [since, t] to count as silence: from the end of the last stall if that
   * falls within it, else the whole span.
   */
  awake(since: number, t: number): number
}

export function createStallWatch(options: {
  /** How often the caller looks at the loop at the latest (its timer's period). */
  periodMs: number
  /** Lateness at least this long is a stall; below it, load. */
  minStallMs: number
  /** First look (the watch starts awake). */
  start: number
}): StallWatch {
  const { periodMs, minStallMs } = options
  /** When the next look is due at the latest. */
  let due = options.start + periodMs
  let lastStallEnd = Number.NEGATIVE_INFINITY

  return {
    observe(t, nextLookWithinMs) {
      const late = t - due
      due = nextLookWithinMs === undefined ? Math.max(due, t + periodMs) : t + nextLookWithinMs
      if (late < minStallMs) return 0
      lastStallEnd = t
      return late
    },

    awake(since, t) {
      if (!(t > since)) return 0
      return t - Math.max(since, Math.min(lastStallEnd, t))
    },
  }
}
