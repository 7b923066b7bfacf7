import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { isValidImage } from '../../../src/engines/images.js'
import { createTestEngine, testFramePng } from '../../../src/engines/test-engine.js'
import type { RenderTask } from '../../../src/engines/types.js'

async function task(params: Record<string, unknown>, frames = [1, 2]): Promise<RenderTask> {
  const workDir = await mkdtemp(join(tmpdir(), 'rmesh-test-engine-'))
  return {
    scenePath: 'scene',
    frames,
    workDir,
    format: 'PNG',
    params: params as RenderTask['params'],
    jobId: 'job-a',
  }
}

describe('test engine', () => {
  it('writes deterministic valid PNGs per (job, frame)', async () => {
    const e = createTestEngine()
    const r = await e.render(await task({ frameMs: 1 }), { signal: new AbortController().signal })
    expect(r.outputs.map((o) => o.frame)).toEqual([1, 2])
    for (const o of r.outputs) {
      expect(new Uint8Array(await readFile(o.path))).toEqual(testFramePng('job-a', o.frame))
      expect(await isValidImage(o.path, 'PNG')).toBe(true)
    }
    expect(testFramePng('job-a', 1)).not.toEqual(testFramePng('job-b', 1))
  })

  it('fails frames and nodes on request', async () => {
    const e = createTestEngine({ nodeId: 'n1' })
    await expect(
      e.render(await task({ frameMs: 1, failFrames: [2] }), {
        signal: new AbortController().signal,
      }),
    ).rejects.toMatchObject({ code: 'ERR_RENDER_FAILED' })
    await expect(
      e.render(await task({ frameMs: 1, failOnNodes: ['n1'] }), {
        signal: new AbortController().signal,
      }),
    ).rejects.toMatchObject({ code: 'ERR_RENDER_FAILED' })
  })

  it('honours abort at once, also when hanging', async () => {
    const e = createTestEngine()
    for (const params of [{ hang: true }, { frameMs: 60_000 }]) {
      const ac = new AbortController()
      const p = e.render(await task(params), { signal: ac.signal })
      setTimeout(() => ac.abort(), 20)
      const t = performance.now()
      await expect(p).rejects.toMatchObject({ code: 'ERR_RENDER_CANCELED' })
      expect(performance.now() - t).toBeLessThan(500)
    }
  })

  it('validates params', () => {
    const e = createTestEngine()
    expect(e.validate(undefined)).toMatchObject({ frameMs: 200, hang: false })
    for (const bad of [
      { frameMs: -1 },
      { frameMs: 'x' },
      { failFrames: ['a'] },
      { nope: 1 },
      { hang: 1 },
    ]) {
      expect(() => e.validate(bad)).toThrow(expect.objectContaining({ code: 'ERR_ENGINE_PARAMS' }))
    }
  })
})
