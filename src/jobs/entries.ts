/**
 * Job log entry kinds and their body schemas (protocols/job-entries.md).
 *
 * Invariants:
 *  - every validator is total: any decoded value (garbage included) yields either a typed
 *    body or a reason string, never a throw; the reducer ignores bodies that fail;
 *  - every size is bounded here (strings, lists, records), so a valid body is small
 *    except for an announce's frame list (≤ MAX_FRAMES integers);
 *  - validators return fresh objects holding only known fields, so unknown fields a peer
 *    adds never reach the state.
 */
import { InvalidInputError } from '../util/errors.js'
import { isCidString } from '../util/hash.js'
import type { LogId, PeerIdString } from '../log/types.js'
import { jobIdOfLog } from '../log/types.js'
import { DEVICE_REQUESTS, type DeviceRequest, isDeviceRequest } from './devices.js'
import { isVersionRequirement } from './version.js'
import { checkVideoOutput, type VideoOutput } from './video-options.js'

export const JOB_KINDS = [
  'announce',
  'claim',
  'release',
  'complete',
  'fail',
  'cancel',
  'retry',
  'priority',
  'ack',
  'delete',
  'seal',
  'reject',
  'abort',
  'pause',
  'resume',
  'ready',
  'unblock',
] as const
export type JobKind = (typeof JOB_KINDS)[number]

export const LIMITS = {
  maxFrames: 100_000,
  maxChunkSize: 10_000,
  maxFrameNumber: 1_000_000_000,
  maxName: 200,
  /** A thumbnail block-file (engines/thumbnail.ts makes them at most 64 KiB). */
  maxThumbBytes: 64 * 1024,
  maxReason: 1_000,
  maxParams: 64,
  maxParamKey: 64,
  maxParamString: 1_024,
  maxTags: 32,
  maxTag: 64,
  maxOutputsPerChunk: 10_000,
  maxPriority: 1_000_000,
  maxAttempt: 1_000_000,
  maxAckChunks: 100_001,
  maxFailuresLimit: 100,
  maxRejectReason: 500,
  maxAbortReason: 500,
  maxTreeFiles: 100_000,
  /** Jobs an announce may wait for (`after`). */
  maxAfter: 16,
} as const

/** Flamenco's defaults: a node failing 3 chunks of a job is blocklisted; a chunk failing on 3 nodes fails the job. */
export const DEFAULT_MAX_FAILURES_PER_NODE = 3
export const DEFAULT_MAX_NODES_PER_CHUNK = 3

export const JOB_ID_RE = /^[a-z2-7]{8}$/
const ENGINE_NAME_RE = /^[a-z][a-z0-9_-]{0,31}$/
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567'

export type OutputFormat = 'PNG' | 'OPEN_EXR' | 'JPEG'
export type { VideoCodec } from './video-options.js'
export type ParamValue = string | number | boolean

export interface AnnounceBody {
  jobId: string
  name: string
  submitter: PeerIdString
  scene: { manifest: string; name: string; size: number }
  /**
   * The scene's files (protocols/file-tree.md): `tree` is the manifest of the tree document,
   * `count`/`size` its files and their bytes, `missing` how many referenced files were
   * missing at submit (only with allowMissing; the renderer then renders without them).
   */
  files?: { tree: string; count: number; size: number; missing?: number }
  engine: { name: string; version?: string }
  frames: number[]
  chunkSize: number
  /** The image format, and the video fields (jobs/video-options.ts). */
  output: { format: OutputFormat } & VideoOutput
  priority: number
  persistent?: boolean
  params: Record<string, ParamValue>
  /** `device`: the render device the job needs (jobs/devices.ts); absent: any. */
  requirements: { tags?: string[]; device?: DeviceRequest }
  limits: { maxFailuresPerNode?: number; maxNodesPerChunk?: number; chunkTimeoutMs?: number }
  /** Jobs (ids) that must be done before this one starts (job order: its `ready` entry). */
  after?: string[]
}
export interface ClaimBody {
  chunk: number
  attempt: number
}
export interface ReleaseBody {
  chunk: number
  attempt: number
  reason: string
}
export interface ChunkOutput {
  frame: number
  manifest: string
  size: number
  name: string
  /** A small JPEG/PNG preview of the frame, stored by the renderer next to the output. */
  thumb?: { manifest: string; size: number }
}
export interface CompleteBody {
  chunk: number
  attempt: number
  outputs: ChunkOutput[]
  log?: string
  renderMs: number
}
export interface FailBody {
  chunk: number
  attempt: number
  reason: string
  log?: string
}
export type CancelBody = Record<string, never>
export interface RetryBody {
  chunks?: number[]
}
export interface PriorityBody {
  priority: number
}
export interface AckBody {
  chunks: number[]
}
export type DeleteBody = Record<string, never>
/** The submitter could not obtain the outputs of `attempt` of `chunk`: re-render it. */
export interface RejectBody {
  chunk: number
  attempt: number
  reason: string
}
/** The submitter gives up on its job: no node of the mesh can take what is left of it. */
export interface AbortBody {
  reason: string
}
/** The job takes no new chunk until a resume; chunks already rendering finish. */
export type PauseBody = Record<string, never>
export type ResumeBody = Record<string, never>
/** Every job of the announce's `after` is done (written by the submitter's node). */
export type ReadyBody = Record<string, never>
/** Take `node` (or every node) off the job's blocklist, its failure count cleared. */
export interface UnblockBody {
  node?: PeerIdString
}
/** `state` is a JobState; it is validated by the reducer, which owns that shape. */
export interface SealBody {
  state: unknown
}

