/**
 * Devices and several Blenders with the real Blender on this CPU-only machine:
 *  - detection by Blender's own Python reports the CPU only;
 *  - a folder of unpacked releases is scanned (a wrapper script named as such stands for a
 *    second Blender: it answers `--version` with "Blender 4.2.0" and execs the real one
 *    otherwise), deduplicated by real path, newest first;
 *  - a render asked for the CPU says so in its log; a scene set to GPU Compute, with no device
 *    asked, renders on the CPU (never fails for lack of a GPU); one asked for OptiX fails
 *    before any frame with ERR_RENDER_FAILED, naming the device (this machine has none).
 */
import { mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { detectBlender, renderChunk } from '../../../src/engines/blender.js'
import { detectDevices } from '../../../src/engines/blender-devices.js'
import type { ExampleScene } from '../../../src/engines/example-scene.js'
import { findOnPath } from '../../../src/engines/process.js'
import type { RenderTask } from '../../../src/engines/types.js'
import { never, sceneCache, writeBlenderWrapper } from './helpers.js'

let scene: ExampleScene
let root: string
let real: string

beforeAll(async () => {
  scene = await sceneCache()
  root = await mkdtemp(join(tmpdir(), 'rmesh-blender-devices-'))
  real = (await findOnPath('blender'))[0]
}, 120_000)

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true })
})

const task = (over: Partial<RenderTask>): RenderTask => ({
  scenePath: scene.scenePath,
  frames: [1],
  workDir: join(root, 'w'),
  format: 'PNG',
  params: {},
  ...over,
})

describe('Blender devices and versions (real Blender, CPU only)', () => {
  it("detection by Blender's own Python reports the CPU only", { timeout: 60_000 }, async () => {
    expect(await detectDevices(real, { signal: never() })).toEqual({ kinds: ['cpu'], names: [] })
  })

  it('finds every Blender: PATH, configured, releases folder; deduplicated by real path', {
    timeout: 60_000,
  }, async () => {
    const releases = join(root, 'releases')
    const wrapper = await writeBlenderWrapper(releases, '4.2.0', real)
    // The real one again under another name: one entry, not two.
    await symlink(real, join(root, 'blender-again'))
    await mkdir(join(releases, 'not-a-release'))
    const found = await detectBlender({
      paths: [join(root, 'blender-again')],
      releasesDir: releases,
    })
    expect(found.map((v) => v.version)).toEqual(['4.2.0', expect.stringMatching(/^3\.4/)])
    expect(found[0].path).toBe(wrapper)
  })

  it('a CPU render says which device it used', { timeout: 60_000 }, async () => {
    const r = await renderChunk(
      { blender: real },
      task({ device: 'cpu', workDir: join(root, 'cpu') }),
      {
        signal: never(),
      },
    )
    expect(r.outputs).toHaveLength(1)
    expect(await readFile(r.logPath, 'utf8')).toContain('RMESH_DEVICE {"kind": "cpu"}')
  })

  it('a scene set to GPU Compute renders on the CPU of a node without a GPU (no --device)', {
    timeout: 60_000,
  }, async () => {
    const gpuScene = join(root, 'gpu-scene.blend')
    await execa(real, [
      '-b',
      '--factory-startup',
      scene.scenePath,
      '--python-exit-code',
      '3',
      '--python-expr',
      `import bpy\nbpy.context.scene.cycles.device = 'GPU'\nbpy.ops.wm.save_as_mainfile(filepath=${JSON.stringify(gpuScene)}, copy=True)`,
    ])
    const r = await renderChunk(
      { blender: real },
      task({ scenePath: gpuScene, workDir: join(root, 'gpu') }),
      { signal: never() },
    )
    expect(r.outputs).toHaveLength(1)
    expect(await readFile(r.logPath, 'utf8')).toContain('RMESH_DEVICE {"kind": "cpu"}')
  })

  it('a render asked for OptiX fails before any frame on a node without it', {
    timeout: 60_000,
  }, async () => {
    const err = await renderChunk(
      { blender: real },
      task({ device: 'optix', workDir: join(root, 'optix') }),
      { signal: never() },
    ).catch((e) => e)
    expect(err).toMatchObject({ code: 'ERR_RENDER_FAILED' })
    expect(err.message).toMatch(/no optix device/)
  })
})
