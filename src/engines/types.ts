/**
 * The engine interface every renderer implements (Blender, templated engines, the test
 * engine), and the typed errors they raise.
 *
 * Invariants:
 *  - `validate` runs before anything is launched and throws ERR_ENGINE_PARAMS; `render`
 *    only ever receives validated params.
 *  - `render` resolves only when every requested frame has a valid output file on disk;
 *    anything else rejects with one of the ENGINE_ERROR_CODES below (never a bare Error).
 *  - When `hooks.signal` aborts, the child process tree is gone within 1 s and `render`
 *    rejects with ERR_RENDER_CANCELED.
 *  - Child processes are launched with an argument vector, never through a shell.
 */
import type { DeviceRequest } from '../jobs/devices.js'
import { RmeshError } from '../util/errors.js'

export const ENGINE_ERROR_CODES = [
  'ERR_ENGINE_NOT_FOUND',
  'ERR_ENGINE_CONFIG',
  'ERR_ENGINE_PARAMS',
  'ERR_SCENE_INVALID',
  'ERR_SCENE_MISSING_ASSET',
  'ERR_RENDER_FAILED',
  'ERR_RENDER_TIMEOUT',
  'ERR_RENDER_CANCELED',
  'ERR_ENCODE_FAILED',
  'ERR_ENCODER_MISSING',
] as const
export type EngineErrorCode = (typeof ENGINE_ERROR_CODES)[number]

/** Every engine failure; branch on `code`. `details.logTail` carries the last log lines. */
export class EngineError extends RmeshError {
  override readonly code: EngineErrorCode
  constructor(
    code: EngineErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(code, message, options)
    this.name = 'EngineError'
    this.code = code
  }
}

export function isEngineError(err: unknown, code?: EngineErrorCode): err is EngineError {
  return err instanceof EngineError && (code === undefined || err.code === code)
}

/** One installed version of an engine. */
export interface EngineVersion {
  name: string
  version: string
  /** The executable that provides this version. */
  path: string
}

/** Output image formats, named as Blender names them. */
export type OutputFormat = 'PNG' | 'JPEG' | 'OPEN_EXR'
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['PNG', 'JPEG', 'OPEN_EXR']
export const FORMAT_EXTENSION: Record<OutputFormat, string> = {
  PNG: 'png',
  JPEG: 'jpg',
  OPEN_EXR: 'exr',
}

export interface ExternalFile {
  kind: 'image' | 'library' | 'sound' | 'movieclip' | 'font' | 'volume' | 'cache'
  name: string
  /** As stored in the scene (may be relative: `//tex.png`). */
  path: string
  /** Resolved against the scene's folder. */
  absPath: string
  exists: boolean
}

/** One file reference of a scene (or of a library it links), as its dependency tracer saw it. */
export interface DependencyRef {
  kind: string
  /** The data-block that names the file (display). */
  name: string
  /** The library the data-block comes from, as the scene names it; null: the scene itself. */
  owner: string | null
  /** The path as stored (`//tex/a.png`, `/abs/b.exr`, `//seq/f_0001.png`, `//tex/t.<UDIM>.png`). */
  path: string
  /** Where Blender looks: resolved against the scene (or the owning library), normalized. */
  absPath: string
  /** The remap key (protocols/file-tree.md), computed by Blender's Python. */
  key: string
  /** file | sequence | udim | dir (an optional cache folder) | files (a folder's listed files). */
  mode: 'file' | 'sequence' | 'udim' | 'dir' | 'files'
  /** The files found, absolute (lexical: as Blender resolves them). */
  files: string[]
  /** The files Blender would look for and that do not exist. */
  missing: string[]
}

export interface DependencyTrace {
  /** The scene, absolute. */
  scene: string
  refs: DependencyRef[]
  /** The scene's metadata, read by the same Blender run when the engine can. */
  info?: SceneInfo
}

export interface SceneInfo {
  sceneName: string
  frameStart: number
  frameEnd: number
  frameStep: number
  resolutionX: number
  resolutionY: number
  resolutionPercentage: number
  /** fps / fps_base, the real frame rate. */
  fps: number
  /** Blender's `fps` and `fps_base` (the rate exactly: 24 / 1.001), when the script reports them. */
  fpsInt?: number
  fpsBase?: number
  renderEngine: string
  outputFormat: string
  camera: string | null
  externalFiles: ExternalFile[]
  /** The subset of externalFiles that do not exist. */
  missingFiles: string[]
  blenderVersion?: string
}

export type EngineParams = Record<string, unknown>
/** Params after `validate`: only declared keys, with defaults applied and types coerced. */
export type ValidatedParams = Record<string, string | number | boolean | number[] | string[]>

export interface RenderTask {
  scenePath: string
  frames: number[]
  /** Output files are written here; the engine owns its content for the task. */
  workDir: string
  format: OutputFormat
  params: ValidatedParams
  resolutionPercentage?: number
  samples?: number
  /** Keep one engine process per scene and reuse it for the next frames. */
  persistent?: boolean
  /** A specific installed version (from detect); default: the newest. */
  engineVersion?: string
  /**
   * The job's render device (jobs/devices.ts; Blender: Cycles' device). Absent: as the scene
   * says, on the CPU when the node has no GPU.
   */
  device?: DeviceRequest
  /** Per-chunk timeout; the engine's default when absent. */
  timeoutMs?: number
  /** Identifies the job, for engines whose output depends on it (the test engine). */
  jobId?: string
  /**
   * The scene lies in the job's file tree: `remapFile` says where its references outside
   * the tree point instead; `allowMissing` renders although some files are missing.
   */
  tree?: { remapFile?: string; allowMissing?: boolean }
}

export interface RenderProgress {
  frame: number
  /** 0..1 of the current frame, when the engine says. */
  fraction?: number
  samples?: { done: number; total: number }
  /** Memory in bytes, as the engine reports it. */
  memory?: number
  message: string
}

export interface RenderHooks {
  signal: AbortSignal
  onProgress?(p: RenderProgress): void
  onLog?(line: string): void
  /** The pid of each child process started, for tests and diagnostics. */
  onSpawn?(pid: number): void
}

export interface RenderOutput {
  frame: number
  path: string
}

export interface RenderResult {
  outputs: RenderOutput[]
  /** The full log of the chunk, kept in workDir. */
  logPath: string
  renderMs: number
}

export interface Engine {
  readonly name: string
  detect(): Promise<EngineVersion[]>
  inspect?(scenePath: string, options: { signal: AbortSignal }): Promise<SceneInfo>
  /** Every file the scene needs (recursive through linked libraries), `root` its project root. */
  traceDependencies?(
    scenePath: string,
    options: { root: string; signal: AbortSignal },
  ): Promise<DependencyTrace>
  validate(params: unknown): ValidatedParams
  render(task: RenderTask, hooks: RenderHooks): Promise<RenderResult>
  /** Releases long-lived processes (persistent mode). */
  close?(): Promise<void>
}
