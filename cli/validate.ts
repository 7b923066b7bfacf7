/**
 * Validation of what a user types, shared by the CLI commands and the dashboard's submit
 * form so both refuse the same input with the same words. Throws UsageError (exit code 2);
 * the daemon validates again on its side.
 */
import { stat } from 'node:fs/promises'
import { extname, isAbsolute, relative, resolve } from 'node:path'
import {
  CAPS,
  type Cap,
  OUTPUT_FORMATS,
  type OutputFormat,
  PRIORITY_MAX,
  PRIORITY_MIN,
  SCENE_EXTENSIONS,
  type SubmitRequest,
  VIDEO_CODECS,
  type VideoCodec,
} from '../src/api/types.js'
import { isRmeshError } from '../src/util/errors.js'
import { UsageError } from './context.js'
import { parseFrameSpec } from '../src/jobs/frame-spec.js'
import { parseFrameRate } from '../src/jobs/video-options.js'
import { DEVICE_REQUESTS, isDeviceRequest } from '../src/jobs/devices.js'
import { parseEngineRange } from '../src/jobs/version.js'

export interface SubmitInput {
  scene: string
  frames?: string
  step?: string | number
  chunk?: string | number
  format?: string
  video?: string
  priority?: string | number
  name?: string
  out?: string
  pack?: boolean
  persistent?: boolean
  require?: string[]
  /** --any-blender: no default version requirement (the submitter's Blender's major.minor). */
  anyBlender?: boolean
  /** --device gpu|optix|cuda|hip|oneapi|metal|cpu */
  device?: string
  /** --tags gpu,studio-a: the pool; '' asks for none (overrides the node's submitTags). */
  tags?: string
  /** --after JOB[,JOB]: wait until these jobs are done. */
  after?: string
  projectRoot?: string
  allowMissing?: boolean
  crf?: string | number
  bitrate?: string | number
  passes?: string | number
  bitDepth?: string | number
  hdr?: string
  frameRate?: string
  tag?: string[]
}

export function parseInteger(
  value: string | number,
  flag: string,
  min: number,
  max: number,
): number {
  const text = String(value).trim()
  const n = /^-?\d+$/.test(text) ? Number(text) : Number.NaN
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${flag} must be a whole number from ${min} to ${max}, got "${value}"`)
  }
  return n
}

export function parseFormat(value: string): OutputFormat {
  const v = value.trim().toLowerCase()
  if (!(OUTPUT_FORMATS as readonly string[]).includes(v)) {
    throw new UsageError(`--format must be one of ${OUTPUT_FORMATS.join(', ')}, got "${value}"`)
  }
  return v as OutputFormat
}

export function parseVideo(value: string): VideoCodec {
  const v = value.trim().toLowerCase()
  if (!(VIDEO_CODECS as readonly string[]).includes(v)) {
    throw new UsageError(`--video must be one of ${VIDEO_CODECS.join(', ')}, got "${value}"`)
  }
  return v as VideoCodec
}

export function parseRequirements(values: readonly string[]): string[] {
  const out: string[] = []
  for (const v of values.flatMap((s) => s.split(','))) {
    const r = v.trim()
    if (r === '') continue
    if (!parseEngineRange(r)) {
      throw new UsageError(
        `--require "${r}" is not a requirement; write e.g. 'blender>=3.4', 'blender>=4.2 <4.3' or 'blender'`,
      )
    }
    out.push(r)
  }
  return out
}

export function parseCaps(value: string): Cap[] {
  const caps = value
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '')
  if (caps.length === 0) throw new UsageError(`--caps needs at least one of ${CAPS.join(', ')}`)
  for (const c of caps) {
    if (!(CAPS as readonly string[]).includes(c)) {
      throw new UsageError(`unknown capability "${c}"; use ${CAPS.join(', ')} (comma-separated)`)
    }
  }
  return [...new Set(caps)] as Cap[]
}

const DURATION_UNITS: Record<string, number> = {
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
}

/** `90s`, `45m`, `12h`, `30d`, `2w` → milliseconds. */
export function parseDuration(value: string, flag = '--expires'): number {
  const m = /^(\d{1,6})\s*([smhdw])$/i.exec(value.trim())
  if (!m || Number(m[1]) === 0) {
    throw new UsageError(`${flag} must be a duration like 90m, 12h, 30d or 2w, got "${value}"`)
  }
  return Number(m[1]) * DURATION_UNITS[m[2].toLowerCase()]
}

/** Loose shape check so a typo fails here, not after a round trip to the daemon. */
export function parsePeerId(value: string): string {
  const v = value.trim()
  if (
    !/^(12D3Koo[1-9A-HJ-NP-Za-km-z]{40,60}|Qm[1-9A-HJ-NP-Za-km-z]{44}|b[a-z2-7]{50,70})$/.test(v)
  ) {
    throw new UsageError(
      `"${value}" is not a peer id; run \`rmesh id\` on the new machine to get its peer id`,
    )
  }
  return v
}

