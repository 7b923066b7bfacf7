/**
 * Templated engines (RenderOnline's model): an engine declared in the config file as a
 * command, an argument template with `{param}` placeholders, and typed parameters.
 *
 * Invariants:
 *  - A declaration is checked whole when the config loads (unknown keys, bad types,
 *    placeholders that name no parameter, regexes that do not compile): a bad config is
 *    an ERR_ENGINE_CONFIG naming the field, never a surprise at render time.
 *  - A job's parameters are validated against the declaration before anything runs;
 *    anything undeclared or malformed is ERR_ENGINE_PARAMS.
 *  - Substitution happens inside argv items: a value never becomes two arguments, never
 *    reaches a shell, and never starts with `-` (so it cannot turn into an option).
 *    `file` and `path` values are relative paths inside the job's folder (no `..`, no
 *    absolute paths): a peer never chooses a path on disk.
 *  - The engine runs the command once per frame; a frame succeeded when its output file
 *    exists and is valid.
 */
import { mkdir, readFile, rm, stat } from 'node:fs/promises'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { validateFormat, validateFrames } from './blender.js'
import { formatOfExtension, framePath, isValidImage } from './images.js'
import { findOnPath, isExecutable, runCapture, startProcess } from './process.js'
import {
  type Engine,
  EngineError,
  type EngineVersion,
  FORMAT_EXTENSION,
  type OutputFormat,
  type RenderResult,
  type ValidatedParams,
} from './types.js'

export const PARAM_TYPES = [
  'file',
  'path',
  'extension',
  'word',
  'sentence',
  'natural',
  'integer',
  'real',
  'regex',
] as const
export type ParamType = (typeof PARAM_TYPES)[number]

export interface TemplateParamDecl {
  type: ParamType
  /** For `regex`: the whole value must match (the pattern is anchored for you). */
  pattern?: string
  /** Absent parameters without a default are an error unless `required` is false. */
  required?: boolean
  default?: string | number
  /** Bounds for natural, integer, real. */
  min?: number
  max?: number
  description?: string
}

export interface TemplateEngineDecl {
  name: string
  /** Scene file extensions this engine accepts, without the dot. */
  extensions: string[]
  /** An absolute path or a bare name looked up on PATH. */
  command: string
  /** argv template; a string is split on whitespace before substitution. */
  args: string[]
  params: Record<string, TemplateParamDecl>
  /** The extension of each frame's output; default: that of the task's format. */
  outputExtension?: string
  /** How to read the version: extra args and a regex whose group 1 is the version. */
  version?: { args: string[]; pattern: string }
  description?: string
}

/** Placeholders every template may use besides its parameters. */
export const RESERVED_PLACEHOLDERS = ['scene', 'frame', 'output', 'workDir'] as const
const RESERVED_NAMES = new Set(['blender', 'ffmpeg', 'test'])
const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g
const MAX_VALUE_LENGTH = 1024
const CONTROL = /[\u0000-\u001f\u007f]/
const PATH_SEGMENT = /^[\p{L}\p{N}_ +@,=.-]+$/u

// ---------------------------------------------------------------------------------------
// Loading the config

function configError(where: string, what: string): EngineError {
  return new EngineError('ERR_ENGINE_CONFIG', `engine config ${where}: ${what}`, {
    details: { where },
  })
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x)
}

function onlyKeys(obj: Record<string, unknown>, allowed: string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k))
      throw configError(where, `unknown key "${k}" (allowed: ${allowed.join(', ')})`)
  }
}

function str(x: unknown, where: string): string {
  if (typeof x !== 'string' || x.length === 0 || x.length > MAX_VALUE_LENGTH || CONTROL.test(x)) {
    throw configError(where, 'must be a non-empty string without control characters')
  }
  return x
}

function compilePattern(pattern: string, where: string): RegExp {
  try {
    return new RegExp(`^(?:${pattern})$`, 'u')
  } catch (err) {
    throw configError(where, `the regex does not compile: ${(err as Error).message}`)
  }
}

