/**
 * Engine benchmark: persistent Blender (scene loaded once) against one Blender process
 * per frame, on the example scene, in the same run. Per-frame times include process
 * start-up and scene load, amortised over the frames: that is what a farm pays.
 *
 *   npm run build && node dist/bench/engines.js [frames]
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isMain, runStandalone } from './common.js'
import { createPersistentBlender, renderChunk } from '../src/engines/blender.js'
import { ensureExampleScene } from '../src/engines/example-scene.js'

export interface BenchResult {
  name: string
  value: number
  unit: string
  note?: string
}

export async function benchEngines(
  opts: { frames?: number; blender?: string } = {},
): Promise<BenchResult[]> {
  const frames = Array.from({ length: opts.frames ?? 6 }, (_, i) => i + 1)
  const blender = opts.blender ?? 'blender'
  const scene = await ensureExampleScene(undefined, { blender })
  const root = await mkdtemp(join(tmpdir(), 'rmesh-bench-engines-'))
  const signal = new AbortController().signal
  try {
    const t0 = performance.now()
    for (const f of frames) {
      await renderChunk(
        { blender },
        {
          scenePath: scene.scenePath,
          frames: [f],
          workDir: join(root, 'per-process'),
          format: 'PNG',
          params: {},
        },
        { signal },
      )
    }
    const perProcess = (performance.now() - t0) / frames.length

    const t1 = performance.now()
    const pb = await createPersistentBlender(scene.scenePath, {
      blender,
      logPath: join(root, 'persistent.log'),
    })
    const startup = performance.now() - t1
    const steady: number[] = []
    for (const f of frames) {
      const r = await pb.render(
        { frames: [f], workDir: join(root, 'persistent'), format: 'PNG' },
        { signal },
      )
      steady.push(r.renderMs)
    }
    const persistent = (performance.now() - t1) / frames.length
    await pb.close()
    const note = `example scene 64x64, Cycles CPU 8 samples, ${frames.length} frames`
    return [
      { name: 'engines.blender.per-process.frame', value: round(perProcess), unit: 'ms', note },
      {
        name: 'engines.blender.persistent.frame',
        value: round(persistent),
        unit: 'ms',
        note: `${note}, start-up amortised`,
      },
      { name: 'engines.blender.persistent.startup', value: round(startup), unit: 'ms' },
      {
        name: 'engines.blender.persistent.steady-frame',
        value: round(steady.slice(1).reduce((a, b) => a + b, 0) / Math.max(1, steady.length - 1)),
        unit: 'ms',
        note: 'after the first frame (which also loads the render kernels)',
      },
      {
        name: 'engines.blender.speedup',
        value: round(perProcess / persistent),
        unit: 'x',
        note: 'per-process / persistent',
      },
    ]
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100
}

if (isMain(import.meta.url)) {
  const n = process.argv[2] ? Number(process.argv[2]) : undefined
  runStandalone(() => benchEngines({ frames: n }))
}
