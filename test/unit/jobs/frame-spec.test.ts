import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { formatFrames, MAX_FRAME, parseFrameSpec } from '../../../src/jobs/frame-spec.js'
import { isRmeshError } from '../../../src/util/errors.js'

const bad = (spec: string, re: RegExp, opts?: { step?: number; maxFrames?: number }) => {
  try {
    parseFrameSpec(spec, opts)
  } catch (err) {
    expect(isRmeshError(err, 'ERR_INVALID_INPUT')).toBe(true)
    expect((err as Error).message).toMatch(re)
    return
  }
  throw new Error(`"${spec}" was accepted`)
}

describe('parseFrameSpec', () => {
  it('parses ranges, lists, steps', () => {
    expect(parseFrameSpec('1-5')).toEqual([1, 2, 3, 4, 5])
    expect(parseFrameSpec('1-3,7,10-11')).toEqual([1, 2, 3, 7, 10, 11])
    expect(parseFrameSpec(' 1 - 3 , 2 ')).toEqual([1, 2, 3])
    expect(parseFrameSpec('1-10:3')).toEqual([1, 4, 7, 10])
    expect(parseFrameSpec('1-10', { step: 5 })).toEqual([1, 6])
    expect(parseFrameSpec('0')).toEqual([0])
    expect(parseFrameSpec('5-5')).toEqual([5])
  })
  it('refuses empty, inverted and garbage specs with a clear reason', () => {
    bad('', /empty/)
    bad('   ', /empty/)
    bad('10-1', /inverted; write 1-10/)
    bad('1,,2', /empty item/)
    bad('a-b', /not a whole frame number/)
    bad('-5', /not a whole frame number/)
    bad('1-2-3', /not a frame or a range/)
    bad('1.5', /not a whole frame number/)
    bad('1-10:0', /step/)
    bad('1-10:2:3', /more than one/)
    bad('7:2', /a step needs a range/)
    bad(`1-${MAX_FRAME + 1}`, /outside/)
    bad('1-1000', /more than 100 frames/, { maxFrames: 100 })
    bad('1-5', /step must be/, { step: 0 })
    bad('9'.repeat(5000), /longer than/)
    bad('1-99999999999999999999', /not a whole frame number/)
  })
  it('never throws anything but InvalidInputError, and results are sorted and unique', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (s) => {
        try {
          const r = parseFrameSpec(s, { maxFrames: 5000 })
          expect(r.length).toBeGreaterThan(0)
          for (let i = 1; i < r.length; i++) expect(r[i]).toBeGreaterThan(r[i - 1])
        } catch (err) {
          expect(isRmeshError(err, 'ERR_INVALID_INPUT')).toBe(true)
        }
      }),
    )
  })
  it('formatFrames is the inverse on sorted lists', () => {
    expect(formatFrames([1, 2, 3, 5, 7, 8])).toBe('1-3,5,7-8')
    expect(formatFrames([])).toBe('')
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: 500 }), { minLength: 1, maxLength: 60 }),
        (xs) => {
          const sorted = [...xs].sort((a, b) => a - b)
          expect(parseFrameSpec(formatFrames(sorted))).toEqual(sorted)
        },
      ),
    )
  })
})
