/**
 * The persistent render server: one Blender per scene that loads it once and renders the
 * frames it is asked for, each exactly as `blender -f N` would (blender-scripts.ts).
 *
 * Invariants: one request at a time (later ones queue); a cancel or timeout kills the
 * process group (gone within 1 s) and rejects with ERR_RENDER_CANCELED / ERR_RENDER_TIMEOUT,
 * the caller starting a new process; stale output files are removed before a request.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { Logger } from '../util/logger.js'
import { silentLogger } from '../util/logger.js'
import { type PrepareOptions, serverScript } from './blender-scripts.js'
import { frameOutputPath } from './images.js'
import type { RenderLimits } from './limits.js'
import { startProcess } from './process.js'
import { EngineError, type OutputFormat, type RenderHooks, type RenderResult } from './types.js'
import {
  checkBlendHeader,
  collectOutputs,
  DEFAULT_CHUNK_TIMEOUT_MS,
  DEFAULT_INSPECT_TIMEOUT_MS,
  frameSpec,
  missingAssetError,
  noDeviceError,
  notLoadedError,
  parseMarker,
  progressForwarder,
  spawnError,
  validateFormat,
  validateFrames,
  validateOverrides,
  blenderLimits,
} from './blender-run.js'

// ---------------------------------------------------------------------------------------
// Persistent mode

export interface PersistentBlenderOptions extends PrepareOptions {
  blender: string
  /** The whole life of the process is logged here. */
  logPath: string
  /** Time allowed to load the scene. */
  startTimeoutMs?: number
  /** Default per-request timeout. */
  timeoutMs?: number
  signal?: AbortSignal
  onSpawn?(pid: number): void
  logger?: Logger
  /** This node's render limits (threads, niceness, memory) for the process's whole life. */
  limits?: RenderLimits
}

export interface PersistentRenderRequest {
  frames: number[]
  workDir: string
  format: OutputFormat
  timeoutMs?: number
}

export interface PersistentBlender {
  readonly pid: number | undefined
  readonly scenePath: string
  /** False once the process has exited (after close, cancel, timeout or a crash). */
  alive(): boolean
  /** Renders frames in the loaded scene; one request at a time (later calls queue). */
  render(req: PersistentRenderRequest, hooks: RenderHooks): Promise<RenderResult>
  close(): Promise<void>
}

interface PendingRequest {
  id: number
  onMarker(tag: string, payload: Record<string, unknown>): void
  onLine(line: string): void
  onExit(): void
}

/**
 * Starts one Blender that loads `scenePath` once and renders frames on request. Resolves
 * when the scene is loaded and ready; a cancel or timeout of a request kills the process
 * (the caller starts a new one), exactly as a chunk render would.
 */