export interface BodyOf {
  announce: AnnounceBody
  claim: ClaimBody
  release: ReleaseBody
  complete: CompleteBody
  fail: FailBody
  cancel: CancelBody
  retry: RetryBody
  priority: PriorityBody
  ack: AckBody
  delete: DeleteBody
  seal: SealBody
  reject: RejectBody
  abort: AbortBody
  pause: PauseBody
  resume: ResumeBody
  ready: ReadyBody
  unblock: UnblockBody
}

export type Validated<T> = { ok: true; body: T } | { ok: false; reason: string }

// ---- small total checkers -------------------------------------------------------------

class Bad extends Error {}
const fail = (why: string): never => {
  throw new Bad(why)
}
function obj(x: unknown, what: string): Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x) || x instanceof Uint8Array) {
    fail(`${what}: not an object`)
  }
  return x as Record<string, unknown>
}
function int(x: unknown, what: string, min: number, max: number): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min || x > max) {
    fail(`${what}: not an integer in [${min}, ${max}]`)
  }
  return x as number
}
function str(x: unknown, what: string, max: number, min = 0): string {
  if (typeof x !== 'string' || x.length > max || x.length < min)
    fail(`${what}: not a string of ${min}..${max} chars`)
  return x as string
}
function cid(x: unknown, what: string): string {
  if (!isCidString(x)) fail(`${what}: not a CID`)
  return x as string
}
function optional<T>(x: unknown, f: (x: unknown) => T): T | undefined {
  return x === undefined ? undefined : f(x)
}
function list<T>(x: unknown, what: string, max: number, f: (x: unknown, i: number) => T): T[] {
  if (!Array.isArray(x) || x.length > max) fail(`${what}: not a list of at most ${max}`)
  return (x as unknown[]).map(f)
}
function oneOf<T extends string>(x: unknown, what: string, options: readonly T[]): T {
  if (typeof x !== 'string' || !options.includes(x as T))
    fail(`${what}: not one of ${options.join('|')}`)
  return x as T
}
/** Copy only defined fields, so optional fields never appear as `undefined` keys. */
function compact<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k]
  return o
}
function run<T>(f: () => T): Validated<T> {
  try {
    return { ok: true, body: f() }
  } catch (err) {
    if (err instanceof Bad) return { ok: false, reason: err.message }
    return { ok: false, reason: 'invalid body' }
  }
}

const chunkIndex = (x: unknown) => int(x, 'chunk', 0, LIMITS.maxFrames)
const attemptNo = (x: unknown) => int(x, 'attempt', 1, LIMITS.maxAttempt)
const reasonText = (x: unknown) => str(x, 'reason', LIMITS.maxReason)

