/**
 * The pace of periodic anti-entropy. While the log changes, a round every `baseMs` (with
 * jitter) keeps a missed gossip message from staying missed for long. When nothing has
 * changed since the last round, there is nothing a round could repair that the next
 * change would not also trigger, so the pace halves per quiet round down to one per
 * `restMs`; the first new entry brings it back to `baseMs` at once.
 *
 * Invariants: pure (time and randomness are the caller's); the period is always within
 * [baseMs, restMs]; a delay is period × [0.5, 1.5).
 */
export interface RoundPacer {
  /** The log changed (an entry appended or joined). Returns true if the pace sped up. */
  activity(): boolean
  /** Delay until the next round, given a random number in [0, 1); closes this round. */
  nextDelay(random: number): number
  /** The current period (ms). */
  period(): number
}

export function createRoundPacer(options: { baseMs: number; restMs: number }): RoundPacer {
  const base = options.baseMs
  const rest = Math.max(base, options.restMs)
  let period = base
  let changed = false
  return {
    activity() {
      changed = true
      if (period === base) return false
      period = base
      return true
    },
    nextDelay(random) {
      if (!changed) period = Math.min(rest, period * 2)
      changed = false
      return Math.round(period * (0.5 + random))
    },
    period: () => period,
  }
}
