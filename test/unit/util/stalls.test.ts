import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createStallWatch, MAX_STALLS } from '../../../src/util/stalls.js'

describe('stall watch', () => {
  it('records the span from when a tick was due until the loop ran again', () => {
    const w = createStallWatch({ periodMs: 1_000, lookbackMs: 60_000, start: 0 })
    expect(w.observe(1_000)).toBe(0)
    expect(w.observe(1_050)).toBe(0) // timer jitter, and a pass between ticks
    // SIGSTOP at ~1.1 s, SIGCONT at 12 s: the tick due at 2.05 s runs at 12 s.
    expect(w.observe(12_000)).toBe(12_000 - 2_050)
    // A peer last heard at 0.5 s: by 13 s this node was awake only 13 − 0.5 − 9.95 s.
    expect(w.awake(500, 13_000)).toBe(13_000 - 500 - 9_950)
    // Silences wholly after the stall are their plain length.
    expect(w.awake(12_500, 14_000)).toBe(1_500)
  })

  it('ignores lateness below minStallMs, counts it beyond', () => {
    const w = createStallWatch({ periodMs: 1_000, lookbackMs: 60_000, start: 0, minStallMs: 100 })
    expect(w.observe(1_080)).toBe(0)
    expect(w.observe(2_380)).toBe(300)
    expect(w.awake(0, 3_000)).toBe(2_700)
  })

  it('forgets stalls older than the lookback and beyond MAX_STALLS', () => {
    const w = createStallWatch({ periodMs: 10, lookbackMs: 10_000, start: 0, minStallMs: 1 })
    let t = 0
    for (let i = 0; i < MAX_STALLS * 2; i++) {
      t += 20 // a 10 ms stall each time
      w.observe(t)
    }
    // Only the newest MAX_STALLS are discounted.
    expect(w.awake(0, t)).toBe(t - MAX_STALLS * 10)
    // 20 s later, all are past the lookback.
    t += 20_000
    w.observe(t)
    expect(w.awake(0, t + 1)).toBeGreaterThanOrEqual(t + 1 - 20_000)
  })

  it('awake time is within [0, t − since] for any observations and queries', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 5_000 }), { maxLength: 200 }),
        fc.double({ min: -1e6, max: 1e6, noNaN: true }),
        fc.double({ min: -1e6, max: 1e6, noNaN: true }),
        (steps, since, span) => {
          const w = createStallWatch({ periodMs: 500, lookbackMs: 30_000, start: 0 })
          let t = 0
          for (const s of steps) {
            t += s
            w.observe(t)
          }
          const to = since + span
          const a = w.awake(since, to)
          expect(a).toBeGreaterThanOrEqual(0)
          expect(a).toBeLessThanOrEqual(Math.max(0, to - since))
        },
      ),
    )
  })
})
