import { describe, expect, it } from 'vitest'
import { createRoundPacer } from '../../../src/sync/pacer.js'

describe('anti-entropy pace', () => {
  it('halves per quiet round down to the rest period, and speeds up at the first change', () => {
    const p = createRoundPacer({ baseMs: 5_000, restMs: 60_000 })
    const periods: number[] = []
    for (let i = 0; i < 6; i++) {
      p.nextDelay(0.5)
      periods.push(p.period())
    }
    expect(periods).toEqual([10_000, 20_000, 40_000, 60_000, 60_000, 60_000])
    expect(p.activity()).toBe(true)
    expect(p.period()).toBe(5_000)
    expect(p.activity()).toBe(false)
    // A round with a change keeps the base pace; jitter is period × [0.5, 1.5).
    expect(p.nextDelay(0)).toBe(2_500)
    expect(p.nextDelay(0.999)).toBeLessThan(15_000)
  })

  it('never leaves [base, rest], even when rest is below base', () => {
    const p = createRoundPacer({ baseMs: 5_000, restMs: 1_000 })
    for (let i = 0; i < 5; i++) p.nextDelay(0.5)
    expect(p.period()).toBe(5_000)
  })
})
