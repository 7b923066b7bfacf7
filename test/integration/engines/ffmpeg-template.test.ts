import { mkdtemp, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  encodeVideo,
  listEncoders,
  probeVideo,
  type VideoCodec,
} from '../../../src/engines/ffmpeg.js'
import { isValidImage } from '../../../src/engines/images.js'
import { createEngineRegistry } from '../../../src/engines/registry.js'
import { createTemplateEngine, loadTemplateEngines } from '../../../src/engines/template.js'
import { silentLogger } from '../../../src/util/logger.js'
import { never, sceneCache } from './helpers.js'

let root: string
let frames: { frame: number; path: string }[]
const examples = new URL('../../../examples/engines.json', import.meta.url).pathname

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'rmesh-ffmpeg-it-'))
  // 12 frames of 64x64, numbered 1..12 like Blender's output
  await execa('ffmpeg', [
    '-v',
    'error',
    '-f',
    'lavfi',
    '-i',
    'testsrc=size=64x64:rate=24',
    '-frames:v',
    '12',
    '-start_number',
    '1',
    join(root, 'frame_%05d.png'),
  ])
  frames = (await readdir(root)).sort().map((f, i) => ({ frame: i + 1, path: join(root, f) }))
})

describe('video encode (real ffmpeg)', () => {
  const cases: [VideoCodec, string, string][] = [
    ['h264', 'h264', 'mp4'],
    ['vp9', 'vp9', 'webm'],
    ['av1', 'av1', 'mp4'],
  ]
  it.each(cases)(
    'encodes %s with the right codec, frame count and duration',
    async (codec, name, ext) => {
      const enc = await listEncoders()
      if (codec === 'av1' && !enc.has('libsvtav1') && !enc.has('libaom-av1')) return
      const progress: number[] = []
      const out = join(root, `video-${codec}.${ext}`)
      const r = await encodeVideo({
        frames: [...frames].reverse(), // order comes from frame numbers, not the list
        fps: 24,
        codec,
        out,
        signal: never(),
        onProgress: (p) => progress.push(p.fraction),
      })
      expect(r.frames).toBe(12)
      const info = await probeVideo(out)
      expect(info).toMatchObject({ codec: name, frames: 12, width: 64, height: 64 })
      expect(info.duration).toBeCloseTo(0.5, 1)
      expect(progress.at(-1)).toBe(1)
    },
  )

  it('encodes EXR frames', async () => {
    const exrDir = await mkdtemp(join(root, 'exr-'))
    await execa('ffmpeg', [
      '-v',
      'error',
      '-f',
      'lavfi',
      '-i',
      'testsrc=size=64x64:rate=24',
      '-frames:v',
      '3',
      '-pix_fmt',
      'gbrpf32le',
      '-start_number',
      '1',
      join(exrDir, 'frame_%05d.exr'),
    ])
    const exr = (await readdir(exrDir))
      .sort()
      .map((f, i) => ({ frame: i + 1, path: join(exrDir, f) }))
    const out = join(root, 'exr.mp4')
    await encodeVideo({ frames: exr, fps: 12, codec: 'h264', out, signal: never() })
    expect(await probeVideo(out)).toMatchObject({ codec: 'h264', frames: 3, duration: 0.25 })
  })

  it('refuses bad input with typed errors, and cancels', async () => {
    const base = {
      frames,
      fps: 24,
      codec: 'h264' as VideoCodec,
      out: join(root, 'x.mp4'),
      signal: never(),
    }
    await expect(encodeVideo({ ...base, codec: 'mpeg2' as VideoCodec })).rejects.toMatchObject({
      code: 'ERR_ENGINE_PARAMS',
    })
    await expect(encodeVideo({ ...base, fps: 0 })).rejects.toMatchObject({
      code: 'ERR_ENGINE_PARAMS',
    })
    await expect(encodeVideo({ ...base, frames: [] })).rejects.toMatchObject({
      code: 'ERR_ENGINE_PARAMS',
    })
    const ac = new AbortController()
    ac.abort()
    await expect(encodeVideo({ ...base, signal: ac.signal })).rejects.toMatchObject({
      code: 'ERR_RENDER_CANCELED',
    })
    await expect(probeVideo(frames[0].path.replace('.png', '.nope'))).rejects.toMatchObject({
      code: 'ERR_ENCODE_FAILED',
    })
  })
})

