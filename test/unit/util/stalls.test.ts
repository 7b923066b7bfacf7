import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createStallWatch } from '../../../src/util/stalls.js'

describe('stall watch', () => {
  it('sees a stall when a look comes minStallMs or more after it was due', () => {
    const w = createStallWatch({ periodMs: 250, minStallMs: 1_500, start: 0 })
    expect(w.observe(250)).toBe(0)
    expect(w.observe(400)).toBe(0) // a look between probes
    expect(w.observe(1_600)).toBe(0) // late under load by 950 ms: not a stall
    // SIGSTOP at ~1.7 s, SIGCONT at 12 s: the probe due at 1.85 s runs at 12 s.
    expect(w.observe(12_000)).toBe(12_000 - 1_850)
  })

  it('a look promised within a longer span (a timer slowed at rest) is due then, not at periodMs', () => {
    const w = createStallWatch({ periodMs: 1_000, minStallMs: 5_000, start: 0 })
    expect(w.observe(1_000, 5_000)).toBe(0)
    // A look in passing does not shorten the slow timer's promise.
    expect(w.observe(2_000)).toBe(0)
    expect(w.observe(6_000, 1_000)).toBe(0) // the slow tick, on time: no stall
    // Back at the fast pace: due at 7 s; SIGSTOP until 15 s is a stall of 8 s.
    expect(w.observe(15_000)).toBe(8_000)
    // Slow again, then re-armed sooner (a job arrived): the new promise replaces the old,
    // so a stall right after is measured from it, not from the slow tick's.
    expect(w.observe(16_000, 5_000)).toBe(0)
    expect(w.observe(17_000, 1_000)).toBe(0)
    expect(w.observe(24_000)).toBe(6_000)
  })

  it('restarts every silence at the end of a stall; later silences are their plain length', () => {
    const w = createStallWatch({ periodMs: 250, minStallMs: 1_500, start: 0 })
    // Before any stall, a silence is its whole span.
    expect(w.awake(100, 1_000)).toBe(900)
    w.observe(250)
    w.observe(10_000)
    // A peer last heard at 0.2 s: at the wake it has been silent for 0 ms of awake time.
    expect(w.awake(200, 10_000)).toBe(0)
    expect(w.awake(200, 11_200)).toBe(1_200)
    // Heard after the wake: plain length.
    expect(w.awake(10_500, 11_200)).toBe(700)
  })

  it('lateness below minStallMs never shortens a silence: a busy node still judges', () => {
    const w = createStallWatch({ periodMs: 250, minStallMs: 1_500, start: 0 })
    let t = 0
    for (let i = 0; i < 100; i++) {
      t += 250 + 1_000 // every probe a second late
      expect(w.observe(t)).toBe(0)
    }
    expect(w.awake(0, t)).toBe(t)
  })

  it('a silence is within [0, t − since] for any looks and queries', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 5_000 }), { maxLength: 200 }),
        fc.double({ min: -1e6, max: 1e6, noNaN: true }),
        fc.double({ min: -1e6, max: 1e6, noNaN: true }),
        (steps, since, span) => {
          const w = createStallWatch({ periodMs: 500, minStallMs: 1_000, start: 0 })
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
