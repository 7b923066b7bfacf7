import { describe, expect, it } from 'vitest'
import { trimToBound } from '../../../src/util/bounded.js'

describe('trimToBound', () => {
  it('keeps a cache at or below its bound, dropping the oldest first', () => {
    const s = new Set<number>()
    for (let i = 0; i < 1_000; i++) {
      s.add(i)
      trimToBound(s, 100)
      expect(s.size).toBeLessThanOrEqual(100)
    }
    expect(s.has(999)).toBe(true)
    expect(Math.min(...s)).toBeGreaterThan(999 - 100)
    const m = new Map([
      ['a', 1],
      ['b', 2],
      ['c', 3],
    ])
    trimToBound(m, 2)
    expect([...m.keys()]).toEqual(['b', 'c'])
    trimToBound(m, 0)
    expect(m.size).toBe(0)
  })
})
