import { describe, expect, it } from 'vitest'
import { pickVersion, versionSatisfies } from '../../../src/jobs/version.js'
import { parseEngineRequirement } from '../../../src/service/submit.js'

const installed = [
  { name: 'blender', version: '3.4.1' },
  { name: 'blender', version: '4.2.3' },
  { name: 'blender', version: '4.3.0' },
  { name: 'ffmpeg', version: '5.1.6' },
]

describe('pickVersion: the Blender a chunk runs with on a node that has several', () => {
  it('takes the newest installed version that meets the range, not the newest installed', () => {
    expect(pickVersion(installed, 'blender', '>=4.2 <4.3')).toBe('4.2.3')
    expect(pickVersion(installed, 'blender', '=3.4')).toBe('3.4.1')
    expect(pickVersion(installed, 'blender', '^4.0')).toBe('4.3.0')
  })
  it('without a requirement takes the newest of that engine', () => {
    expect(pickVersion(installed, 'blender', undefined)).toBe('4.3.0')
  })
  it('is undefined when none meets it, or for garbage', () => {
    expect(pickVersion(installed, 'blender', '>=5')).toBeUndefined()
    expect(pickVersion(installed, 'blender', 'lots')).toBeUndefined()
    expect(pickVersion(installed, 'maya', undefined)).toBeUndefined()
  })
  it('agrees with versionSatisfies, which eligibility uses', () => {
    for (const req of ['>=4.2 <4.3', '~3.4', '>=3 <4', '4.3.0'])
      expect(versionSatisfies(pickVersion(installed, 'blender', req) ?? 'none', req)).toBe(true)
  })
})

describe('parseEngineRequirement: submit --require', () => {
  it('keeps ranges and joins several values', () => {
    expect(parseEngineRequirement(['blender>=4.2 <4.3'], 'blender')).toBe('>=4.2 <4.3')
    expect(parseEngineRequirement(['blender >= 4.2', 'blender<4.3'], 'blender')).toBe('>=4.2 <4.3')
    expect(parseEngineRequirement([], 'blender')).toBeUndefined()
    expect(parseEngineRequirement(undefined, 'blender')).toBeUndefined()
  })
  it('refuses garbage, another engine, and too many comparators with a field named', () => {
    // The engine alone names no versions (submit then takes any version, like --any-blender).
    expect(parseEngineRequirement(['blender'], 'blender')).toBeUndefined()
    expect(parseEngineRequirement(['blender == 3.4'], 'blender')).toBe('=3.4')
    for (const bad of [
      ['blender>=x'],
      ['>=4'],
      ['blender>=1 <2 >0 <3 >=1'],
      ['blender>=4.2 garbage'],
    ])
      expect(() => parseEngineRequirement(bad, 'blender')).toThrow(/require|comparators/)
    expect(() => parseEngineRequirement(['maya>=1'], 'blender')).toThrow(/another engine/)
    try {
      parseEngineRequirement(['blender>=x'], 'blender')
    } catch (err) {
      expect((err as { code?: string; details?: { field?: string } }).code).toBe(
        'ERR_INVALID_INPUT',
      )
    }
  })
})
