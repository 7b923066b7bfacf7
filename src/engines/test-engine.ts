/**
 * The test engine: a stand-in renderer for lease, worker and simulator tests.
 *
 * Invariants:
 *  - A frame takes `params.frameMs` (default 200) and writes `workDir/frame_#####.png`, an
 *    8×8 PNG whose bytes depend only on (jobId, frame): `testFramePng(jobId, frame)`, so a
 *    test can check any output it receives.
 *  - `failFrames` fails a chunk that contains one of them (ERR_RENDER_FAILED) after the
 *    frames before it; `failOnNodes` fails every chunk on those node ids; `hang` never
 *    finishes until aborted. Lists may also be given as `'3,5'` (or one number), the only
 *    form a job entry can carry.
 *  - Abort rejects at once with ERR_RENDER_CANCELED. Time comes from an injected sleep,
 *    so a fake clock can drive it.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { crc32, deflateSync } from 'node:zlib'
import { sleep as realSleep } from '../util/abort.js'
import { sha256 } from '../util/hash.js'
import { validateFrames } from './blender.js'
import { frameOutputPath } from './images.js'
import { type Engine, EngineError, type RenderOutput, type ValidatedParams } from './types.js'

export const TEST_ENGINE_VERSION = '1.0.0'

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length)
  const view = new DataView(out.buffer)
  view.setUint32(0, data.length)
  out.set(new TextEncoder().encode(type), 4)
  out.set(data, 8)
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)))
  return out
}

/** A valid RGB PNG of `width`×`height` from raw rows of RGB bytes. */
export function encodePng(width: number, height: number, rgb: Uint8Array): Uint8Array {
  const raw = new Uint8Array(height * (1 + width * 3))
  for (let y = 0; y < height; y++)
    raw.set(rgb.subarray(y * width * 3, (y + 1) * width * 3), y * (1 + width * 3) + 1)
  const ihdr = new Uint8Array(13)
  const v = new DataView(ihdr.buffer)
  v.setUint32(0, width)
  v.setUint32(4, height)
  ihdr.set([8, 2, 0, 0, 0], 8)
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', new Uint8Array(deflateSync(raw, { level: 9 }))),
    chunk('IEND', new Uint8Array(0)),
  ]
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/** The exact bytes the test engine writes for (jobId, frame). */
export function testFramePng(jobId: string, frame: number): Uint8Array {
  const seed = sha256(new TextEncoder().encode(`rmesh-test-engine:${jobId}:${frame}`))
  const rgb = new Uint8Array(8 * 8 * 3)
  for (let i = 0; i < 64; i++) rgb.set(seed.subarray((i % 10) * 3, (i % 10) * 3 + 3), i * 3)
  return encodePng(8, 8, rgb)
}

export interface TestEngineOptions {
  /** This node's id, matched against `failOnNodes`. */
  nodeId?: string
  /** Injected for fake clocks; must reject when the signal aborts. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>
  name?: string
}

/** A list, or its scalar forms (job entries carry only scalar params): `3` or `'3,5'`. */
function intList(v: unknown, name: string): number[] {
  if (v === undefined) return []
  if (typeof v === 'number') v = [v]
  if (typeof v === 'string')
    v = v
      .split(',')
      .filter((x) => x.trim() !== '')
      .map(Number)
  if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x))) {
    throw new EngineError('ERR_ENGINE_PARAMS', `${name} must be a list of integers`)
  }
  return v as number[]
}

