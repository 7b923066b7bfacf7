/**
 * A node's render schedule: when, by its own local time, it takes work. Pure: time enters
 * only as an argument, and local time only through a `LocalTime` function (the process's
 * time zone by default, any IANA zone in tests).
 *
 * Syntax (case-insensitive): rules separated by commas; a rule is days, then windows.
 *   mon-fri 19:00-08:00, sat-sun all
 *   weekdays 09:00-12:00 13:00-17:00
 *   daily 22:00-06:00
 *   always
 * Days: mon tue wed thu fri sat sun, a range of them (`fri-mon` wraps), or `daily`,
 * `weekdays`, `weekends`. Windows: `all`, or `HH:MM-HH:MM` (24-hour; `24:00` ends a day).
 *
 * Invariants:
 *  - a window belongs to the day it starts: `fri 19:00-08:00` is Friday 19:00 to Saturday
 *    08:00; a window whose end is not after its start crosses midnight; start = end is an
 *    error (ambiguous: write `all`);
 *  - evaluation reads the local weekday and minute of the instant (never adds hours to a
 *    local time), so DST changes cannot shift or double a window: an hour that does not
 *    exist on a spring-forward night is simply never seen;
 *  - parsing is total: any input gives a Schedule or a ScheduleError naming the bad part,
 *    never an exception of another kind; inputs over MAX_SCHEDULE_LENGTH are refused first.
 */
import { InvalidInputError } from '../util/errors.js'

export const MAX_SCHEDULE_LENGTH = 200
const MAX_RULES = 14
const MAX_WINDOWS = 8
const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const
const MINUTES_PER_DAY = 24 * 60
const MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY

export class ScheduleError extends InvalidInputError {
  constructor(why: string) {
    super(
      `schedule: ${why} (example: "mon-fri 19:00-08:00, sat-sun all"; days mon…sun, daily, weekdays, weekends; windows HH:MM-HH:MM or all)`,
      { field: 'schedule' },
    )
    this.name = 'ScheduleError'
  }
}

/** Open minutes of the week, as [start, end) spans in minutes from Sunday 00:00 local. */
export interface Schedule {
  /** The text it was parsed from, normalised (lower case, single spaces). */
  text: string
  spans: readonly (readonly [number, number])[]
}

/** The local weekday (0 = Sunday) and minute of the day of an instant. */
export type LocalTime = (epochMs: number) => { day: number; minute: number }

export const systemLocalTime: LocalTime = (ms) => {
  const d = new Date(ms)
  return { day: d.getDay(), minute: d.getHours() * 60 + d.getMinutes() }
}

/** Local time in an IANA zone (tests, and a node told its zone explicitly). */
export function localTimeIn(timeZone: string): LocalTime {
  const fmt = new Intl.DateTimeFormat('en-US', {
    timeZone,
    weekday: 'short',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  })
  return (ms) => {
    let day = 0
    let hour = 0
    let minute = 0
    for (const p of fmt.formatToParts(ms)) {
      if (p.type === 'weekday') day = DAY_NAMES.indexOf(p.value.toLowerCase().slice(0, 3) as never)
      else if (p.type === 'hour') hour = Number(p.value)
      else if (p.type === 'minute') minute = Number(p.value)
    }
    return { day, minute: hour * 60 + minute }
  }
}

function parseDays(word: string): number[] {
  if (word === 'daily') return [0, 1, 2, 3, 4, 5, 6]
  if (word === 'weekdays') return [1, 2, 3, 4, 5]
  if (word === 'weekends') return [6, 0]
  const day = (w: string) => {
    const i = DAY_NAMES.indexOf(w as (typeof DAY_NAMES)[number])
    if (i < 0) throw new ScheduleError(`${JSON.stringify(w)} is not a day`)
    return i
  }
  const m = /^([a-z]+)-([a-z]+)$/.exec(word)
  if (!m) return [day(word)]
  const from = day(m[1])
  const to = day(m[2])
  const out: number[] = []
  for (let d = from; ; d = (d + 1) % 7) {
    out.push(d)
    if (d === to) break
  }
  return out
}

