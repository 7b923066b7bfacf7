import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  checkBlendHeader,
  frameSpec,
  parseBlenderLine,
  parseBlenderVersion,
  validateFrames,
} from '../../../src/engines/blender.js'
import { checkImageBytes, isValidImage } from '../../../src/engines/images.js'
import { encodePng } from '../../../src/engines/test-engine.js'
import { isEngineError } from '../../../src/engines/types.js'

describe('blender output parsing', () => {
  it('reads the version', () => {
    expect(parseBlenderVersion('Blender 3.4.1\n\tbuild date: ...')).toBe('3.4.1')
    expect(parseBlenderVersion('Blender 4.2\n')).toBe('4.2')
    expect(parseBlenderVersion('nope')).toBeUndefined()
  })

  it('reads progress lines', () => {
    const p = parseBlenderLine(
      'Fra:3 Mem:9.62M (Peak 10.24M) | Time:00:00.01 | Mem:0.83M, Peak:0.83M | scene, ViewLayer | Sample 4/8',
    )
    expect(p).toMatchObject({
      frame: 3,
      samples: { done: 4, total: 8 },
      fraction: 0.5,
      message: 'Sample 4/8',
    })
    expect(p?.memory).toBe(Math.round(9.62 * 2 ** 20))
    expect(parseBlenderLine("Saved: '/w/frame_00003.png'")).toMatchObject({
      saved: '/w/frame_00003.png',
    })
    expect(parseBlenderLine('Blender quit')).toBeUndefined()
    expect(parseBlenderLine('Fra:x garbage')).toBeUndefined()
  })

  it('compacts frame lists for -f', () => {
    expect(frameSpec([1, 2, 3, 7, 9, 10])).toBe('1..3,7,9..10')
    expect(frameSpec([5])).toBe('5')
  })

  it('validates frames', () => {
    expect(validateFrames([3, 1, 2, 2])).toEqual([1, 2, 3])
    for (const bad of [[], [-1], [1.5], ['1'], 'x', [2 ** 31]]) {
      let err: unknown
      try {
        validateFrames(bad)
      } catch (e) {
        err = e
      }
      expect(isEngineError(err, 'ERR_ENGINE_PARAMS')).toBe(true)
    }
  })

  it('refuses files without a .blend header before launching Blender', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rmesh-hdr-'))
    const text = join(dir, 'scene.blend')
    await writeFile(text, 'hello, I am text')
    await expect(checkBlendHeader(text)).rejects.toMatchObject({ code: 'ERR_SCENE_INVALID' })
    await expect(checkBlendHeader(join(dir, 'absent.blend'))).rejects.toMatchObject({
      code: 'ERR_SCENE_INVALID',
    })
    const ok = join(dir, 'ok.blend')
    await writeFile(ok, 'BLENDER-v304RENDH')
    await expect(checkBlendHeader(ok)).resolves.toBeUndefined()
  })
})

describe('image validation', () => {
  it('accepts complete PNGs and refuses truncated ones', async () => {
    const png = encodePng(2, 2, new Uint8Array(12).fill(200))
    const dir = await mkdtemp(join(tmpdir(), 'rmesh-img-'))
    await writeFile(join(dir, 'ok.png'), png)
    await writeFile(join(dir, 'cut.png'), png.subarray(0, png.length - 5))
    await writeFile(join(dir, 'empty.png'), '')
    expect(await isValidImage(join(dir, 'ok.png'), 'PNG')).toBe(true)
    expect(await isValidImage(join(dir, 'cut.png'), 'PNG')).toBe(false)
    expect(await isValidImage(join(dir, 'empty.png'), 'PNG')).toBe(false)
    expect(await isValidImage(join(dir, 'absent.png'), 'PNG')).toBe(false)
    expect(await isValidImage(join(dir, 'ok.png'), 'JPEG')).toBe(false)
  })

  it('checks JPEG and EXR signatures', () => {
    const jpegHead = new Uint8Array([0xff, 0xd8, 0xff, 0xe0])
    expect(checkImageBytes(jpegHead, new Uint8Array([0, 0xff, 0xd9]), 'JPEG')).toBe(true)
    expect(checkImageBytes(jpegHead, new Uint8Array([0, 0xff, 0x00]), 'JPEG')).toBe(false)
    expect(
      checkImageBytes(new Uint8Array([0x76, 0x2f, 0x31, 0x01]), new Uint8Array(4), 'OPEN_EXR'),
    ).toBe(true)
    expect(checkImageBytes(new Uint8Array(4), new Uint8Array(4), 'OPEN_EXR')).toBe(false)
  })
})
