import { copyFile, mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  type BlenderEngine,
  createBlenderEngine,
  createPersistentBlender,
  inspectScene,
  packScene,
} from '../../../src/engines/blender.js'
import type { ExampleScene } from '../../../src/engines/example-scene.js'
import { isValidImage } from '../../../src/engines/images.js'
import type { RenderProgress, RenderTask } from '../../../src/engines/types.js'
import { isAlive, never, rgb24, sceneCache } from './helpers.js'

let scene: ExampleScene
let root: string
let engine: BlenderEngine
let perProcess: { frame: number; path: string }[]

beforeAll(async () => {
  scene = await sceneCache()
  root = await mkdtemp(join(tmpdir(), 'rmesh-blender-it-'))
  engine = createBlenderEngine()
}, 120_000)

afterAll(async () => {
  await engine?.close()
})

function task(over: Partial<RenderTask> = {}): RenderTask {
  return {
    scenePath: scene.scenePath,
    frames: [1, 2, 3],
    workDir: join(root, 'w'),
    format: 'PNG',
    params: {},
    ...over,
  }
}

/** A scene copied into its own folder without its texture. */
async function sceneWithoutTexture(): Promise<string> {
  const dir = await mkdtemp(join(root, 'missing-'))
  const p = join(dir, 'scene.blend')
  await copyFile(scene.scenePath, p)
  return p
}

