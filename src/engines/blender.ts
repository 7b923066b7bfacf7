/**
 * Blender: detection of installed versions, scene inspection, packing, chunk renders
 * (one process per chunk) and the persistent render server (one process per scene).
 *
 * Invariants:
 *  - Blender always runs with an argv array, `-b` and `--disable-autoexec` (a scene from
 *    a peer never runs its own Python), and rmesh's setup script forces CPU, denoising off
 *    and the sample/resolution overrides before any frame renders.
 *  - A render succeeds only when every expected file `workDir/frame_#####.<ext>` exists
 *    and is a complete image; stale files of the same names are removed before the run.
 *  - Cancel and timeout kill Blender's process group (gone within 1 s) and reject with
 *    ERR_RENDER_CANCELED / ERR_RENDER_TIMEOUT. Missing external files fail the render
 *    with ERR_SCENE_MISSING_ASSET before any frame is rendered (the artist would
 *    otherwise get pink frames); a file Blender cannot load is ERR_SCENE_INVALID.
 */
import { mkdir, open, realpath, rm, stat, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { Logger } from '../util/logger.js'
import { silentLogger } from '../util/logger.js'
import {
  inspectScript,
  packScript,
  type PrepareOptions,
  renderSetupScript,
  serverScript,
} from './blender-scripts.js'
import { traceDependencies } from './blender-deps.js'
import { frameOutputPath, isValidImage } from './images.js'
import { findOnPath, type RunningProcess, runCapture, startProcess } from './process.js'
import {
  type DependencyTrace,
  type Engine,
  EngineError,
  type EngineVersion,
  OUTPUT_FORMATS,
  type OutputFormat,
  type RenderHooks,
  type RenderOutput,
  type RenderProgress,
  type RenderResult,
  type RenderTask,
  type SceneInfo,
  type ValidatedParams,
} from './types.js'
import { compareVersions } from './version.js'

export const MAX_FRAME = 1_048_574
const DEFAULT_CHUNK_TIMEOUT_MS = 60 * 60_000
const DEFAULT_INSPECT_TIMEOUT_MS = 120_000

// ---------------------------------------------------------------------------------------
// Detection

/** `Blender 3.4.1` (first line of `blender --version`) → `3.4.1`. */
export function parseBlenderVersion(stdout: string): string | undefined {
  const m = /^Blender (\d+\.\d+(?:\.\d+)?)/m.exec(stdout)
  return m?.[1]
}

/**
 * Every installed Blender: `blender` on PATH plus the configured executables, deduplicated
 * by real path, newest first. Executables that do not answer `--version` are skipped.
 */
export async function detectBlender(
  options: { paths?: string[]; searchPath?: boolean; signal?: AbortSignal } = {},
): Promise<EngineVersion[]> {
  const candidates = [
    ...(options.searchPath === false ? [] : await findOnPath('blender')),
    ...(options.paths ?? []),
  ]
  const seen = new Set<string>()
  const out: EngineVersion[] = []
  for (const c of candidates) {
    let real: string
    try {
      real = await realpath(c)
    } catch {
      continue
    }
    if (seen.has(real)) continue
    seen.add(real)
    const { stdout, outcome } = await runCapture(c, ['--version'], {
      signal: options.signal,
      timeoutMs: 30_000,
    })
    const version = parseBlenderVersion(stdout)
    if (outcome.exitCode === 0 && version) out.push({ name: 'blender', version, path: c })
  }
  return out.sort((a, b) => compareVersions(b.version, a.version))
}

// ---------------------------------------------------------------------------------------
// Scene files

const BLEND_MAGICS: number[][] = [
  [...'BLENDER'].map((c) => c.charCodeAt(0)),
  [0x1f, 0x8b], // gzip-compressed .blend (Blender < 3.0)
  [0x28, 0xb5, 0x2f, 0xfd], // zstd-compressed .blend (Blender >= 3.0)
]

/** Refuses, before launching Blender, anything that is not a .blend file. */
export async function checkBlendHeader(scenePath: string): Promise<void> {
  let head: Uint8Array
  try {
    const fh = await open(scenePath, 'r')
    try {
      head = new Uint8Array(12)
      const { bytesRead } = await fh.read(head, 0, 12, 0)
      head = head.subarray(0, bytesRead)
    } finally {
      await fh.close()
    }
  } catch (err) {
    throw new EngineError('ERR_SCENE_INVALID', `cannot read scene ${scenePath}: check the path`, {
      cause: err,
      details: { scenePath },
    })
  }
  if (!BLEND_MAGICS.some((m) => m.every((b, i) => head[i] === b))) {
    throw new EngineError(
      'ERR_SCENE_INVALID',
      `${scenePath} is not a Blender file (no .blend header): submit the .blend saved by Blender`,
      { details: { scenePath } },
    )
  }
}

const MARKER = /^RMESH_([A-Z]+)(?: (.*))?$/

function parseMarker(line: string): { tag: string; payload: unknown } | undefined {
  const m = MARKER.exec(line)
  if (!m) return undefined
  let payload: unknown
  if (m[2] !== undefined) {
    try {
      payload = JSON.parse(m[2])
    } catch {
      return undefined
    }
  }
  return { tag: m[1], payload }
}

function missingAssetError(scenePath: string, missing: unknown): EngineError {
  const list = Array.isArray(missing) ? missing : []
  const paths = list.map((f) => (f as { path?: string }).path).filter(Boolean)
  return new EngineError(
    'ERR_SCENE_MISSING_ASSET',
    `${scenePath} uses ${paths.length} file(s) that do not exist: ${paths.join(', ')}. ` +
      'Submit again from the machine that has them (they travel with the job), or with --allow-missing',
    { details: { scenePath, missing: list } },
  )
}

function notLoadedError(scenePath: string, tail: string[]): EngineError {
  return new EngineError(
    'ERR_SCENE_INVALID',
    `Blender could not load ${scenePath} (corrupt or truncated .blend?): re-save it in Blender`,
    { details: { scenePath, logTail: tail } },
  )
}

function spawnError(file: string, err: Error): EngineError {
  return new EngineError(
    'ERR_ENGINE_NOT_FOUND',
    `cannot run ${file}: install it or configure its path`,
    {
      cause: err,
      details: { file },
    },
  )
}

interface ScriptRun {
  markers: Map<string, unknown>
  outcome: Awaited<RunningProcess['done']>
}

export async function runScript(
  blender: string,
  scenePath: string,
  script: string,
  options: { signal?: AbortSignal; timeoutMs?: number; logPath?: string },
): Promise<ScriptRun> {
  await checkBlendHeader(scenePath)
  const markers = new Map<string, unknown>()
  const p = startProcess({
    file: blender,
    args: [
      '-b',
      '--disable-autoexec',
      '--python-exit-code',
      '3',
      scenePath,
      '--python-expr',
      script,
    ],
    signal: options.signal,
    timeoutMs: options.timeoutMs ?? DEFAULT_INSPECT_TIMEOUT_MS,
    logPath: options.logPath,
    onLine: (line) => {
      const m = parseMarker(line)
      if (m) markers.set(m.tag, m.payload)
    },
  })
  const outcome = await p.done
  if (outcome.spawnError) throw spawnError(blender, outcome.spawnError)
  if (outcome.canceled) throw new EngineError('ERR_RENDER_CANCELED', 'Blender was canceled')
  if (outcome.timedOut) {
    throw new EngineError('ERR_RENDER_TIMEOUT', `Blender did not finish on ${scenePath} in time`)
  }
  if (!markers.has('LOADED')) throw notLoadedError(scenePath, outcome.tail)
  if (markers.has('MISSING')) throw missingAssetError(scenePath, markers.get('MISSING'))
  return { markers, outcome }
}

/** Reads a scene's metadata with Blender in the background. */
export async function inspectScene(
  blender: string,
  scenePath: string,
  options: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<SceneInfo> {
  const { markers, outcome } = await runScript(
    blender,
    resolve(scenePath),
    inspectScript(),
    options,
  )
  const info = markers.get('JSON') as SceneInfo | undefined
  if (!info || typeof info !== 'object') {
    throw new EngineError('ERR_SCENE_INVALID', `Blender gave no metadata for ${scenePath}`, {
      details: { logTail: outcome.tail },
    })
  }
  return info
}

/**
 * Packs every external file of `src` into a copy at `dest` with Blender's own packing.
 * Fails with ERR_SCENE_MISSING_ASSET when a referenced file does not exist.
 */
export async function packScene(
  blender: string,
  src: string,
  dest: string,
  options: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<{ dest: string; unpacked: string[] }> {
  const absDest = resolve(dest)
  const { markers, outcome } = await runScript(blender, resolve(src), packScript(absDest), options)
  const packed = markers.get('PACKED') as { unpacked?: { path: string }[] } | undefined
  if (!packed || !(await isFile(absDest))) {
    throw new EngineError('ERR_RENDER_FAILED', `Blender could not pack ${src} into ${dest}`, {
      details: { logTail: outcome.tail },
    })
  }
  return { dest: absDest, unpacked: (packed.unpacked ?? []).map((f) => f.path) }
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile()
  } catch {
    return false
  }
}

// ---------------------------------------------------------------------------------------
// Progress

const MEM_UNITS: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 }

/** What one line of Blender's render output says, if anything. */
export function parseBlenderLine(
  line: string,
): (Partial<RenderProgress> & { saved?: string }) | undefined {
  const saved = /^Saved: '(.*)'/.exec(line)
  if (saved) return { saved: saved[1], message: 'saved' }
  const fra = /^Fra:(\d+)\b/.exec(line)
  if (!fra) return undefined
  const out: Partial<RenderProgress> = { frame: Number(fra[1]) }
  const mem = /\bMem:([\d.]+)([KMG])/.exec(line)
  if (mem) out.memory = Math.round(Number(mem[1]) * MEM_UNITS[mem[2]])
  const sample = /\bSample (\d+)\/(\d+)/.exec(line)
  if (sample) {
    const done = Number(sample[1])
    const total = Number(sample[2])
    out.samples = { done, total }
    if (total > 0) out.fraction = Math.min(1, done / total)
  }
  const parts = line.split('|')
  out.message = parts[parts.length - 1].trim()
  return out
}

// ---------------------------------------------------------------------------------------
// Chunk render

export function validateFrames(frames: unknown): number[] {
  if (!Array.isArray(frames) || frames.length === 0) {
    throw new EngineError('ERR_ENGINE_PARAMS', 'a render needs at least one frame')
  }
  for (const f of frames) {
    if (!Number.isInteger(f) || f < 0 || f > MAX_FRAME) {
      throw new EngineError('ERR_ENGINE_PARAMS', `frame ${String(f)} is not in 0..${MAX_FRAME}`)
    }
  }
  return [...new Set(frames as number[])].sort((a, b) => a - b)
}

export function validateFormat(format: unknown): OutputFormat {
  if (!OUTPUT_FORMATS.includes(format as OutputFormat)) {
    throw new EngineError(
      'ERR_ENGINE_PARAMS',
      `output format ${String(format)} is not one of ${OUTPUT_FORMATS.join(', ')}`,
    )
  }
  return format as OutputFormat
}

function validateOverrides(task: Pick<RenderTask, 'samples' | 'resolutionPercentage'>): void {
  if (
    task.samples !== undefined &&
    (!Number.isInteger(task.samples) || task.samples < 1 || task.samples > 1 << 24)
  ) {
    throw new EngineError('ERR_ENGINE_PARAMS', `samples ${task.samples} is not a positive integer`)
  }
  const pct = task.resolutionPercentage
  if (pct !== undefined && (!Number.isInteger(pct) || pct < 1 || pct > 1000)) {
    throw new EngineError('ERR_ENGINE_PARAMS', `resolution percentage ${pct} is not in 1..1000`)
  }
}

/** `[1,2,3,7]` → `1..3,7` (Blender's -f syntax). */
export function frameSpec(frames: number[]): string {
  const parts: string[] = []
  let i = 0
  while (i < frames.length) {
    let j = i
    while (j + 1 < frames.length && frames[j + 1] === frames[j] + 1) j++
    parts.push(j > i ? `${frames[i]}..${frames[j]}` : `${frames[i]}`)
    i = j + 1
  }
  return parts.join(',')
}

function progressForwarder(
  hooks: Pick<RenderHooks, 'onProgress' | 'onLog'>,
  fallbackFrame: () => number,
) {
  return (line: string) => {
    hooks.onLog?.(line)
    if (!hooks.onProgress) return
    const p = parseBlenderLine(line)
    if (!p) return
    const frame = p.frame ?? fallbackFrame()
    hooks.onProgress({ ...p, frame, message: p.saved ? `saved ${p.saved}` : (p.message ?? '') })
  }
}

async function collectOutputs(
  workDir: string,
  frames: number[],
  format: OutputFormat,
): Promise<{ outputs: RenderOutput[]; bad: number[] }> {
  const outputs: RenderOutput[] = []
  const bad: number[] = []
  for (const frame of frames) {
    const path = frameOutputPath(workDir, frame, format)
    if (await isValidImage(path, format)) outputs.push({ frame, path })
    else bad.push(frame)
  }
  return { outputs, bad }
}

export interface ChunkRenderOptions {
  blender: string
  timeoutMs?: number
}

/** Renders a chunk with one Blender process. */
export async function renderChunk(
  options: ChunkRenderOptions,
  task: RenderTask,
  hooks: RenderHooks,
): Promise<RenderResult> {
  const frames = validateFrames(task.frames)
  const format = validateFormat(task.format)
  validateOverrides(task)
  if (hooks.signal.aborted) throw new EngineError('ERR_RENDER_CANCELED', 'render canceled')
  const scenePath = resolve(task.scenePath)
  await checkBlendHeader(scenePath)
  const workDir = resolve(task.workDir)
  await mkdir(workDir, { recursive: true })
  for (const f of frames) await rm(frameOutputPath(workDir, f, format), { force: true })
  const logPath = join(workDir, `blender-${frames[0]}-${frames[frames.length - 1]}.log`)
  const args = [
    '-b',
    '--disable-autoexec',
    '--python-exit-code',
    '3',
    scenePath,
    '--python-expr',
    renderSetupScript({
      samples: task.samples,
      resolutionPercentage: task.resolutionPercentage,
      ...task.tree,
    }),
    '-o',
    join(workDir, 'frame_#####'),
    '-F',
    format,
    '-f',
    frameSpec(frames),
  ]
  await writeFile(
    logPath,
    `# ${options.blender} ${args.filter((a) => !a.includes('\n')).join(' ')}\n`,
  )
  const markers = new Map<string, unknown>()
  let lastFrame = frames[0]
  const forward = progressForwarder(hooks, () => lastFrame)
  const started = performance.now()
  const timeoutMs = task.timeoutMs ?? options.timeoutMs ?? DEFAULT_CHUNK_TIMEOUT_MS
  const p = startProcess({
    file: options.blender,
    args,
    cwd: workDir,
    signal: hooks.signal,
    timeoutMs,
    logPath,
    onSpawn: hooks.onSpawn,
    onLine: (line) => {
      const m = parseMarker(line)
      if (m) markers.set(m.tag, m.payload)
      const fra = /^Fra:(\d+)/.exec(line)
      if (fra) lastFrame = Number(fra[1])
      forward(line)
    },
  })
  const outcome = await p.done
  const renderMs = performance.now() - started
  const details = { scenePath, frames, exitCode: outcome.exitCode, logPath, logTail: outcome.tail }
  if (outcome.spawnError) throw spawnError(options.blender, outcome.spawnError)
  if (outcome.canceled) throw new EngineError('ERR_RENDER_CANCELED', 'render canceled', { details })
  if (outcome.timedOut) {
    throw new EngineError(
      'ERR_RENDER_TIMEOUT',
      `render of frames ${frameSpec(frames)} took over ${timeoutMs} ms`,
      {
        details,
      },
    )
  }
  if (!markers.has('LOADED')) throw notLoadedError(scenePath, outcome.tail)
  if (markers.has('MISSING')) throw missingAssetError(scenePath, markers.get('MISSING'))
  const { outputs, bad } = await collectOutputs(workDir, frames, format)
  if (bad.length > 0 || outcome.exitCode !== 0) {
    throw new EngineError(
      'ERR_RENDER_FAILED',
      `Blender exited with ${outcome.exitCode ?? outcome.signal} and ${bad.length} of ${frames.length} ` +
        `frame(s) missing or invalid (${frameSpec(bad) || 'none'}): see ${logPath}`,
      { details: { ...details, badFrames: bad } },
    )
  }
  return { outputs, logPath, renderMs }
}

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
  const proc = startProcess({
    file: options.blender,
    args: [
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

// ---------------------------------------------------------------------------------------
// The engine

export interface BlenderEngineOptions {
  /** Configured Blender executables, in addition to `blender` on PATH. */
  paths?: string[]
  searchPath?: boolean
  /** Default per-chunk timeout (1 h). */
  timeoutMs?: number
  logger?: Logger
}

export interface BlenderEngine extends Engine {
  readonly name: 'blender'
  inspect(scenePath: string, options: { signal: AbortSignal }): Promise<SceneInfo>
  packScene(
    src: string,
    dest: string,
    options: { signal: AbortSignal },
  ): Promise<{ dest: string; unpacked: string[] }>
  traceDependencies(
    scenePath: string,
    options: { root: string; signal: AbortSignal },
  ): Promise<DependencyTrace>
  /** The executable for `version` (default: the newest installed). */
  executable(version?: string): Promise<string>
  close(): Promise<void>
}

export function createBlenderEngine(options: BlenderEngineOptions = {}): BlenderEngine {
  const logger = options.logger ?? silentLogger
  let detected: Promise<EngineVersion[]> | undefined
  const persistent = new Map<string, Promise<PersistentBlender>>()

  const detect = () => {
    detected ??= detectBlender({ paths: options.paths, searchPath: options.searchPath })
    return detected
  }
  const executable = async (version?: string): Promise<string> => {
    const all = await detect()
    const pick = version === undefined ? all[0] : all.find((v) => v.version === version)
    if (!pick) {
      throw new EngineError(
        'ERR_ENGINE_NOT_FOUND',
        version === undefined
          ? 'Blender is not installed: install it or add its path to the config file'
          : `Blender ${version} is not installed here (found: ${all.map((v) => v.version).join(', ') || 'none'})`,
      )
    }
    return pick.path
  }

  const persistentFor = async (blender: string, task: RenderTask): Promise<PersistentBlender> => {
    const key = JSON.stringify([
      blender,
      resolve(task.scenePath),
      task.samples,
      task.resolutionPercentage,
      task.tree?.remapFile,
      task.tree?.allowMissing,
    ])
    const existing = persistent.get(key)
    if (existing) {
      const pb = await existing.catch(() => undefined)
      if (pb?.alive()) return pb
      persistent.delete(key)
    }
    // Other scenes' servers are closed: a node renders one job's frames at a time.
    for (const [k, p] of persistent) {
      persistent.delete(k)
      void p.then((pb) => pb.close()).catch(() => undefined)
    }
    await mkdir(resolve(task.workDir), { recursive: true })
    const created = createPersistentBlender(task.scenePath, {
      blender,
      samples: task.samples,
      resolutionPercentage: task.resolutionPercentage,
      ...task.tree,
      logPath: join(resolve(task.workDir), 'blender-persistent.log'),
      timeoutMs: options.timeoutMs,
      onSpawn: undefined,
      logger,
    })
    persistent.set(key, created)
    created.catch(() => persistent.delete(key))
    return created
  }

  return {
    name: 'blender',
    detect,
    executable,
    async inspect(scenePath, o) {
      return inspectScene(await executable(), scenePath, { signal: o.signal })
    },
    async packScene(src, dest, o) {
      return packScene(await executable(), src, dest, { signal: o.signal })
    },
    async traceDependencies(scenePath, o) {
      return traceDependencies(await executable(), scenePath, o)
    },
    validate(params: unknown): ValidatedParams {
      if (params === undefined || params === null) return {}
      if (typeof params !== 'object' || Array.isArray(params) || Object.keys(params).length > 0) {
        throw new EngineError('ERR_ENGINE_PARAMS', 'the blender engine takes no parameters')
      }
      return {}
    },
    async render(task, hooks) {
      const blender = await executable(task.engineVersion)
      if (!task.persistent)
        return renderChunk({ blender, timeoutMs: options.timeoutMs }, task, hooks)
      validateOverrides(task)
      const pb = await persistentFor(blender, task)
      if (pb.pid !== undefined) hooks.onSpawn?.(pb.pid)
      return pb.render(
        {
          frames: task.frames,
          workDir: task.workDir,
          format: task.format,
          timeoutMs: task.timeoutMs,
        },
        hooks,
      )
    },
    async close() {
      const all = [...persistent.values()]
      persistent.clear()
      await Promise.all(all.map((p) => p.then((pb) => pb.close()).catch(() => undefined)))
    },
  }
}
