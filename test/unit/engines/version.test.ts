import { describe, expect, it } from 'vitest'
import { isEngineError } from '../../../src/engines/types.js'
import {
  compareVersions,
  meetsRequirement,
  parseRequirement,
} from '../../../src/engines/version.js'

describe('versions', () => {
  it('compares numerically', () => {
    expect(compareVersions('3.10', '3.4')).toBeGreaterThan(0)
    expect(compareVersions('3.4', '3.4.0')).toBe(0)
    expect(compareVersions('2.93.18', '3.0')).toBeLessThan(0)
  })

  it('matches requirements', () => {
    const installed = [
      { name: 'blender', version: '3.4.1' },
      { name: 'ffmpeg', version: '5.1.6' },
    ]
    expect(meetsRequirement(installed, 'blender>=3.4')).toBe(true)
    expect(meetsRequirement(installed, 'blender>3.4.1')).toBe(false)
    expect(meetsRequirement(installed, 'blender=3.4')).toBe(true)
    expect(meetsRequirement(installed, 'blender=3.5')).toBe(false)
    expect(meetsRequirement(installed, 'blender<4')).toBe(true)
    expect(meetsRequirement(installed, 'blender^3.0')).toBe(true)
    expect(meetsRequirement(installed, 'blender~3.3')).toBe(false)
    expect(meetsRequirement(installed, 'ffmpeg')).toBe(true)
    expect(meetsRequirement(installed, 'povray')).toBe(false)
  })

  it('refuses malformed requirements', () => {
    for (const r of ['', '>=3', 'blender>=', 'blender>=x', 'blender!3', 'a'.repeat(80)]) {
      let err: unknown
      try {
        parseRequirement(r)
      } catch (e) {
        err = e
      }
      expect(isEngineError(err, 'ERR_ENGINE_PARAMS')).toBe(true)
    }
  })
})