describe('blender engine (real Blender)', () => {
  it('detects the installed version', async () => {
    const versions = await engine.detect()
    expect(versions[0]).toMatchObject({ name: 'blender' })
    expect(versions[0].version).toMatch(/^\d+\.\d+/)
  })

  it('reads the example scene metadata', async () => {
    const info = await engine.inspect(scene.scenePath, { signal: never() })
    expect(info).toMatchObject({
      sceneName: 'rmesh-example',
      frameStart: 1,
      frameEnd: 24,
      frameStep: 1,
      resolutionX: 64,
      resolutionY: 64,
      resolutionPercentage: 100,
      fps: 24,
      renderEngine: 'CYCLES',
      outputFormat: 'PNG',
      camera: 'rmesh-camera',
      missingFiles: [],
    })
    expect(info.externalFiles).toHaveLength(1)
    expect(info.externalFiles[0]).toMatchObject({
      kind: 'image',
      path: '//texture.png',
      exists: true,
    })
  })

  it('renders frames 1-3 identical in pixels to a direct blender -b render', async () => {
    const progress: RenderProgress[] = []
    const logs: string[] = []
    const r = await engine.render(task({ workDir: join(root, 'chunk') }), {
      signal: never(),
      onProgress: (p) => progress.push(p),
      onLog: (l) => logs.push(l),
    })
    perProcess = r.outputs
    expect(r.outputs.map((o) => o.frame)).toEqual([1, 2, 3])
    expect(progress.some((p) => p.samples?.total === 8 && p.frame === 2)).toBe(true)
    expect(progress.some((p) => p.message.startsWith('saved') && p.frame === 3)).toBe(true)
    expect(progress.some((p) => (p.memory ?? 0) > 0)).toBe(true)
    expect(logs.length).toBeGreaterThan(10)
    expect(await readFile(r.logPath, 'utf8')).toContain('Saved:')

    const direct = join(root, 'direct')
    await execa('blender', [
      '-b',
      scene.scenePath,
      '-o',
      join(direct, 'frame_#####'),
      '-F',
      'PNG',
      '-f',
      '1..3',
    ])
    for (const o of r.outputs) {
      const ref = join(direct, `frame_0000${o.frame}.png`)
      const [a, b] = [await rgb24(o.path), await rgb24(ref)]
      expect(a.length).toBe(64 * 64 * 3)
      expect(a.equals(b)).toBe(true)
    }
    // frames differ from each other: the scene is animated
    expect((await rgb24(r.outputs[0].path)).equals(await rgb24(r.outputs[1].path))).toBe(false)
  })

  it('renders the same pixels in persistent mode, and EXR on request', async () => {
    const r = await engine.render(task({ workDir: join(root, 'persistent'), persistent: true }), {
      signal: never(),
    })
    for (const o of r.outputs) {
      const ref = perProcess.find((p) => p.frame === o.frame)!
      expect((await rgb24(o.path)).equals(await rgb24(ref.path))).toBe(true)
    }
    // the same process serves the next request, in another format
    const exr = await engine.render(
      task({ frames: [4, 5], workDir: join(root, 'exr'), persistent: true, format: 'OPEN_EXR' }),
      {
        signal: never(),
      },
    )
    expect(exr.outputs.map((o) => o.path.endsWith('.exr'))).toEqual([true, true])
    for (const o of exr.outputs) expect(await isValidImage(o.path, 'OPEN_EXR')).toBe(true)
  })

  it('kills Blender within 1 s on cancel', async () => {
    const ac = new AbortController()
    let pid = 0
    const p = engine.render(
      task({ frames: [1, 2, 3, 4, 5, 6], samples: 4096, workDir: join(root, 'cancel') }),
      {
        signal: ac.signal,
        onSpawn: (x) => {
          pid = x
        },
        onProgress: (pr) => {
          if (pr.samples && !ac.signal.aborted) ac.abort()
        },
      },
    )
    const err = await p.catch((e) => e)
    const t0 = performance.now()
    expect(err).toMatchObject({ code: 'ERR_RENDER_CANCELED' })
    while (isAlive(pid) && performance.now() - t0 < 1000)
      await new Promise((r) => setTimeout(r, 10))
    expect(isAlive(pid)).toBe(false)
  })

  it('cancels a persistent render the same way', async () => {
    let pid = 0
    const pb = await createPersistentBlender(scene.scenePath, {
      blender: 'blender',
      samples: 4096,
      logPath: join(root, 'pcancel.log'),
      onSpawn: (x) => {
        pid = x
      },
    })
    const ac = new AbortController()
    const started = performance.now()
    const err = await pb
      .render(
        { frames: [1], workDir: join(root, 'pcancel'), format: 'PNG' },
        { signal: ac.signal, onProgress: (p) => p.samples && ac.abort() },
      )
      .catch((e) => e)
    expect(err).toMatchObject({ code: 'ERR_RENDER_CANCELED' })
    expect(performance.now() - started).toBeLessThan(10_000)
    const t0 = performance.now()
    while (isAlive(pid) && performance.now() - t0 < 1000)
      await new Promise((r) => setTimeout(r, 10))
    expect(isAlive(pid)).toBe(false)
    expect(pb.alive()).toBe(false)
  })

  it('times out a chunk with ERR_RENDER_TIMEOUT', async () => {
    const err = await engine
      .render(
        task({ frames: [1, 2, 3], samples: 4096, timeoutMs: 1500, workDir: join(root, 'timeout') }),
        {
          signal: never(),
        },
      )
      .catch((e) => e)
    expect(err).toMatchObject({ code: 'ERR_RENDER_TIMEOUT' })
  })

  it('gives ERR_SCENE_INVALID for a corrupt .blend and for a text file named .blend', async () => {
    const corrupt = join(root, 'corrupt.blend')
    const bytes = await readFile(scene.scenePath)
    await writeFile(corrupt, bytes.subarray(0, Math.floor(bytes.length / 3)))
    const text = join(root, 'text.blend')
    await writeFile(text, 'this is not a scene\n')
    for (const scenePath of [corrupt, text]) {
      const err = await engine
        .render(task({ scenePath, workDir: join(root, 'bad') }), { signal: never() })
        .catch((e) => e)
      expect(err).toMatchObject({ code: 'ERR_SCENE_INVALID' })
    }
    await expect(engine.inspect(text, { signal: never() })).rejects.toMatchObject({
      code: 'ERR_SCENE_INVALID',
    })
  })

  it('flags a missing texture in inspect and fails the render with ERR_SCENE_MISSING_ASSET', async () => {
    const p = await sceneWithoutTexture()
    const info = await inspectScene('blender', p)
    expect(info.missingFiles).toEqual(['//texture.png'])
    expect(info.externalFiles[0].exists).toBe(false)
    const err = await engine
      .render(task({ scenePath: p, workDir: join(root, 'miss') }), { signal: never() })
      .catch((e) => e)
    expect(err).toMatchObject({ code: 'ERR_SCENE_MISSING_ASSET' })
    expect(err.details.missing[0].path).toBe('//texture.png')
  })

  it('packs external files into a copy that no longer needs them', async () => {
    const dir = await mkdtemp(join(root, 'packed-'))
    const dest = join(dir, 'packed.blend')
    const r = await packScene('blender', scene.scenePath, dest)
    expect(r.unpacked).toEqual([])
    const info = await inspectScene('blender', dest)
    expect(info.externalFiles).toEqual([])
    // a missing asset cannot be packed: a clear error, not a silently pink render
    await expect(
      packScene('blender', await sceneWithoutTexture(), join(dir, 'x.blend')),
    ).rejects.toMatchObject({
      code: 'ERR_SCENE_MISSING_ASSET',
    })
  })
})