describe('templated engine (real ffmpeg)', () => {
  it('renders with the example ffmpeg-still declaration', async () => {
    const [decl] = await loadTemplateEngines(examples)
    const engine = createTemplateEngine(decl)
    expect((await engine.detect())[0].version).toMatch(/^\d+\.\d+/)
    const scene = await sceneCache()
    const params = engine.validate({ width: 32, scaler: 'neighbor' })
    const workDir = join(root, 'tpl')
    const r = await engine.render(
      { scenePath: scene.texturePath, frames: [1, 2], workDir, format: 'PNG', params },
      { signal: never() },
    )
    expect(r.outputs.map((o) => o.frame)).toEqual([1, 2])
    for (const o of r.outputs) expect(await isValidImage(o.path, 'PNG')).toBe(true)
    expect(await probeVideo(r.outputs[0].path)).toMatchObject({ width: 32, height: 32 })
  })

  it('refuses bad params before anything runs', async () => {
    const [decl] = await loadTemplateEngines(examples)
    const engine = createTemplateEngine(decl)
    const scene = await sceneCache()
    for (const params of [
      { width: 'wide' },
      { scaler: 'bilinear; rm -rf /' },
      { width: 1e9 },
      { extra: 1 },
    ]) {
      const err = await engine
        .render(
          {
            scenePath: scene.texturePath,
            frames: [1],
            workDir: join(root, 'tplbad'),
            format: 'PNG',
            params: params as never,
          },
          { signal: never() },
        )
        .catch((e) => e)
      expect(err).toMatchObject({ code: 'ERR_ENGINE_PARAMS' })
    }
    await expect(
      engine.render(
        {
          scenePath: join(root, 'scene.blend'),
          frames: [1],
          workDir: join(root, 'tplbad'),
          format: 'PNG',
          params: {},
        },
        { signal: never() },
      ),
    ).rejects.toMatchObject({ code: 'ERR_SCENE_INVALID' })
  })
})

describe('engine registry', () => {
  it('detects blender, ffmpeg, templated and test engines, and matches requirements', async () => {
    const reg = await createEngineRegistry({
      config: { engines: (await loadTemplateEngines(examples)).map((d) => ({ ...d })), test: true },
      logger: silentLogger,
    })
    const names = reg.describe().map((d) => d.name)
    expect(names).toEqual(expect.arrayContaining(['blender', 'ffmpeg', 'ffmpeg-still', 'test']))
    expect(reg.satisfies('blender>=3.4')).toBe(true)
    expect(reg.satisfies('blender>=99')).toBe(false)
    expect(reg.get('test').name).toBe('test')
    expect(() => reg.get('povray')).toThrow(
      expect.objectContaining({ code: 'ERR_ENGINE_NOT_FOUND' }),
    )
    expect(reg.pick('blender>=3')?.path).toBeTruthy()
    await reg.close()
  })

  it('refuses a bad engine config with ERR_ENGINE_CONFIG', async () => {
    await expect(
      createEngineRegistry({ config: { engines: [{ name: 'x' }] }, logger: silentLogger }),
    ).rejects.toMatchObject({ code: 'ERR_ENGINE_CONFIG' })
  })

  it('the test engine runs through the registry', async () => {
    const reg = await createEngineRegistry({
      config: { test: { nodeId: 'n' } },
      logger: silentLogger,
    })
    const e = reg.get('test')
    const r = await e.render(
      {
        scenePath: 's',
        frames: [1],
        workDir: join(root, 'te'),
        format: 'PNG',
        params: e.validate({ frameMs: 1 }),
      },
      { signal: never() },
    )
    expect(r.outputs).toHaveLength(1)
  })
})
