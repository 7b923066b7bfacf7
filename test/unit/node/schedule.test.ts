import { describe, expect, it } from 'vitest'
import {
  isOpen,
  localTimeIn,
  MAX_SCHEDULE_LENGTH,
  nextChange,
  parseSchedule,
  ScheduleError,
} from '../../../src/node/schedule.js'

const utc = localTimeIn('UTC')
// 2026-12-07 is a Monday.
const at = (iso: string) => Date.parse(`${iso}Z`)

describe('schedule parser', () => {
  it('the issue example: weekday nights and whole weekends', () => {
    const s = parseSchedule('mon-fri 19:00-08:00, sat-sun all')
    expect(isOpen(s, at('2026-12-07T18:59'), utc)).toBe(false) // Mon evening before
    expect(isOpen(s, at('2026-12-07T19:00'), utc)).toBe(true)
    expect(isOpen(s, at('2026-12-08T07:59'), utc)).toBe(true) // Mon night into Tue
    expect(isOpen(s, at('2026-12-08T08:00'), utc)).toBe(false)
    expect(isOpen(s, at('2026-12-07T03:00'), utc)).toBe(false) // Mon early: Sunday's 'all' ended at 24:00
    expect(isOpen(s, at('2026-12-13T12:00'), utc)).toBe(true) // Sunday
    expect(isOpen(s, at('2026-12-12T07:00'), utc)).toBe(true) // Sat (and Friday night's)
  })

  it('a window crossing midnight belongs to the day it starts', () => {
    const s = parseSchedule('fri 22:00-02:00')
    expect(isOpen(s, at('2026-12-11T23:00'), utc)).toBe(true) // Fri
    expect(isOpen(s, at('2026-12-12T01:59'), utc)).toBe(true) // Sat early
    expect(isOpen(s, at('2026-12-12T02:00'), utc)).toBe(false)
    expect(isOpen(s, at('2026-12-11T01:00'), utc)).toBe(false) // Fri early: Thursday's, not set
  })

  it('a Saturday-night window wraps into Sunday; day ranges wrap too', () => {
    const s = parseSchedule('sat 23:00-01:00')
    expect(isOpen(s, at('2026-12-13T00:30'), utc)).toBe(true) // Sunday 00:30
    const r = parseSchedule('fri-mon 10:00-11:00')
    for (const d of ['2026-12-11', '2026-12-12', '2026-12-13', '2026-12-14'])
      expect(isOpen(r, at(`${d}T10:30`), utc)).toBe(true)
    expect(isOpen(r, at('2026-12-15T10:30'), utc)).toBe(false) // Tue
  })

  it('aliases, several windows, 24:00, always, case and spaces', () => {
    const s = parseSchedule('  WEEKDAYS  09:00-12:00 13:00-24:00 ,weekends all')
    expect(s.text).toBe('weekdays 09:00-12:00 13:00-24:00, weekends all')
    expect(isOpen(s, at('2026-12-07T12:30'), utc)).toBe(false)
    expect(isOpen(s, at('2026-12-07T23:59'), utc)).toBe(true)
    expect(isOpen(parseSchedule('always'), at('2026-12-07T12:30'), utc)).toBe(true)
    expect(isOpen(parseSchedule('daily 0:00-1:00'), at('2026-12-09T00:10'), utc)).toBe(true)
  })

  it('garbage gets a ScheduleError naming the bad part', () => {
    const bad: [unknown, RegExp][] = [
      [42, /text/],
      [null, /text/],
      ['', /empty/],
      ['x'.repeat(MAX_SCHEDULE_LENGTH + 1), /longer/],
      ['mon 19:00', /window/],
      ['funday all', /not a day/],
      ['mon', /no hours/],
      ['mon 25:00-26:00', /time of day/],
      ['mon 10:60-11:00', /time of day/],
      ['mon 10:00-10:00', /empty/],
      ['mon 24:00-01:00', /24:00/],
      ['mon 9-10', /time like/],
      ['mon all\u0000', /plain text/],
      ['mon 10:00-11:00-12:00', /window/],
      [Array(20).fill('mon all').join(', '), /rules/],
    ]
    for (const [input, why] of bad) {
      let err: unknown
      try {
        parseSchedule(input)
      } catch (e) {
        err = e
      }
      expect(err, String(input)).toBeInstanceOf(ScheduleError)
      expect((err as ScheduleError).code).toBe('ERR_INVALID_INPUT')
      expect((err as Error).message, String(input)).toMatch(why)
    }
  })

  it('next change: to the minute, and none for always', () => {
    const s = parseSchedule('mon-fri 19:00-08:00')
    expect(nextChange(s, at('2026-12-07T18:00:30'), utc)).toBe(at('2026-12-07T19:00'))
    expect(nextChange(s, at('2026-12-07T19:00'), utc)).toBe(at('2026-12-08T08:00'))
    // Friday night closes Saturday 08:00 and opens again Monday 19:00.
    expect(nextChange(s, at('2026-12-12T09:00'), utc)).toBe(at('2026-12-14T19:00'))
    expect(nextChange(parseSchedule('always'), at('2026-12-07T00:00'), utc)).toBeUndefined()
  })

  it('DST-safe: windows follow the local clock across a change, by real minutes', () => {
    const berlin = localTimeIn('Europe/Berlin')
    const s = parseSchedule('sun 01:00-04:00')
    // 2026-03-29 02:00 CET springs to 03:00 CEST: the window lasts two real hours.
    const open = at('2026-03-29T00:00') // 01:00 CET
    expect(isOpen(s, open, berlin)).toBe(true)
    expect(nextChange(s, open, berlin)).toBe(at('2026-03-29T02:00')) // 04:00 CEST
    // 2026-10-25 03:00 CEST falls back to 02:00 CET: the window lasts four real hours.
    const fall = at('2026-10-24T23:00') // 01:00 CEST
    expect(isOpen(s, fall, berlin)).toBe(true)
    expect(nextChange(s, fall, berlin)).toBe(at('2026-10-25T03:00')) // 04:00 CET
  })
})
