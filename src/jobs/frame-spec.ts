/**
 * Frame specs: `1-250`, `1-10,20,30-40`, `1-100:5` (every 5th), with an optional default step
 * for ranges that carry none. Pure; used by the CLI, the dashboard form and the daemon.
 *
 * Invariants: the result is sorted, without duplicates, non-empty, within
 * [MIN_FRAME, MAX_FRAME] and at most MAX_FRAMES_PER_JOB long; anything else is an
 * InvalidInputError naming the offending part. Size is checked before expanding a range.
 */
import { InvalidInputError } from '../util/errors.js'

/** Blender's own frame limit. */
export const MIN_FRAME = 0
export const MAX_FRAME = 1_048_574
export const MAX_FRAMES_PER_JOB = 100_000
export const MAX_SPEC_LENGTH = 4096

const INT = /^\d{1,7}$/

export interface FrameSpecOptions {
  /** Step for ranges written without `:S`. Default 1. */
  step?: number
  maxFrames?: number
}

export function parseFrameSpec(spec: string, options: FrameSpecOptions = {}): number[] {
  const step = options.step ?? 1
  const maxFrames = options.maxFrames ?? MAX_FRAMES_PER_JOB
  if (!Number.isInteger(step) || step < 1) fail(`step must be a whole number ≥ 1, got ${step}`)
  if (typeof spec !== 'string') fail('frame spec must be a string')
  if (spec.length > MAX_SPEC_LENGTH) fail(`frame spec is longer than ${MAX_SPEC_LENGTH} characters`)
  if (spec.trim() === '') fail('frame spec is empty; write e.g. 1-250 or 1-10,20,30-40')
  const frames = new Set<number>()
  for (const rawPart of spec.split(',')) {
    const part = rawPart.trim()
    if (part === '') fail(`frame spec "${spec}" has an empty item (two commas in a row?)`)
    const [range, stepText, extra] = part.split(':')
    if (extra !== undefined) fail(`"${part}" has more than one ':'; write START-END:STEP`)
    let partStep = step
    if (stepText !== undefined) {
      if (!INT.test(stepText.trim()) || Number(stepText) < 1)
        fail(`"${part}": the step after ':' must be a whole number ≥ 1`)
      partStep = Number(stepText)
    }
    const bounds = range.split('-').map((s) => s.trim())
    if (bounds.length > 2)
      fail(`"${part}" is not a frame or a range; write N or START-END (frames are ≥ ${MIN_FRAME})`)
    for (const b of bounds) {
      if (!INT.test(b)) fail(`"${part}": "${b}" is not a whole frame number`)
    }
    const start = Number(bounds[0])
    const end = bounds.length === 2 ? Number(bounds[1]) : start
    if (bounds.length === 1 && stepText !== undefined)
      fail(`"${part}": a step needs a range, e.g. 1-100:5`)
    for (const f of [start, end]) {
      if (f < MIN_FRAME || f > MAX_FRAME) fail(`frame ${f} is outside ${MIN_FRAME}-${MAX_FRAME}`)
    }
    if (end < start) fail(`range ${start}-${end} is inverted; write ${end}-${start}`)
    const count = Math.floor((end - start) / partStep) + 1
    if (frames.size + count > maxFrames)
      fail(`frame spec has more than ${maxFrames} frames; split the job`)
    for (let f = start; f <= end; f += partStep) frames.add(f)
  }
  return [...frames].sort((a, b) => a - b)
}

/** The shortest spec for a sorted list: [1,2,3,5] → '1-3,5'. */
export function formatFrames(frames: readonly number[]): string {
  const out: string[] = []
  let i = 0
  while (i < frames.length) {
    let j = i
    while (j + 1 < frames.length && frames[j + 1] === frames[j] + 1) j++
    out.push(j === i ? String(frames[i]) : `${frames[i]}-${frames[j]}`)
    i = j + 1
  }
  return out.join(',')
}

function fail(message: string): never {
  throw new InvalidInputError(message)
}
