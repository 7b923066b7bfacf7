/**
 * Stalls of this process's own event loop: a SIGSTOP, a suspended VM, a laptop lid, a long
 * GC or a blocking call. While stalled a node hears nothing, so on waking every peer looks
 * silent for as long as the stall lasted, and whatever the peer sent meanwhile is still
 * queued in socket buffers behind the timers that fire first. A liveness judgment made at
 * that moment would call the whole mesh dead. This module lets such judgments count only
 * the time this node was awake (the idea of Cassandra's failure detector ignoring
 * intervals that contain a local pause).
 *
 * A stall is seen, not guessed: the caller observes the loop at least every `periodMs`
 * (a repeating timer); an observation later than that means the loop did not run timers
 * from the moment the next one was due until now, and that span is recorded as deaf.
 * Lateness under `minStallMs` is the ordinary jitter of timers and is not recorded; beyond
 * it, lateness under load counts as a stall too: it only delays judgments, never hastens
 * them.
 *
 * Invariants: pure over the times it is given (no clock of its own); the record is bounded
 * (spans older than `lookbackMs`, and beyond MAX_STALLS, are forgotten, so a silence longer
 * than the lookback is judged by its plain length); awake(since, t) is never more than
 * t − since and never negative.
 */

/** Spans kept at most: enough for many stalls within any lookback, whatever the load. */
export const MAX_STALLS = 64

export interface StallWatch {
  /**
   * The loop is running at `t`: call it from the periodic timer (and wherever the loop is
   * known to run). Returns the length of the stall that just ended, or 0.
   */
  observe(t: number): number
  /** Milliseconds of [since, t] this node was awake (the span minus recorded stalls). */
  awake(since: number, t: number): number
}

export function createStallWatch(options: {
  /** How often the caller observes the loop at the latest (its timer's period). */
  periodMs: number
  /** How far back silences are judged; older spans are forgotten. */
  lookbackMs: number
  /** First observation time (the watch starts awake). */
  start: number
  /** Lateness below this is timer jitter, not a stall; default 100 ms. */
  minStallMs?: number
}): StallWatch {
  const { periodMs, lookbackMs } = options
  const minStallMs = options.minStallMs ?? 100
  const spans: { from: number; to: number }[] = []
  let last = options.start

  return {
    observe(t) {
      const due = last + periodMs
      last = Math.max(last, t)
      if (t - due < minStallMs) return 0
      spans.push({ from: due, to: t })
      while (spans.length > MAX_STALLS || (spans.length > 0 && spans[0].to < t - lookbackMs))
        spans.shift()
      return t - due
    },

    awake(since, t) {
      if (!(t > since)) return 0
      let deaf = 0
      for (const s of spans) deaf += Math.max(0, Math.min(t, s.to) - Math.max(since, s.from))
      return Math.max(0, t - since - deaf)
    },
  }
}
