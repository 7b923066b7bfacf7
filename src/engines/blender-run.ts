/**
 * Running Blender on a scene and reading what it says: the .blend header check, the
 * `RMESH_*` markers of rmesh's scripts, the typed errors of a run, script runs (inspect,
 * pack, and the tracer in blender-deps.ts), Blender's progress lines, and the checks and
 * output collection every render shares (blender.ts, blender-persistent.ts).
 *
 * Invariants:
 *  - Blender always runs with an argv array, `-b` and `--disable-autoexec` (a scene from
 *    a peer never runs its own Python);
 *  - anything that is not a .blend is refused before Blender starts (ERR_SCENE_INVALID);
 *    a scene Blender cannot load is ERR_SCENE_INVALID, missing files ERR_SCENE_MISSING_ASSET;
 *  - a render's outputs count only when every expected file is a complete image.
 */
import { open, stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { inspectScript, packScript } from './blender-scripts.js'
import { frameOutputPath, isValidImage } from './images.js'
import type { Logger } from '../util/logger.js'
import type { ProcessLimits, RenderLimits } from './limits.js'
import { type RunningProcess, startProcess } from './process.js'
import {
  EngineError,
  OUTPUT_FORMATS,
  type OutputFormat,
  type RenderHooks,
  type RenderOutput,
  type RenderProgress,
  type RenderTask,
  type SceneInfo,
} from './types.js'

export const MAX_FRAME = 1_048_574
export const DEFAULT_CHUNK_TIMEOUT_MS = 60 * 60_000
export const DEFAULT_INSPECT_TIMEOUT_MS = 120_000

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

export function parseMarker(line: string): { tag: string; payload: unknown } | undefined {
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

export function missingAssetError(scenePath: string, missing: unknown): EngineError {
  const list = Array.isArray(missing) ? missing : []
  const paths = list.map((f) => (f as { path?: string }).path).filter(Boolean)
  return new EngineError(
    'ERR_SCENE_MISSING_ASSET',
    `${scenePath} uses ${paths.length} file(s) that do not exist: ${paths.join(', ')}. ` +
      'Submit again from the machine that has them (they travel with the job), or with --allow-missing',
    { details: { scenePath, missing: list } },
  )
}

/** The job's device is not there (drivers changed since detection, or a stale presence). */
export function noDeviceError(
  blender: string,
  device: string | undefined,
  logPath: string,
): EngineError {
  return new EngineError(
    'ERR_RENDER_FAILED',
    `${blender} found no ${device} device on this node although it was detected before (drivers changed?); run "rmesh node detect" to detect devices again: see ${logPath}`,
    { details: { device, logPath } },
  )
}

export function notLoadedError(scenePath: string, tail: string[]): EngineError {
  return new EngineError(
    'ERR_SCENE_INVALID',
    `Blender could not load ${scenePath} (corrupt or truncated .blend?): re-save it in Blender`,
    { details: { scenePath, logTail: tail } },
  )
}

export function spawnError(file: string, err: Error): EngineError {
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
    args: backgroundArgs(scenePath, script),
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

export function validateOverrides(
  task: Pick<RenderTask, 'samples' | 'resolutionPercentage'>,
): void {
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
/**
 * Blender in the background on `scenePath` with `script` run first: never the scene's own
 * scripts (--disable-autoexec), and a failing script exits 3 (--python-exit-code).
 */
export function backgroundArgs(scenePath: string, script: string): string[] {
  return ['-b', '--disable-autoexec', '--python-exit-code', '3', scenePath, '--python-expr', script]
}

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

export function progressForwarder(
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

export async function collectOutputs(
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

/**
 * The node's render limits as Blender flags and process limits. `-t` goes before the scene
 * (Blender reads it in its settings pass, wherever it stands; a persistent Blender's server
 * script never returns, so nothing after it would be read).
 */
export function blenderLimits(
  limits: RenderLimits | undefined,
  logger: Logger,
): { threadArgs: string[]; process: ProcessLimits; onSkipped(what: string[]): void } {
  return {
    threadArgs: limits?.threads ? ['-t', String(limits.threads)] : [],
    process: {
      nice: limits?.nice,
      memoryBytes: limits?.memoryMiB === undefined ? undefined : limits.memoryMiB * 1024 * 1024,
    },
    onSkipped: (what) => logger.warn('render limits not applied', { skipped: what }),
  }
}
