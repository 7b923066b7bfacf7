/**
 * Blender: detection of installed versions, chunk renders (one process per chunk) and the
 * engine (inspection, packing and dependency tracing run through blender-run.ts and
 * blender-deps.ts; the persistent render server is blender-persistent.ts).
 *
 * Invariants:
 *  - Blender always runs with an argv array, `-b` and `--disable-autoexec` (a scene from
 *    a peer never runs its own Python), and rmesh's setup script sets the device (the job's,
 *    else the scene's with a CPU fallback), denoising off and the sample/resolution
 *    overrides before any frame renders; a job's device this Blender lacks fails the chunk
 *    with ERR_RENDER_FAILED before any frame (RMESH_NODEVICE).
 *  - Detection finds every Blender: on PATH, configured paths, and `<releasesDir>/*\/blender`
 *    (unpacked release folders), deduplicated by real path, newest first.
 *  - A render succeeds only when every expected file `workDir/frame_#####.<ext>` exists
 *    and is a complete image; stale files of the same names are removed before the run.
 *  - Cancel and timeout kill Blender's process group (gone within 1 s) and reject with
 *    ERR_RENDER_CANCELED / ERR_RENDER_TIMEOUT. Missing external files fail the render
 *    with ERR_SCENE_MISSING_ASSET before any frame is rendered (the artist would
 *    otherwise get pink frames); a file Blender cannot load is ERR_SCENE_INVALID.
 */
import { mkdir, readdir, realpath, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { Logger } from '../util/logger.js'
import { silentLogger } from '../util/logger.js'
import { renderSetupScript } from './blender-scripts.js'
import { frameOutputPath } from './images.js'
import type { RenderLimits } from './limits.js'
import { findOnPath, runCapture, startProcess } from './process.js'
import {
  type DependencyTrace,
  type Engine,
  EngineError,
  type EngineVersion,
  type RenderHooks,
  type RenderResult,
  type RenderTask,
  type SceneInfo,
  type ValidatedParams,
} from './types.js'
import { compareVersions } from './version.js'
import { traceDependencies } from './blender-deps.js'
import {
  checkBlendHeader,
  collectOutputs,
  DEFAULT_CHUNK_TIMEOUT_MS,
  frameSpec,
  inspectScene,
  missingAssetError,
  noDeviceError,
  backgroundArgs,
  blenderLimits,
  notLoadedError,
  packScene,
  parseMarker,
  progressForwarder,
  spawnError,
  validateFormat,
  validateFrames,
  validateOverrides,
} from './blender-run.js'
import { createPersistentBlender, type PersistentBlender } from './blender-persistent.js'

export {
  checkBlendHeader,
  frameSpec,
  inspectScene,
  MAX_FRAME,
  packScene,
  parseBlenderLine,
  runScript,
  validateFormat,
  validateFrames,
} from './blender-run.js'
export {
  createPersistentBlender,
  type PersistentBlender,
  type PersistentBlenderOptions,
  type PersistentRenderRequest,
} from './blender-persistent.js'

// ---------------------------------------------------------------------------------------
// Detection

/** `Blender 3.4.1` (first line of `blender --version`) → `3.4.1`. */
export function parseBlenderVersion(stdout: string): string | undefined {
  const m = /^Blender (\d+\.\d+(?:\.\d+)?)/m.exec(stdout)
  return m?.[1]
}

/** `<dir>/*\/blender`: the executables of unpacked Blender releases, by folder name. */
export async function releaseExecutables(dir: string | undefined): Promise<string[]> {
  if (!dir) return []
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => [])
  return entries
    .filter((e) => e.isDirectory() || e.isSymbolicLink())
    .map((e) => join(dir, e.name, 'blender'))
    .sort()
}

/**
 * Every installed Blender: `blender` on PATH, the configured executables, and the unpacked
 * releases in `releasesDir`, deduplicated by real path, newest first. Executables that do
 * not answer `--version` are skipped.
 */
export async function detectBlender(
  options: {
    paths?: string[]
    releasesDir?: string
    searchPath?: boolean
    signal?: AbortSignal
  } = {},
): Promise<EngineVersion[]> {
  const candidates = [
    ...(options.searchPath === false ? [] : await findOnPath('blender')),
    ...(options.paths ?? []),
    ...(await releaseExecutables(options.releasesDir)),
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

export interface ChunkRenderOptions {
  blender: string
  timeoutMs?: number
  /** This node's render limits (threads, niceness, memory), read as the render starts. */
  limits?: RenderLimits
  logger?: Logger
}

/** Renders a chunk with one Blender process. */
export async function renderChunk(
  options: ChunkRenderOptions,
  task: RenderTask,
  hooks: RenderHooks,
): Promise<RenderResult> {
  try {
    return await renderChunkOnce(options, task, hooks)
  } catch (err) {
    const mib = options.limits?.memoryMiB
    // Under a memory ceiling Blender's failures look like anything (a library that cannot
    // be mapped reads as a scene that does not load): say which limit may be the cause.
    if (mib === undefined || !(err instanceof EngineError) || err.code === 'ERR_RENDER_CANCELED')
      throw err
    throw new EngineError(
      err.code,
      `${err.message} (this node caps each render at ${mib} MiB of address space, which may be the cause: raise it with rmesh node limits --memory, or clear it with --memory none)`,
      { cause: err, details: { ...err.details, memoryMiB: mib } },
    )
  }
}

async function renderChunkOnce(
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
  const lim = blenderLimits(options.limits, options.logger ?? silentLogger)
  const args = [
    ...lim.threadArgs,
    ...backgroundArgs(
      scenePath,
      renderSetupScript({
        samples: task.samples,
        resolutionPercentage: task.resolutionPercentage,
        ...task.tree,
        device: task.device,
      }),
    ),
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
    limits: lim.process,
    onSkipped: lim.onSkipped,
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
  if (markers.has('NODEVICE')) throw noDeviceError(options.blender, task.device, logPath)
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
// The engine

export interface BlenderEngineOptions {
  /** Configured Blender executables, in addition to `blender` on PATH. */
  paths?: string[]
  /** A folder of unpacked Blender releases: each `<dir>/<release>/blender` is detected. */
  releasesDir?: string
  searchPath?: boolean
  /** Default per-chunk timeout (1 h). */
  timeoutMs?: number
  logger?: Logger
  /** This node's render limits, read as each render (or persistent Blender) starts. */
  limits?: () => RenderLimits
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

  // Each detect() looks again (start, `rmesh node detect`); executable() uses the last one.
  const detect = () => {
    detected = detectBlender({
      paths: options.paths,
      releasesDir: options.releasesDir,
      searchPath: options.searchPath,
    })
    return detected
  }
  const executable = async (version?: string): Promise<string> => {
    const all = await (detected ?? detect())
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
      task.device,
      // New limits apply from the next Blender started.
      options.limits?.(),
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
      device: task.device,
      logPath: join(resolve(task.workDir), 'blender-persistent.log'),
      timeoutMs: options.timeoutMs,
      onSpawn: undefined,
      logger,
      limits: options.limits?.(),
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
        return renderChunk(
          { blender, timeoutMs: options.timeoutMs, limits: options.limits?.(), logger },
          task,
          hooks,
        )
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
