import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { testFramePng } from '../../../src/engines/test-engine.js'
import {
  isOwnThumbnail,
  makePreview,
  pngSize,
  previewArgs,
  THUMB_MAX_BYTES,
} from '../../../src/engines/thumbnail.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rmesh-thumb-'))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

describe('thumbnails', () => {
  it('reads PNG sizes and refuses what is not a PNG', () => {
    expect(pngSize(testFramePng('abcdefgh', 1))).toEqual({ width: 8, height: 8 })
    expect(pngSize(new Uint8Array(30))).toBeUndefined()
    expect(pngSize(new Uint8Array(3))).toBeUndefined()
  })

  it('a tiny PNG is its own thumbnail; an EXR never is', async () => {
    const p = join(dir, 'tiny.png')
    await writeFile(p, testFramePng('abcdefgh', 1))
    expect(await isOwnThumbnail(p, 'PNG')).toBe(true)
    expect(await isOwnThumbnail(p, 'OPEN_EXR')).toBe(false)
  })

  it('tone-maps EXR and scales big frames with ffmpeg (argv only)', async () => {
    const exr = join(dir, 'f.exr')
    execFileSync('ffmpeg', [
      ...['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=s=640x360'],
      ...['-frames:v', '1', '-pix_fmt', 'gbrpf32le', '-c:v', 'exr', exr],
    ])
    const thumb = join(dir, 'f.jpg')
    expect(await makePreview(exr, thumb, 'OPEN_EXR', { maxPx: 256 })).toBe(true)
    const bytes = await readFile(thumb)
    expect([bytes[0], bytes[1]]).toEqual([0xff, 0xd8])
    expect(bytes.length).toBeLessThanOrEqual(THUMB_MAX_BYTES)
    const full = join(dir, 'f.png')
    expect(await makePreview(exr, full, 'OPEN_EXR')).toBe(true)
    expect(pngSize(await readFile(full))).toEqual({ width: 640, height: 360 })
    expect(previewArgs(exr, thumb, 'OPEN_EXR', 256).join(' ')).toContain('tonemap=hable')
  })

  it('garbage input is no preview, not an error', async () => {
    const bad = join(dir, 'bad.png')
    await writeFile(bad, 'not an image')
    expect(await makePreview(bad, join(dir, 'bad.jpg'), 'PNG', { maxPx: 256 })).toBe(false)
    expect(
      await makePreview(bad, join(dir, 'x.jpg'), 'PNG', { ffmpeg: '/nonexistent/ffmpeg' }),
    ).toBe(false)
  })
})