function announce(b: Record<string, unknown>): AnnounceBody {
  const jobId = str(b.jobId, 'jobId', 8, 8)
  if (!JOB_ID_RE.test(jobId)) fail('jobId: not 8 base32 characters')
  const scene = obj(b.scene, 'scene')
  const engine = obj(b.engine, 'engine')
  const engineName = str(engine.name, 'engine.name', 32, 1)
  if (!ENGINE_NAME_RE.test(engineName)) fail('engine.name: not a lower-case engine name')
  const version = optional(engine.version, (v) => {
    const s = str(v, 'engine.version', 64, 1)
    if (!isVersionRequirement(s)) fail('engine.version: not a version requirement like >=3.4')
    return s
  })
  const frames = list(b.frames, 'frames', LIMITS.maxFrames, (f) =>
    int(f, 'frame', -LIMITS.maxFrameNumber, LIMITS.maxFrameNumber),
  )
  if (frames.length === 0) fail('frames: empty')
  if (new Set(frames).size !== frames.length) fail('frames: duplicate frame')
  const output = obj(b.output, 'output')
  const params = obj(b.params ?? {}, 'params')
  const paramKeys = Object.keys(params)
  if (paramKeys.length > LIMITS.maxParams) fail('params: too many')
  const outParams: Record<string, ParamValue> = {}
  for (const k of paramKeys) {
    str(k, 'param name', LIMITS.maxParamKey, 1)
    const v = params[k]
    if (typeof v === 'string') outParams[k] = str(v, `param ${k}`, LIMITS.maxParamString)
    else if (typeof v === 'number' && Number.isFinite(v)) outParams[k] = v
    else if (typeof v === 'boolean') outParams[k] = v
    else fail(`param ${k}: not a string, finite number or boolean`)
  }
  const req = obj(b.requirements ?? {}, 'requirements')
  const limits = obj(b.limits ?? {}, 'limits')
  const files = optional(b.files, (x) => {
    const f = obj(x, 'files')
    return compact({
      tree: cid(f.tree, 'files.tree'),
      count: int(f.count, 'files.count', 1, LIMITS.maxTreeFiles),
      size: int(f.size, 'files.size', 0, Number.MAX_SAFE_INTEGER),
      missing: optional(f.missing, (m) => int(m, 'files.missing', 1, LIMITS.maxTreeFiles)),
    })
  })
  const after = optional(b.after, (x) => afterList(x, jobId))
  const persistent = optional(b.persistent, (p) =>
    typeof p === 'boolean' ? p : fail('persistent: not a boolean'),
  )
  return compact({
    jobId,
    name: str(b.name, 'name', LIMITS.maxName, 1),
    submitter: str(b.submitter, 'submitter', 128, 1) as PeerIdString,
    scene: {
      manifest: cid(scene.manifest, 'scene.manifest'),
      name: str(scene.name, 'scene.name', LIMITS.maxName, 1),
      size: int(scene.size, 'scene.size', 0, Number.MAX_SAFE_INTEGER),
    },
    files,
    engine: compact({ name: engineName, version }),
    frames,
    chunkSize: int(b.chunkSize, 'chunkSize', 1, LIMITS.maxChunkSize),
    output: outputOf(output),
    priority: int(b.priority, 'priority', -LIMITS.maxPriority, LIMITS.maxPriority),
    persistent,
    params: outParams,
    requirements: compact({
      tags: optional(req.tags, (t) =>
        list(t, 'tags', LIMITS.maxTags, (x) => str(x, 'tag', LIMITS.maxTag, 1)),
      ),
      device: optional(req.device, (d) =>
        isDeviceRequest(d)
          ? d
          : fail(`requirements.device: not one of ${DEVICE_REQUESTS.join(', ')}`),
      ),
    }),
    limits: compact({
      maxFailuresPerNode: optional(limits.maxFailuresPerNode, (v) =>
        int(v, 'maxFailuresPerNode', 1, LIMITS.maxFailuresLimit),
      ),
      maxNodesPerChunk: optional(limits.maxNodesPerChunk, (v) =>
        int(v, 'maxNodesPerChunk', 1, LIMITS.maxFailuresLimit),
      ),
      chunkTimeoutMs: optional(limits.chunkTimeoutMs, (v) =>
        int(v, 'chunkTimeoutMs', 1_000, 7 * 24 * 3600_000),
      ),
    }),
    after,
  })
}

/** `after`: 1..maxAfter distinct job ids, not the job's own. */
function afterList(x: unknown, self: string): string[] {
  const ids = list(x, 'after', LIMITS.maxAfter, (v) => {
    const id = str(v, 'after[]', 8, 8)
    if (!JOB_ID_RE.test(id)) fail('after[]: not a job id (8 base32 characters)')
    if (id === self) fail('after: a job cannot wait for itself')
    return id
  })
  if (ids.length === 0) fail('after: empty')
  if (new Set(ids).size !== ids.length) fail('after: duplicate job id')
  return ids
}

function outputOf(o: Record<string, unknown>): AnnounceBody['output'] {
  const format = oneOf(o.format, 'output.format', ['PNG', 'OPEN_EXR', 'JPEG'] as const)
  return compact({ format, ...checkVideoOutput(o, format, fail) })
}

/**
 * A malformed thumb is dropped, not the output: a node that predates thumbnails keeps
 * the output whatever `thumb` holds, so every version must fold it the same way.
 */
function thumbOf(x: unknown): ChunkOutput['thumb'] {
  if (x === undefined) return undefined
  try {
    const t = obj(x, 'output.thumb')
    return {
      manifest: cid(t.manifest, 'output.thumb.manifest'),
      size: int(t.size, 'output.thumb.size', 1, LIMITS.maxThumbBytes),
    }
  } catch (err) {
    if (err instanceof Bad) return undefined
    throw err
  }
}

function output(x: unknown): ChunkOutput {
  const o = obj(x, 'output')
  return compact({
    frame: int(o.frame, 'output.frame', -LIMITS.maxFrameNumber, LIMITS.maxFrameNumber),
    manifest: cid(o.manifest, 'output.manifest'),
    size: int(o.size, 'output.size', 0, Number.MAX_SAFE_INTEGER),
    name: str(o.name, 'output.name', LIMITS.maxName, 1),
    thumb: thumbOf(o.thumb),
  })
}