function parseParam(raw: unknown, where: string): TemplateParamDecl {
  if (!isPlainObject(raw)) throw configError(where, 'must be an object like {"type": "natural"}')
  onlyKeys(raw, ['type', 'pattern', 'required', 'default', 'min', 'max', 'description'], where)
  if (!PARAM_TYPES.includes(raw.type as ParamType)) {
    throw configError(
      `${where}.type`,
      `"${String(raw.type)}" is not one of ${PARAM_TYPES.join(', ')}`,
    )
  }
  const decl: TemplateParamDecl = { type: raw.type as ParamType }
  if (decl.type === 'regex') {
    decl.pattern = str(raw.pattern, `${where}.pattern`)
    compilePattern(decl.pattern, `${where}.pattern`)
  } else if (raw.pattern !== undefined) {
    throw configError(`${where}.pattern`, 'only a "regex" parameter takes a pattern')
  }
  if (raw.required !== undefined) {
    if (typeof raw.required !== 'boolean')
      throw configError(`${where}.required`, 'must be true or false')
    decl.required = raw.required
  }
  for (const k of ['min', 'max'] as const) {
    if (raw[k] === undefined) continue
    if (!['natural', 'integer', 'real'].includes(decl.type)) {
      throw configError(`${where}.${k}`, 'only natural, integer and real parameters take bounds')
    }
    if (typeof raw[k] !== 'number' || !Number.isFinite(raw[k]))
      throw configError(`${where}.${k}`, 'must be a number')
    decl[k] = raw[k] as number
  }
  if (raw.description !== undefined) decl.description = str(raw.description, `${where}.description`)
  if (raw.default !== undefined) {
    if (typeof raw.default !== 'string' && typeof raw.default !== 'number') {
      throw configError(`${where}.default`, 'must be a string or a number')
    }
    decl.default = raw.default
    // The default must itself be a valid value.
    try {
      validateParamValue(raw.default, decl, 'default')
    } catch (err) {
      throw configError(`${where}.default`, (err as Error).message)
    }
  }
  return decl
}

function parseDecl(raw: unknown, where: string): TemplateEngineDecl {
  if (!isPlainObject(raw)) throw configError(where, 'must be an object')
  onlyKeys(
    raw,
    [
      'name',
      'extensions',
      'command',
      'args',
      'params',
      'outputExtension',
      'version',
      'description',
    ],
    where,
  )
  const name = str(raw.name, `${where}.name`)
  if (!/^[a-z][a-z0-9-]{0,31}$/.test(name)) {
    throw configError(
      `${where}.name`,
      `"${name}" must be lower-case letters, digits and dashes (max 32)`,
    )
  }
  if (RESERVED_NAMES.has(name))
    throw configError(`${where}.name`, `"${name}" is a built-in engine's name`)
  if (!Array.isArray(raw.extensions) || raw.extensions.length === 0) {
    throw configError(`${where}.extensions`, 'must be a non-empty list like ["mp4", "mov"]')
  }
  const extensions = raw.extensions.map((e, i) => {
    const s = str(e, `${where}.extensions[${i}]`).replace(/^\./, '').toLowerCase()
    if (!/^[a-z0-9]{1,16}$/.test(s))
      throw configError(`${where}.extensions[${i}]`, `"${s}" is not an extension`)
    return s
  })
  const command = str(raw.command, `${where}.command`)
  if (!isAbsolute(command) && command.includes('/')) {
    throw configError(`${where}.command`, 'must be an absolute path or a bare name found on PATH')
  }
  let args: string[]
  if (typeof raw.args === 'string') args = raw.args.trim().split(/\s+/).filter(Boolean)
  else if (Array.isArray(raw.args)) args = raw.args.map((a, i) => str(a, `${where}.args[${i}]`))
  else throw configError(`${where}.args`, 'must be a list of arguments or one template string')
  const params: Record<string, TemplateParamDecl> = {}
  if (raw.params !== undefined) {
    if (!isPlainObject(raw.params))
      throw configError(`${where}.params`, 'must be an object of parameters')
    for (const [k, v] of Object.entries(raw.params)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(k))
        throw configError(`${where}.params`, `"${k}" is not a name`)
      if ((RESERVED_PLACEHOLDERS as readonly string[]).includes(k)) {
        throw configError(`${where}.params.${k}`, `"${k}" is a built-in placeholder`)
      }
      params[k] = parseParam(v, `${where}.params.${k}`)
    }
  }
  const used = new Set<string>()
  for (const a of args) for (const m of a.matchAll(PLACEHOLDER)) used.add(m[1])
  for (const u of used) {
    if (!(u in params) && !(RESERVED_PLACEHOLDERS as readonly string[]).includes(u)) {
      throw configError(
        `${where}.args`,
        `placeholder {${u}} is neither a parameter nor one of ${RESERVED_PLACEHOLDERS.join(', ')}`,
      )
    }
  }
  if (!used.has('output'))
    throw configError(`${where}.args`, 'must contain {output}, where the frame is written')
  const decl: TemplateEngineDecl = { name, extensions, command, args, params }
  if (raw.outputExtension !== undefined) {
    const e = str(raw.outputExtension, `${where}.outputExtension`).replace(/^\./, '').toLowerCase()
    if (!/^[a-z0-9]{1,16}$/.test(e))
      throw configError(`${where}.outputExtension`, `"${e}" is not an extension`)
    decl.outputExtension = e
  }
  if (raw.version !== undefined) {
    const v = raw.version
    if (!isPlainObject(v) || !Array.isArray(v.args)) {
      throw configError(`${where}.version`, 'must be {"args": [...], "pattern": "..."}')
    }
    onlyKeys(v, ['args', 'pattern'], `${where}.version`)
    const pattern = str(v.pattern, `${where}.version.pattern`)
    try {
      new RegExp(pattern, 'm')
    } catch {
      throw configError(`${where}.version.pattern`, 'the regex does not compile')
    }
    decl.version = { args: v.args.map((a, i) => str(a, `${where}.version.args[${i}]`)), pattern }
  }
  if (raw.description !== undefined) decl.description = str(raw.description, `${where}.description`)
  return decl
}