export async function createPersistentBlender(
  scenePath: string,
  options: PersistentBlenderOptions,
): Promise<PersistentBlender> {
  validateOverrides(options)
  const absScene = resolve(scenePath)
  await checkBlendHeader(absScene)
  const logger = options.logger ?? silentLogger
  const markers = new Map<string, unknown>()
  let pending: PendingRequest | undefined
  let exited = false
  let onReady: ((ok: boolean) => void) | undefined
  const ready = new Promise<boolean>((r) => {
    onReady = r
  })
  const lim = blenderLimits(options.limits, logger)
  const proc = startProcess({
    file: options.blender,
    limits: lim.process,
    onSkipped: lim.onSkipped,
    args: [
      ...lim.threadArgs,
      '-b',
      '--disable-autoexec',
      '--python-exit-code',
      '3',
      absScene,
      '--python-expr',
      serverScript({
        samples: options.samples,
        resolutionPercentage: options.resolutionPercentage,
        remapFile: options.remapFile,
        allowMissing: options.allowMissing,
        device: options.device,
      }),
    ],
    stdin: true,
    signal: options.signal,
    logPath: options.logPath,
    onSpawn: options.onSpawn,
    onLine: (line) => {
      const m = parseMarker(line)
      if (m) {
        markers.set(m.tag, m.payload)
        if (m.tag === 'READY') onReady?.(true)
        else if (pending && m.payload && typeof m.payload === 'object') {
          pending.onMarker(m.tag, m.payload as Record<string, unknown>)
        }
        return
      }
      pending?.onLine(line)
    },
  })
  void proc.done.then(() => {
    exited = true
    onReady?.(false)
    pending?.onExit()
  })
  const startTimer = setTimeout(
    () => proc.kill(),
    options.startTimeoutMs ?? DEFAULT_INSPECT_TIMEOUT_MS,
  )
  const ok = await ready
  clearTimeout(startTimer)
  if (!ok) {
    const outcome = await proc.done
    if (outcome.spawnError) throw spawnError(options.blender, outcome.spawnError)
    if (!markers.has('LOADED')) throw notLoadedError(absScene, outcome.tail)
    if (markers.has('MISSING')) throw missingAssetError(absScene, markers.get('MISSING'))
    if (markers.has('NODEVICE'))
      throw noDeviceError(options.blender, options.device, options.logPath)
    if (options.signal?.aborted)
      throw new EngineError('ERR_RENDER_CANCELED', 'persistent Blender canceled')
    throw new EngineError('ERR_RENDER_FAILED', `persistent Blender did not start on ${absScene}`, {
      details: { logTail: outcome.tail },
    })
  }
  logger.debug('persistent blender ready', { scenePath: absScene, pid: proc.pid })

  let nextId = 1
  let queue: Promise<unknown> = Promise.resolve()

  const renderOne = async (
    req: PersistentRenderRequest,
    hooks: RenderHooks,
  ): Promise<RenderResult> => {
    const frames = validateFrames(req.frames)
    const format = validateFormat(req.format)
    if (exited) throw new EngineError('ERR_RENDER_FAILED', 'the persistent Blender has exited')
    if (hooks.signal.aborted) throw new EngineError('ERR_RENDER_CANCELED', 'render canceled')
    const workDir = resolve(req.workDir)
    await mkdir(workDir, { recursive: true })
    for (const f of frames) await rm(frameOutputPath(workDir, f, format), { force: true })
    const logPath = join(workDir, `blender-${frames[0]}-${frames[frames.length - 1]}.log`)
    const chunkLog: string[] = []
    const id = nextId++
    let lastFrame = frames[0]
    const forward = progressForwarder(hooks, () => lastFrame)
    const started = performance.now()
    const timeoutMs = req.timeoutMs ?? options.timeoutMs ?? DEFAULT_CHUNK_TIMEOUT_MS
    let timedOut = false
    const result = await new Promise<{ error?: string; exited?: boolean }>((resolveReq) => {
      const finish = (r: { error?: string; exited?: boolean }) => {
        clearTimeout(timer)
        hooks.signal.removeEventListener('abort', onAbort)
        pending = undefined
        resolveReq(r)
      }
      const onAbort = () => proc.kill()
      const timer = setTimeout(() => {
        timedOut = true
        proc.kill()
      }, timeoutMs)
      hooks.signal.addEventListener('abort', onAbort, { once: true })
      pending = {
        id,
        onLine: (line) => {
          chunkLog.push(line)
          const fra = /^Fra:(\d+)/.exec(line)
          if (fra) lastFrame = Number(fra[1])
          forward(line)
        },
        onMarker: (tag, payload) => {
          if (payload.id !== id) return
          if (tag === 'SAVED') {
            chunkLog.push(`Saved: '${String(payload.path)}'`)
            hooks.onProgress?.({
              frame: Number(payload.frame),
              fraction: 1,
              message: `saved ${String(payload.path)}`,
            })
          } else if (tag === 'DONE') finish({})
          else if (tag === 'ERROR') finish({ error: String(payload.error) })
        },
        onExit: () => finish({ exited: true }),
      }
      proc.write(`${JSON.stringify({ id, frames, out: join(workDir, 'frame_#####'), format })}\n`)
    })
    await writeFile(logPath, `${chunkLog.join('\n')}\n`)
    const renderMs = performance.now() - started
    const details = { scenePath: absScene, frames, logPath, logTail: chunkLog.slice(-30) }
    if (hooks.signal.aborted)
      throw new EngineError('ERR_RENDER_CANCELED', 'render canceled', { details })
    if (timedOut) {
      throw new EngineError(
        'ERR_RENDER_TIMEOUT',
        `render of frames ${frameSpec(frames)} took over ${timeoutMs} ms`,
        {
          details,
        },
      )
    }
    if (result.exited) {
      throw new EngineError(
        'ERR_RENDER_FAILED',
        'the persistent Blender exited during the render',
        { details },
      )
    }
    if (result.error) {
      throw new EngineError('ERR_RENDER_FAILED', `Blender failed: ${result.error}`, { details })
    }
    const { outputs, bad } = await collectOutputs(workDir, frames, format)
    if (bad.length > 0) {
      throw new EngineError(
        'ERR_RENDER_FAILED',
        `frame(s) ${frameSpec(bad)} missing or invalid: see ${logPath}`,
        {
          details: { ...details, badFrames: bad },
        },
      )
    }
    return { outputs, logPath, renderMs }
  }

  return {
    pid: proc.pid,
    scenePath: absScene,
    alive: () => !exited,
    render(req, hooks) {
      const run = queue.then(() => renderOne(req, hooks))
      queue = run.catch(() => undefined)
      return run
    },
    async close() {
      if (!exited) {
        proc.write(`${JSON.stringify({ cmd: 'quit' })}\n`)
        const t = setTimeout(() => proc.kill(), 2_000)
        await proc.done
        clearTimeout(t)
      }
    },
  }
}