const validators: { [K in JobKind]: (b: Record<string, unknown>) => BodyOf[K] } = {
  announce,
  claim: (b) => ({ chunk: chunkIndex(b.chunk), attempt: attemptNo(b.attempt) }),
  release: (b) => ({
    chunk: chunkIndex(b.chunk),
    attempt: attemptNo(b.attempt),
    reason: reasonText(b.reason),
  }),
  complete: (b) =>
    compact({
      chunk: chunkIndex(b.chunk),
      attempt: attemptNo(b.attempt),
      outputs: list(b.outputs, 'outputs', LIMITS.maxOutputsPerChunk, output),
      log: optional(b.log, (l) => cid(l, 'log')),
      renderMs: int(b.renderMs, 'renderMs', 0, Number.MAX_SAFE_INTEGER),
    }),
  fail: (b) =>
    compact({
      chunk: chunkIndex(b.chunk),
      attempt: attemptNo(b.attempt),
      reason: reasonText(b.reason),
      log: optional(b.log, (l) => cid(l, 'log')),
    }),
  cancel: () => ({}),
  retry: (b) =>
    compact({
      chunks: optional(b.chunks, (c) => list(c, 'chunks', LIMITS.maxAckChunks, chunkIndex)),
    }),
  priority: (b) => ({
    priority: int(b.priority, 'priority', -LIMITS.maxPriority, LIMITS.maxPriority),
  }),
  ack: (b) => ({ chunks: list(b.chunks, 'chunks', LIMITS.maxAckChunks, chunkIndex) }),
  delete: () => ({}),
  seal: (b) => {
    obj(b.state, 'state')
    return { state: b.state }
  },
  reject: (b) => ({
    chunk: chunkIndex(b.chunk),
    attempt: attemptNo(b.attempt),
    reason: str(b.reason, 'reason', LIMITS.maxRejectReason),
  }),
  abort: (b) => ({ reason: str(b.reason, 'reason', LIMITS.maxAbortReason, 1) }),
  pause: () => ({}),
  resume: () => ({}),
  ready: () => ({}),
  unblock: (b) =>
    compact({ node: optional(b.node, (n) => str(n, 'node', 128, 1) as PeerIdString) }),
}

export function isJobKind(kind: unknown): kind is JobKind {
  return typeof kind === 'string' && (JOB_KINDS as readonly string[]).includes(kind)
}

/** Validate a decoded body for `kind`; total (never throws). */
export function validateBody<K extends JobKind>(kind: K, body: unknown): Validated<BodyOf[K]>
export function validateBody(kind: string, body: unknown): Validated<unknown>
export function validateBody(kind: string, body: unknown): Validated<unknown> {
  if (!isJobKind(kind))
    return { ok: false, reason: `unknown job entry kind: ${String(kind).slice(0, 40)}` }
  return run(() => validators[kind](obj(body, kind)))
}

/** Like validateBody, for local callers (API, CLI): throws InvalidInputError with the reason. */
export function parseBody<K extends JobKind>(kind: K, body: unknown): BodyOf[K] {
  const r = validateBody(kind, body)
  if (!r.ok) throw new InvalidInputError(`invalid ${kind} entry: ${r.reason}`, { kind })
  return r.body
}

export type Capability = 'submit' | 'render'

/** The token capability an author needs to write `kind` in `log`; null when not a job entry. */
export function capabilityFor(log: LogId | string, kind: string): Capability | null {
  if (jobIdOfLog(log) === undefined || !isJobKind(kind)) return null
  switch (kind) {
    case 'claim':
    case 'release':
    case 'complete':
    case 'fail':
      return 'render'
    default:
      return 'submit'
  }
}

/** A fresh short job id (8 base32 chars, 40 bits) from injected randomness. */
export function newJobId(randomBytes: (n: number) => Uint8Array): string {
  const bytes = randomBytes(8)
  let id = ''
  for (let i = 0; i < 8; i++) id += BASE32[bytes[i] & 31]
  return id
}

/** The frames of each chunk, in order: frame chunks first, then the encode chunk if video is asked. */
export function chunkLayout(job: Pick<AnnounceBody, 'frames' | 'chunkSize' | 'output'>): {
  kind: 'frames' | 'encode'
  frames: number[]
}[] {
  const out: { kind: 'frames' | 'encode'; frames: number[] }[] = []
  for (let i = 0; i < job.frames.length; i += job.chunkSize) {
    out.push({ kind: 'frames', frames: job.frames.slice(i, i + job.chunkSize) })
  }
  if (job.output.video) out.push({ kind: 'encode', frames: job.frames.slice() })
  return out
}