/** Validates a config value: `{engines: [...]}` or a bare list of declarations. */
export function parseTemplateEngines(config: unknown): TemplateEngineDecl[] {
  const list = isPlainObject(config) ? config.engines : config
  if (!Array.isArray(list)) throw configError('engines', 'must be a list of engine declarations')
  const seen = new Set<string>()
  return list.map((raw, i) => {
    const decl = parseDecl(raw, `engines[${i}]`)
    if (seen.has(decl.name))
      throw configError(`engines[${i}].name`, `"${decl.name}" is declared twice`)
    seen.add(decl.name)
    return decl
  })
}

/** Reads and validates a JSON file of engine declarations. */
export async function loadTemplateEngines(path: string): Promise<TemplateEngineDecl[]> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new EngineError('ERR_ENGINE_CONFIG', `cannot read engine config ${path}`, { cause: err })
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new EngineError(
      'ERR_ENGINE_CONFIG',
      `engine config ${path} is not valid JSON: ${(err as Error).message}`,
    )
  }
  return parseTemplateEngines(json)
}

// ---------------------------------------------------------------------------------------
// Validating a job's parameters

function paramError(name: string, message: string): EngineError {
  return new EngineError('ERR_ENGINE_PARAMS', `parameter ${name}: ${message}`, {
    details: { param: name },
  })
}

function relativePath(value: string, name: string): string {
  if (isAbsolute(value) || value.startsWith('-'))
    throw paramError(name, 'must be a relative path inside the job')
  const segments = value.split('/')
  for (const s of segments) {
    if (s === '' || s === '.' || s === '..' || !PATH_SEGMENT.test(s)) {
      throw paramError(
        name,
        `"${value}" is not a clean relative path (letters, digits, "._-+@,=" and spaces)`,
      )
    }
  }
  return value
}

function numberValue(value: unknown, name: string, integer: boolean): number {
  let n: number
  if (typeof value === 'number') n = value
  else if (
    typeof value === 'string' &&
    (integer ? /^-?\d{1,16}$/ : /^-?\d{1,16}(\.\d{1,16})?([eE][-+]?\d{1,3})?$/).test(value)
  ) {
    n = Number(value)
  } else
    throw paramError(name, `${JSON.stringify(value)} is not ${integer ? 'an integer' : 'a number'}`)
  if (!Number.isFinite(n) || (integer && !Number.isSafeInteger(n))) {
    throw paramError(
      name,
      `${String(value)} is not ${integer ? 'a safe integer' : 'a finite number'}`,
    )
  }
  return n
}

