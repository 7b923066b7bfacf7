// What `rmesh submit` checks before the daemon sees the request: the project root and
// --allow-missing (cli/validate.ts).
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { buildSubmitRequest } from '../../../cli/validate.js'
import { checkTags, checkVideoRequest } from '../../../src/service/submit-options.js'

let dir = ''
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true })
})

describe('submit request', () => {
  it('takes --project-root relative to the working folder; it must hold the scene', async () => {
    dir = await mkdtemp(join(tmpdir(), 'rmesh-cli-root-'))
    await mkdir(join(dir, 'shots'))
    await mkdir(join(dir, 'other'))
    await writeFile(join(dir, 'shots', 'a.blend'), 'BLENDER')
    const req = await buildSubmitRequest(
      { scene: 'shots/a.blend', projectRoot: '.', allowMissing: true },
      dir,
    )
    expect(req).toMatchObject({
      scenePath: join(dir, 'shots', 'a.blend'),
      projectRoot: dir,
      allowMissing: true,
    })
    await expect(
      buildSubmitRequest({ scene: 'shots/a.blend', projectRoot: 'other' }, dir),
    ).rejects.toMatchObject({
      code: 'ERR_USAGE',
      message: expect.stringContaining('does not hold'),
    })
    await expect(
      buildSubmitRequest({ scene: 'shots/a.blend', projectRoot: 'nope' }, dir),
    ).rejects.toMatchObject({ code: 'ERR_USAGE', message: expect.stringContaining('not a folder') })
    const plain = await buildSubmitRequest({ scene: 'shots/a.blend' }, dir)
    expect('projectRoot' in plain || 'allowMissing' in plain).toBe(false)
  })

  it('checks the video flags, and the daemon checks the rules across them', async () => {
    dir = await mkdtemp(join(tmpdir(), 'rmesh-cli-video-'))
    await writeFile(join(dir, 'a.blend'), 'BLENDER')
    const req = await buildSubmitRequest(
      {
        scene: 'a.blend',
        video: 'h265',
        crf: '18',
        hdr: 'hlg',
        frameRate: '24000/1001',
        tag: ['a,b'],
      },
      dir,
    )
    expect(req).toMatchObject({
      video: 'h265',
      crf: 18,
      hdr: 'hlg',
      frameRate: '24000/1001',
      tags: ['a', 'b'],
    })
    const bad: [Record<string, string>, RegExp][] = [
      [{ crf: '20' }, /need --video/],
      [{ video: 'h264', crf: '99' }, /--crf must be a whole number from 0 to 63/],
      [{ video: 'h264', bitDepth: '12' }, /--bit-depth/],
      [{ video: 'h264', hdr: 'pq' }, /--hdr must be hlg/],
      [{ video: 'h264', frameRate: '0/1' }, /--fps must be a frame rate/],
      [{ video: 'h264', passes: '3' }, /--passes/],
    ]
    for (const [flags, why] of bad)
      await expect(buildSubmitRequest({ scene: 'a.blend', ...flags }, dir)).rejects.toMatchObject({
        code: 'ERR_USAGE',
        message: expect.stringMatching(why),
      })
    const scene = { fps: 23.976, fpsInt: 24, fpsBase: 1.001 } as never
    const ok = checkVideoRequest(
      { scenePath: '/a.blend', video: 'h265', hdr: 'hlg' },
      'OPEN_EXR',
      scene,
    )
    expect(ok).toEqual({
      video: 'h265',
      fps: 24,
      frameRate: '24000/1001',
      bitDepth: 10,
      hdr: 'hlg',
    })
    expect(
      checkVideoRequest({ scenePath: '/a.blend' }, 'PNG', {
        fps: 25,
        fpsInt: 25,
        fpsBase: 1,
      } as never),
    ).toEqual({ fps: 25 })
    expect(() =>
      checkVideoRequest({ scenePath: '/a', video: 'h264', crf: 60 }, 'PNG', undefined),
    ).toThrow(
      expect.objectContaining({
        code: 'ERR_INVALID_INPUT',
        message: 'crf: not an integer in [0, 51] for h264',
      }),
    )
    expect(() =>
      checkVideoRequest({ scenePath: '/a', video: 'h264', hdr: 'hlg' }, 'PNG', undefined),
    ).toThrow(/OPEN_EXR/)
    expect(() => checkTags(['ok', '../x'])).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_INPUT' }),
    )
  })
})