export function createTestEngine(options: TestEngineOptions = {}): Engine {
  const sleep = options.sleep ?? realSleep
  const name = options.name ?? 'test'
  const validate = (params: unknown): ValidatedParams => {
    const p = (params ?? {}) as Record<string, unknown>
    if (typeof p !== 'object' || Array.isArray(p))
      throw new EngineError('ERR_ENGINE_PARAMS', 'params must be an object')
    const allowed = ['frameMs', 'failFrames', 'failOnNodes', 'hang']
    for (const k of Object.keys(p)) {
      if (!allowed.includes(k))
        throw new EngineError('ERR_ENGINE_PARAMS', `test engine has no parameter ${k}`)
    }
    const frameMs = p.frameMs ?? 200
    if (
      typeof frameMs !== 'number' ||
      !Number.isFinite(frameMs) ||
      frameMs < 0 ||
      frameMs > 3_600_000
    ) {
      throw new EngineError(
        'ERR_ENGINE_PARAMS',
        'frameMs must be a number of milliseconds in 0..3600000',
      )
    }
    const failOnNodes =
      typeof p.failOnNodes === 'string'
        ? p.failOnNodes.split(',').filter((x) => x !== '')
        : (p.failOnNodes ?? [])
    if (!Array.isArray(failOnNodes) || !failOnNodes.every((x) => typeof x === 'string')) {
      throw new EngineError('ERR_ENGINE_PARAMS', 'failOnNodes must be a list of node ids')
    }
    if (p.hang !== undefined && typeof p.hang !== 'boolean') {
      throw new EngineError('ERR_ENGINE_PARAMS', 'hang must be true or false')
    }
    return {
      frameMs,
      failFrames: intList(p.failFrames, 'failFrames'),
      failOnNodes,
      hang: p.hang === true,
    }
  }
  return {
    name,
    async detect() {
      return [{ name, version: TEST_ENGINE_VERSION, path: 'builtin:test' }]
    },
    validate,
    async render(task, hooks) {
      const params = validate(task.params)
      const frames = validateFrames(task.frames)
      const started = performance.now()
      const workDir = resolve(task.workDir)
      await mkdir(workDir, { recursive: true })
      const logPath = join(workDir, `test-${frames[0]}-${frames[frames.length - 1]}.log`)
      const log: string[] = []
      const line = (l: string) => {
        log.push(l)
        hooks.onLog?.(l)
      }
      const jobId = task.jobId ?? task.scenePath
      const outputs: RenderOutput[] = []
      try {
        if (options.nodeId && (params.failOnNodes as string[]).includes(options.nodeId)) {
          throw new EngineError(
            'ERR_RENDER_FAILED',
            `test engine told to fail on node ${options.nodeId}`,
          )
        }
        if (params.hang) {
          line('hanging until aborted')
          await new Promise<void>((_, reject) => {
            const onAbort = () => reject(new EngineError('ERR_RENDER_CANCELED', 'render canceled'))
            if (hooks.signal.aborted) onAbort()
            hooks.signal.addEventListener('abort', onAbort, { once: true })
          })
        }
        for (const frame of frames) {
          hooks.onProgress?.({ frame, fraction: 0, message: `frame ${frame}` })
          try {
            await sleep(params.frameMs as number, hooks.signal)
          } catch {
            throw new EngineError('ERR_RENDER_CANCELED', 'render canceled')
          }
          if ((params.failFrames as number[]).includes(frame)) {
            throw new EngineError('ERR_RENDER_FAILED', `test engine told to fail frame ${frame}`)
          }
          const path = frameOutputPath(workDir, frame, 'PNG')
          await writeFile(path, testFramePng(jobId, frame))
          line(`Saved: '${path}'`)
          hooks.onProgress?.({ frame, fraction: 1, message: `saved ${path}` })
          outputs.push({ frame, path })
        }
        if (hooks.signal.aborted) throw new EngineError('ERR_RENDER_CANCELED', 'render canceled')
      } catch (err) {
        line(`error: ${(err as Error).message}`)
        await writeFile(logPath, `${log.join('\n')}\n`)
        if (err instanceof EngineError) {
          throw new EngineError(err.code, err.message, {
            details: { logPath, logTail: log.slice(-30) },
          })
        }
        throw err
      }
      await writeFile(logPath, `${log.join('\n')}\n`)
      return { outputs, logPath, renderMs: performance.now() - started }
    },
  }
}