/** One value against its declaration; returns the value as it goes into the template. */
export function validateParamValue(
  value: unknown,
  decl: TemplateParamDecl,
  name: string,
): string | number {
  if (typeof value === 'string' && (value.length > MAX_VALUE_LENGTH || CONTROL.test(value))) {
    throw paramError(
      name,
      `must be at most ${MAX_VALUE_LENGTH} characters without control characters`,
    )
  }
  let out: string | number
  switch (decl.type) {
    case 'natural':
    case 'integer':
    case 'real': {
      const n = numberValue(value, name, decl.type !== 'real')
      if (decl.type === 'natural' && n < 0) throw paramError(name, `${n} is negative`)
      if (decl.min !== undefined && n < decl.min)
        throw paramError(name, `${n} is below ${decl.min}`)
      if (decl.max !== undefined && n > decl.max)
        throw paramError(name, `${n} is above ${decl.max}`)
      return n
    }
    default:
      break
  }
  if (typeof value !== 'string') throw paramError(name, `must be a string, not ${typeof value}`)
  switch (decl.type) {
    case 'file':
    case 'path':
      out = relativePath(value, name)
      break
    case 'extension':
      if (!/^[A-Za-z0-9]{1,16}$/.test(value))
        throw paramError(name, `"${value}" is not a file extension`)
      out = value
      break
    case 'word':
      if (!/^[\p{L}\p{N}_][\p{L}\p{N}_.-]*$/u.test(value)) {
        throw paramError(
          name,
          `"${value}" is not one word (letters, digits, "_.-", not starting with "-")`,
        )
      }
      out = value
      break
    case 'sentence':
      if (value.length === 0 || value.startsWith('-'))
        throw paramError(name, 'must be non-empty text not starting with "-"')
      out = value
      break
    case 'regex':
      if (!compilePattern(decl.pattern ?? '', name).test(value) || value.startsWith('-')) {
        throw paramError(name, `"${value}" does not match ${decl.pattern}`)
      }
      out = value
      break
  }
  return out
}

/** All of a job's parameters against a declaration: defaults applied, extras refused. */
export function validateTemplateParams(decl: TemplateEngineDecl, params: unknown): ValidatedParams {
  if (params === undefined || params === null) params = {}
  if (!isPlainObject(params))
    throw new EngineError('ERR_ENGINE_PARAMS', `${decl.name} parameters must be an object`)
  for (const k of Object.keys(params)) {
    if (!(k in decl.params)) {
      throw paramError(
        k,
        `${decl.name} has no such parameter (it takes: ${Object.keys(decl.params).join(', ') || 'none'})`,
      )
    }
  }
  const out: ValidatedParams = {}
  for (const [name, p] of Object.entries(decl.params)) {
    const v = params[name] ?? p.default
    if (v === undefined) {
      if (p.required === false) continue
      throw paramError(name, 'is required')
    }
    out[name] = validateParamValue(v, p, name)
  }
  return out
}

/**
 * The argv for one frame. `file` parameters are resolved in the scene's folder, `path`
 * ones in the work folder; the caller has validated `params`.
 */
export function buildArgs(
  decl: TemplateEngineDecl,
  params: ValidatedParams,
  ctx: { scene: string; frame: number; output: string; workDir: string },
): string[] {
  const values = new Map<string, string>([
    ['scene', ctx.scene],
    ['frame', String(ctx.frame)],
    ['output', ctx.output],
    ['workDir', ctx.workDir],
  ])
  for (const [name, v] of Object.entries(params)) {
    const type = decl.params[name]?.type
    if (type === 'file') values.set(name, join(dirname(ctx.scene), String(v)))
    else if (type === 'path') values.set(name, join(ctx.workDir, String(v)))
    else values.set(name, String(v))
  }
  return decl.args
    .map((a) => a.replace(PLACEHOLDER, (_m, k: string) => values.get(k) ?? ''))
    .filter((a, i) => a.length > 0 || decl.args[i].length === 0)
}

// ---------------------------------------------------------------------------------------
// The engine