export function resolvePath(cwd: string, p: string): string {
  return isAbsolute(p) ? p : resolve(cwd, p)
}

/** Checks the scene on disk: present, a file, a known extension. Returns its absolute path. */
export async function checkScene(cwd: string, scene: string): Promise<string> {
  if (scene.trim() === '')
    throw new UsageError('no scene given; run e.g. `rmesh submit shot.blend`')
  const path = resolvePath(cwd, scene)
  const ext = extname(path).toLowerCase()
  if (!SCENE_EXTENSIONS.includes(ext)) {
    throw new UsageError(
      `${scene} is not a scene rmesh can render (expected ${SCENE_EXTENSIONS.join(', ')})`,
    )
  }
  let st: Awaited<ReturnType<typeof stat>>
  try {
    st = await stat(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw new UsageError(`scene file not found: ${path}`)
    throw new UsageError(`cannot read ${path}: ${code ?? String(err)}`)
  }
  if (!st.isFile()) throw new UsageError(`${path} is not a file`)
  return path
}

/** Everything the user typed for a submit, checked; the scene's existence included. */
export async function buildSubmitRequest(input: SubmitInput, cwd: string): Promise<SubmitRequest> {
  const scenePath = await checkScene(cwd, input.scene)
  const req: SubmitRequest = { scenePath }
  const step = input.step === undefined ? undefined : parseInteger(input.step, '--step', 1, 100_000)
  if (input.frames !== undefined) {
    try {
      parseFrameSpec(input.frames, { step })
    } catch (err) {
      if (isRmeshError(err)) throw new UsageError(`--frames: ${err.message}`)
      throw err
    }
    req.frames = input.frames.replace(/\s+/g, '')
  }
  if (step !== undefined) req.step = step
  if (input.chunk !== undefined) req.chunk = parseInteger(input.chunk, '--chunk', 1, 10_000)
  if (input.format !== undefined) req.format = parseFormat(input.format)
  if (input.video !== undefined) req.video = parseVideo(input.video)
  applyVideoFlags(input, req)
  if (input.priority !== undefined)
    req.priority = parseInteger(input.priority, '--priority', PRIORITY_MIN, PRIORITY_MAX)
  if (input.name !== undefined) {
    const name = input.name.trim()
    if (name === '' || name.length > 200 || /[\x00-\x1f]/.test(name)) {
      throw new UsageError('--name must be 1 to 200 printable characters')
    }
    req.name = name
  }
  if (input.out !== undefined) req.outDir = resolvePath(cwd, input.out)
  if (input.pack) req.pack = true
  if (input.projectRoot !== undefined) {
    const root = resolvePath(cwd, input.projectRoot)
    const st = await stat(root).catch(() => undefined)
    if (!st?.isDirectory()) throw new UsageError(`--project-root ${root} is not a folder`)
    const rel = relative(root, scenePath)
    if (rel.startsWith('..') || isAbsolute(rel))
      throw new UsageError(`--project-root ${root} does not hold the scene ${scenePath}`)
    req.projectRoot = root
  }
  if (input.allowMissing) req.allowMissing = true
  if (input.persistent) req.persistent = true
  if (input.require?.length) req.require = parseRequirements(input.require)
  if (input.anyBlender) {
    if (req.require) throw new UsageError('--any-blender and --require contradict: give one')
    req.anyBlender = true
  }
  if (input.device !== undefined) {
    const d = input.device.trim().toLowerCase()
    if (!isDeviceRequest(d))
      throw new UsageError(
        `--device must be one of ${DEVICE_REQUESTS.join(', ')}, got "${input.device}"`,
      )
    req.device = d
  }
  if (input.tags !== undefined) {
    const tags = input.tags.split(/[\s,]+/).filter(Boolean)
    if (tags.length > 32 || !tags.every((t) => /^[\w.-]{1,32}$/.test(t)))
      throw new UsageError('--tags must be short words separated by commas, like gpu,studio-a')
    req.tags = tags
  }
  if (input.after !== undefined) req.after = parseAfter(input.after)
  return req
}

/** `--after JOB[,JOB]`: up to 16 job ids (or unique prefixes of 6+ characters), distinct. */
export function parseAfter(value: string): string[] {
  const ids = [
    ...new Set(
      value
        .toLowerCase()
        .split(/[\s,]+/)
        .filter(Boolean),
    ),
  ]
  if (ids.length === 0) throw new UsageError('--after needs a job id, like --after k3vq7xma')
  if (ids.length > 16) throw new UsageError('--after takes at most 16 jobs')
  for (const id of ids)
    if (!/^[a-z2-7]{6,8}$/.test(id))
      throw new UsageError(`--after: "${id}" is not a job id; list jobs with \`rmesh jobs\``)
  return ids
}

/** The encode flags; the daemon checks the rules across them (jobs/video-options.ts). */
function applyVideoFlags(input: SubmitInput, req: SubmitRequest): void {
  const given = (['crf', 'bitrate', 'passes', 'bitDepth', 'hdr', 'frameRate'] as const).filter(
    (k) => input[k] !== undefined,
  )
  if (given.length > 0 && input.video === undefined)
    throw new UsageError('--crf, --bitrate, --passes, --bit-depth, --hdr and --fps need --video')
  if (input.crf !== undefined) req.crf = parseInteger(input.crf, '--crf', 0, 63)
  if (input.bitrate !== undefined)
    req.bitrateKbps = parseInteger(input.bitrate, '--bitrate', 16, 1_000_000)
  if (input.passes !== undefined) req.passes = parseInteger(input.passes, '--passes', 1, 2) as 1 | 2
  if (input.bitDepth !== undefined) {
    const d = parseInteger(input.bitDepth, '--bit-depth', 8, 10)
    if (d !== 8 && d !== 10) throw new UsageError(`--bit-depth must be 8 or 10, got "${d}"`)
    req.bitDepth = d
  }
  if (input.hdr !== undefined) {
    if (input.hdr.trim().toLowerCase() !== 'hlg')
      throw new UsageError(`--hdr must be hlg, got "${input.hdr}"`)
    req.hdr = 'hlg'
  }
  if (input.frameRate !== undefined) {
    if (!parseFrameRate(input.frameRate.trim()))
      throw new UsageError(
        `--fps must be a frame rate like 25 or 24000/1001 (1 to 240), got "${input.frameRate}"`,
      )
    req.frameRate = input.frameRate.trim()
  }
  if (input.tag?.length)
    req.tags = [
      ...new Set([
        ...(req.tags ?? []),
        ...input.tag.flatMap((t) => t.split(',')).map((t) => t.trim()),
      ]),
    ]
}

/** Job ids are CIDs or a unique prefix of one (≥ 6 characters; the daemon resolves it). */
export function parseJobId(value: string): string {
  const v = value.trim()
  if (!/^[A-Za-z0-9_-]{6,128}$/.test(v)) {
    throw new UsageError(`"${value}" is not a job id; list jobs with \`rmesh jobs\``)
  }
  return v
}
