import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { safeFileName } from '../../../src/blobs/safe-name.js'

describe('safeFileName', () => {
  it.each([
    ['scene.blend', 'scene.blend'],
    ['../../etc/passwd', 'passwd'],
    ['..', 'file'],
    ['.', 'file'],
    ['', 'file'],
    ['a/b\\c.exr', 'c.exr'],
    ['.bashrc', 'bashrc'],
    ['evil\u0000.sh', 'evil.sh'],
    ['x\u202egnp.exe', 'xgnp.exe'],
    ['CON', '_CON'],
    ['frame:0001?.png', 'frame_0001_.png'],
    ['/', 'file'],
  ])('%j → %j', (input, expected) => {
    expect(safeFileName(input)).toBe(expected)
  })

  it('keeps the extension when cutting a long name', () => {
    const out = safeFileName(`${'é'.repeat(300)}.png`)
    expect(out.endsWith('.png')).toBe(true)
    expect(Buffer.byteLength(out)).toBeLessThanOrEqual(200)
  })

  it('never yields a path, a dot name or a control character', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 600 }), (s) => {
        const out = safeFileName(s)
        expect(out.length).toBeGreaterThan(0)
        expect(out).not.toMatch(/[/\\\u0000-\u001f]/)
        expect(out.startsWith('.')).toBe(false)
        expect(Buffer.byteLength(out)).toBeLessThanOrEqual(200)
      }),
    )
  })
})