export function createTemplateEngine(
  decl: TemplateEngineDecl,
  options: { timeoutMs?: number } = {},
): Engine {
  let resolved: Promise<string | undefined> | undefined
  const command = () => {
    resolved ??= (async () =>
      isAbsolute(decl.command)
        ? (await isExecutable(decl.command))
          ? decl.command
          : undefined
        : (await findOnPath(decl.command))[0])()
    return resolved
  }
  return {
    name: decl.name,
    async detect(): Promise<EngineVersion[]> {
      const path = await command()
      if (!path) return []
      let version = 'unknown'
      if (decl.version) {
        const { stdout } = await runCapture(path, decl.version.args, { timeoutMs: 15_000 })
        version = new RegExp(decl.version.pattern, 'm').exec(stdout)?.[1] ?? 'unknown'
      }
      return [{ name: decl.name, version, path }]
    },
    validate: (params) => validateTemplateParams(decl, params),
    async render(task, hooks): Promise<RenderResult> {
      const frames = validateFrames(task.frames)
      const format: OutputFormat = validateFormat(task.format)
      const params = validateTemplateParams(decl, task.params)
      const scene = resolve(task.scenePath)
      const ext = scene.split('.').pop()?.toLowerCase() ?? ''
      if (!decl.extensions.includes(ext)) {
        throw new EngineError(
          'ERR_SCENE_INVALID',
          `${decl.name} renders ${decl.extensions.join(', ')} files, not .${ext}`,
        )
      }
      for (const [name, v] of Object.entries(params)) {
        if (decl.params[name].type !== 'file') continue
        const p = join(dirname(scene), String(v))
        if (!(await stat(p).catch(() => undefined))?.isFile()) {
          throw new EngineError(
            'ERR_SCENE_MISSING_ASSET',
            `parameter ${name}: ${String(v)} is not in the job's files`,
          )
        }
      }
      const file = await command()
      if (!file)
        throw new EngineError(
          'ERR_ENGINE_NOT_FOUND',
          `${decl.command} (engine ${decl.name}) is not installed`,
        )
      const workDir = resolve(task.workDir)
      await mkdir(workDir, { recursive: true })
      const outExt = decl.outputExtension ?? FORMAT_EXTENSION[format]
      const logPath = join(workDir, `${decl.name}-${frames[0]}-${frames[frames.length - 1]}.log`)
      const started = performance.now()
      const outputs = []
      for (const frame of frames) {
        const output = framePath(workDir, frame, outExt)
        await rm(output, { force: true })
        const args = buildArgs(decl, params, { scene, frame, output, workDir })
        const p = startProcess({
          file,
          args,
          cwd: workDir,
          signal: hooks.signal,
          timeoutMs: task.timeoutMs ?? options.timeoutMs ?? 60 * 60_000,
          logPath,
          onSpawn: hooks.onSpawn,
          onLine: (line) => hooks.onLog?.(line),
        })
        hooks.onProgress?.({ frame, fraction: 0, message: `${decl.name} frame ${frame}` })
        const outcome = await p.done
        const details = { frame, exitCode: outcome.exitCode, logPath, logTail: outcome.tail }
        if (outcome.spawnError)
          throw new EngineError('ERR_ENGINE_NOT_FOUND', `cannot run ${file}`, { details })
        if (outcome.canceled)
          throw new EngineError('ERR_RENDER_CANCELED', 'render canceled', { details })
        if (outcome.timedOut)
          throw new EngineError('ERR_RENDER_TIMEOUT', `frame ${frame} timed out`, { details })
        const imageFormat = formatOfExtension(outExt)
        const valid = imageFormat
          ? await isValidImage(output, imageFormat)
          : ((await stat(output).catch(() => undefined))?.size ?? 0) > 0
        if (outcome.exitCode !== 0 || !valid) {
          throw new EngineError(
            'ERR_RENDER_FAILED',
            `${decl.name} exited with ${outcome.exitCode ?? outcome.signal} on frame ${frame}` +
              `${valid ? '' : ' without a valid output'}: see ${logPath}`,
            { details },
          )
        }
        hooks.onProgress?.({ frame, fraction: 1, message: `saved ${output}` })
        outputs.push({ frame, path: output })
      }
      return { outputs, logPath, renderMs: performance.now() - started }
    },
  }
}