function parseTime(t: string): number {
  const m = /^(\d{1,2}):(\d{2})$/.exec(t)
  if (!m) throw new ScheduleError(`${JSON.stringify(t)} is not a time like 19:00`)
  const h = Number(m[1])
  const min = Number(m[2])
  if (min > 59 || h > 24 || (h === 24 && min !== 0))
    throw new ScheduleError(`${t} is not a time of day (00:00 to 24:00)`)
  return h * 60 + min
}

/** Parse a schedule; ScheduleError (ERR_INVALID_INPUT) for anything else. */
export function parseSchedule(input: unknown): Schedule {
  if (typeof input !== 'string') throw new ScheduleError('must be text')
  if (input.length > MAX_SCHEDULE_LENGTH)
    throw new ScheduleError(`longer than ${MAX_SCHEDULE_LENGTH} characters`)
  // Only printable ASCII: it is shown on every node's screen.
  if (!/^[\x20-\x7e]*$/.test(input)) throw new ScheduleError('only plain text is allowed')
  const text = input.toLowerCase().trim().replace(/\s+/g, ' ').replace(/ ?, ?/g, ', ')
  if (text === '') throw new ScheduleError('is empty (use `schedule clear` for none)')
  const rules = text.split(', ')
  if (rules.length > MAX_RULES) throw new ScheduleError(`more than ${MAX_RULES} rules`)
  const spans: [number, number][] = []
  for (const rule of rules) {
    if (rule === 'always') {
      spans.push([0, MINUTES_PER_WEEK])
      continue
    }
    const [dayWord, ...windows] = rule.split(' ')
    if (!dayWord) throw new ScheduleError('an empty rule')
    const days = parseDays(dayWord)
    if (windows.length === 0)
      throw new ScheduleError(
        `${JSON.stringify(rule)} names days but no hours (add all or 19:00-08:00)`,
      )
    if (windows.length > MAX_WINDOWS) throw new ScheduleError(`more than ${MAX_WINDOWS} windows`)
    for (const w of windows) {
      let start: number
      let end: number
      if (w === 'all') {
        start = 0
        end = MINUTES_PER_DAY
      } else {
        const m = /^([^-]+)-([^-]+)$/.exec(w)
        if (!m) throw new ScheduleError(`${JSON.stringify(w)} is not a window like 19:00-08:00`)
        start = parseTime(m[1])
        end = parseTime(m[2])
        if (start === MINUTES_PER_DAY) throw new ScheduleError(`${w} starts at 24:00`)
        if (start === end) throw new ScheduleError(`${w} is empty (for the whole day, write all)`)
        if (end < start) end += MINUTES_PER_DAY
      }
      for (const d of days) spans.push([d * MINUTES_PER_DAY + start, d * MINUTES_PER_DAY + end])
    }
  }
  return { text, spans: normalise(spans) }
}

/** Sorted, merged, and wrapped into one week (a Saturday night window ends on Sunday). */
function normalise(spans: [number, number][]): [number, number][] {
  const flat: [number, number][] = []
  for (const [s, e] of spans) {
    if (e <= MINUTES_PER_WEEK) flat.push([s, e])
    else flat.push([s, MINUTES_PER_WEEK], [0, e - MINUTES_PER_WEEK])
  }
  flat.sort((a, b) => a[0] - b[0])
  const out: [number, number][] = []
  for (const span of flat) {
    const last = out[out.length - 1]
    if (last && span[0] <= last[1]) last[1] = Math.max(last[1], span[1])
    else out.push([...span])
  }
  return out
}

/** Is the schedule open at this instant (by `local` time)? */
export function isOpen(s: Schedule, epochMs: number, local: LocalTime = systemLocalTime): boolean {
  const { day, minute } = local(epochMs)
  const at = day * MINUTES_PER_DAY + minute
  return s.spans.some(([a, b]) => at >= a && at < b)
}

/**
 * The next instant (to the minute) at which the schedule opens or closes, scanning at most
 * 8 days ahead; undefined for a schedule that never changes (always, or never open).
 * Scans real minutes rather than adding local hours, so DST nights count right.
 */
export function nextChange(
  s: Schedule,
  epochMs: number,
  local: LocalTime = systemLocalTime,
): number | undefined {
  const now = isOpen(s, epochMs, local)
  let t = Math.floor(epochMs / 60_000) * 60_000
  for (let i = 0; i < 8 * MINUTES_PER_DAY; i++) {
    t += 60_000
    if (isOpen(s, t, local) !== now) return t
  }
  return undefined
}
