/**
 * The job service: the daemon's use cases around jobs, composed from the parts.
 *  - submit: validate, inspect the scene for defaults, (pack,) import it into the block
 *    store, announce the job in its log;
 *  - collect: for jobs this node submitted, pull each finished output from the peers that
 *    hold it, write it into the output folder with Blender's frame numbering, then ack;
 *  - cancel / retry / priority / delete, logs, fetch (folder or ZIP), and the API views.
 *
 * Invariants:
 *  - only the submitter writes into an output folder, and only under the folder chosen
 *    locally at submit time; file names come from frame numbers, never from peers;
 *  - an ack is appended only after the output file is fully written (temp + rename);
 *  - a done chunk's outputs that cannot be obtained are rejected (the chunk is re-rendered):
 *    at once when its completer answers with bytes that fail the hash check, after
 *    outputGraceMs when the completer lacks them or is unreachable and nobody else
 *    supplied them; never a chunk already written here or acked, nor twice the same attempt;
 *  - a deleted job's blocks are unpinned on every node that sees the delete entry;
 *  - a job this node submitted that no live node can take for noEligibleGraceMs is failed
 *    with an abort entry (no-eligible-watchdog.ts); until then its reason says so.
 */
import { randomBytes } from 'node:crypto'
import { access, mkdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, dirname, extname, isAbsolute, join } from 'node:path'
import type { Level } from 'level'
import type { BlockExchange } from '../blobs/exchange.js'
import { type BlockStore, removeStaleExports } from '../blobs/block-store.js'
import type { ProviderIndex } from '../blobs/providers.js'
import { safeExtension, safeFileName } from '../blobs/safe-name.js'
import type { EventBus } from '../api/events.js'
import type * as Api from '../api/types.js'
import type { Engine, SceneInfo as EngineSceneInfo } from '../engines/types.js'
import { VIDEO_EXTENSION } from '../engines/ffmpeg.js'
import {
  type AnnounceBody,
  LIMITS,
  newJobId,
  type OutputFormat,
  validateBody,
} from '../jobs/entries.js'
import { formatFrames, parseFrameSpec } from '../jobs/frame-spec.js'
import type { LeaseManager } from '../jobs/lease-manager.js'
import { eligibilityVerdict, type MeshNode } from '../jobs/eligibility.js'
import type { ChunkState, JobState } from '../jobs/reducer.js'
import type { LogManager } from '../log/log.js'
import { jobIdOfLog, jobLogId, type LogEntry } from '../log/types.js'
import type { PresenceService } from '../net/presence.js'
import type { Clock } from '../util/clock.js'
import {
  describeError,
  InvalidInputError,
  isRmeshError,
  NotFoundError,
  RmeshError,
} from '../util/errors.js'
import { withDeadline } from '../util/abort.js'
import type { Logger } from '../util/logger.js'
import { outputsPinOwner, scenePinOwner } from '../worker/runner.js'
import { createNoEligibleWatchdog } from './no-eligible-watchdog.js'
import { writeZip } from './zip.js'

export class ConflictError extends RmeshError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('ERR_CONFLICT', message, { details })
    this.name = 'ConflictError'
  }
}

// Each request's own bound, released as soon as the request ends (util/abort.ts).
const INSPECT_DEADLINE_MS = 60_000
const SUBMIT_DEADLINE_MS = 10 * 60_000
const LOGS_DEADLINE_MS = 30_000
const FETCH_DEADLINE_MS = 60 * 60_000
/**
 * How long collected chunks wait to be acknowledged together while the job still has
 * chunks to come. An ack is one log entry every node stores and gossips; one per chunk
 * was a third of the mesh's messages. The renderer keeps its copy until the ack, so a
 * later ack costs nothing but that copy's lifetime; the job's last chunks are acked at once.
 */
const ACK_COALESCE_MS = 1_000

const FORMAT_TO_ENGINE: Partial<Record<Api.OutputFormat, OutputFormat>> = {
  png: 'PNG',
  exr: 'OPEN_EXR',
  jpeg: 'JPEG',
}
const FORMAT_FROM_ENGINE: Record<string, Api.OutputFormat> = {
  PNG: 'png',
  OPEN_EXR: 'exr',
  JPEG: 'jpeg',
  OPEN_EXR_MULTILAYER: 'exr-multilayer',
  TIFF: 'tiff',
}

interface LocalJob {
  jobId: string
  outDir: string
  scenePath: string
  /** Chunk indexes whose outputs are written in outDir. */
  written: number[]
}

export interface JobServiceComponents {
  self: string
  db: Level<string, unknown>
  log: LogManager
  leases: LeaseManager
  blocks: BlockStore
  exchange: BlockExchange
  providers: ProviderIndex
  presence: PresenceService
  engines: { get(name: string): Engine | undefined; names(): string[] }
  worker: { forgetJob(jobId: string): Promise<void> }
  events: EventBus
  clock: Clock
  logger: Logger
  /** This node may submit (its token has the capability). */
  canSubmit: () => boolean
  /** What this node can run (for the "no eligible node" hint). */
  selfEngines: () => readonly { name: string; version: string }[]
  selfSlots: () => number
  /** A passing reason this node takes no renders now (its data disk nearly full). */
  selfPaused?: () => string | undefined
  selfTags?: () => readonly string[]
  selfName?: () => string
  /** A job of ours that no live node can take for this long is failed (abort); default 60 s. */
  noEligibleGraceMs?: number
  /** The no-eligible check waits this long after start for presence to hear the peers. */
  noEligibleWarmupMs?: number
  /** maxQueuedJobs of a submitter's token, when it has one. */
  quotaOf?: (peerId: string) => number | undefined
  /** How long a done chunk's outputs may stay unobtainable before it is rejected (default 20 s). */
  outputGraceMs?: number
  /** TEST ONLY (RMESH_TEST_COLLECT_DELAY_MS): start collecting this long after a complete. */
  collectDelayMs?: number
}

export interface JobService {
  start(): Promise<void>
  stop(): Promise<void>
  inspect(req: Api.InspectRequest, signal?: AbortSignal): Promise<Api.SceneInfo>
  submit(req: Api.SubmitRequest, signal?: AbortSignal): Promise<Api.SubmitResponse>
  list(states?: Api.JobState[]): Api.JobSummary[]
  detail(idOrPrefix: string): Api.JobDetail
  cancel(idOrPrefix: string): Promise<Api.JobSummary>
  retry(idOrPrefix: string, req: Api.RetryRequest): Promise<Api.RetryResponse>
  setPriority(idOrPrefix: string, priority: number): Promise<Api.JobSummary>
  remove(idOrPrefix: string): Promise<Api.DeleteResponse>
  logs(idOrPrefix: string, q: Api.LogsQuery, signal?: AbortSignal): Promise<string>
  fetch(idOrPrefix: string, req: Api.FetchRequest, signal?: AbortSignal): Promise<Api.FetchResponse>
  resolveId(idOrPrefix: string): string
  /** Done chunks this node rejected because their outputs could not be obtained. */
  stats(): { outputsRejected: { hash: number; unavailable: number } }
}

/** Output file name of a frame: Blender's numbering (#### → zero-padded to 4). */
export function frameFileName(frame: number, ext: string): string {
  const n = frame < 0 ? `-${String(-frame).padStart(4, '0')}` : String(frame).padStart(4, '0')
  return `${n}${ext}`
}

function apiJobState(s: JobState['state']): Api.JobState {
  return s
}

export function createJobService(c: JobServiceComponents): JobService {
  const local = c.db.sublevel<string, LocalJob>('local-jobs', { valueEncoding: 'json' })
  const localJobs = new Map<string, LocalJob>()
  const logger = c.logger
  const collecting = new Set<string>()
  const rates = new Map<string, number[]>()
  const endedAt = new Map<string, number>()
  const outputGraceMs = c.outputGraceMs ?? 20_000
  /** `jobId/chunk/completedAttempt` → monotonic time its outputs were first found unobtainable. */
  const unobtainableSince = new Map<string, number>()
  /** Per job: the `chunk/completedAttempt`s this node rejected (a reject is written once). */
  const rejectedByJob = new Map<string, Set<string>>()
  const outputsRejected = { hash: 0, unavailable: 0 }
  let stopped = false
  const pendingEvents = new Map<string, ReturnType<typeof setTimeout>>()
  let unsubscribe: (() => void) | undefined

  const jobOf = (jobId: string): JobState => {
    const s = c.leases.job(jobId)
    if (!s) throw new NotFoundError(`job ${jobId}`, { jobId })
    return s
  }

  const resolveId = (idOrPrefix: string): string => {
    if (typeof idOrPrefix !== 'string' || !/^[a-z2-7]{1,8}$/.test(idOrPrefix)) {
      throw new InvalidInputError(
        `${JSON.stringify(String(idOrPrefix).slice(0, 40))} is not a job id (8 letters and digits, as shown by rmesh jobs)`,
      )
    }
    const ids = c.leases
      .jobs()
      .filter((j) => !j.deleted)
      .map((j) => j.jobId)
    if (ids.includes(idOrPrefix)) return idOrPrefix
    const matches = ids.filter((id) => id.startsWith(idOrPrefix))
    if (matches.length === 1 && idOrPrefix.length >= 4) return matches[0]
    if (matches.length > 1)
      throw new ConflictError(`job id ${idOrPrefix} is ambiguous: ${matches.join(', ')}`, {
        matches,
      })
    throw new NotFoundError(`job ${idOrPrefix} (see rmesh jobs for the ids)`, { jobId: idOrPrefix })
  }

  // ----- views -------------------------------------------------------------------------

  const working = () => {
    const out = new Map<string, { node: string; frame?: number; progress?: number }>()
    for (const [peerId, p] of c.presence.peers()) {
      if (p.state !== 'up') continue
      for (const w of p.presence.doing)
        out.set(`${w.job}/${w.chunk}`, { node: peerId, frame: w.frame, progress: w.progress })
    }
    return out
  }

  const summaryOf = (s: JobState, work = working()): Api.JobSummary => {
    const mine = s.submitter === c.self
    const lj = localJobs.get(s.jobId)
    let framesFailed = 0
    let framesRendering = 0
    const nodes = new Set<string>()
    for (const ch of s.chunks) {
      if (ch.kind !== 'frames') continue
      if (ch.state === 'failed') framesFailed += ch.frames.length
      if (ch.state === 'claimed') {
        if (ch.holder) nodes.add(ch.holder)
        if (work.has(`${s.jobId}/${ch.index}`)) framesRendering += ch.frames.length
      }
    }
    const doneTimes = rates.get(s.jobId) ?? []
    const now = c.clock.wall()
    const recent = doneTimes.filter((t) => now - t < 120_000)
    const windowMs = recent.length > 1 ? Math.max(1_000, now - recent[0]) : 60_000
    const framesPerMinute =
      recent.length > 1 ? Math.round((recent.length / windowMs) * 60_000 * 10) / 10 : 0
    const remaining = s.framesTotal - s.framesDone
    const terminal = s.state === 'done' || s.state === 'failed' || s.state === 'canceled'
    if (terminal && !endedAt.has(s.jobId)) endedAt.set(s.jobId, now)
    const writtenFrames = lj
      ? s.chunks
          .filter((ch) => ch.kind === 'frames' && lj.written.includes(ch.index))
          .reduce((n, ch) => n + ch.frames.length, 0)
      : undefined
    const allWritten = lj ? s.chunks.every((ch) => lj.written.includes(ch.index)) : undefined
    const failedChunk = s.chunks.find((ch) => ch.state === 'failed')
    return {
      jobId: s.jobId,
      name: s.name,
      state: apiJobState(s.state),
      priority: s.priority,
      framesDone: s.framesDone,
      framesFailed,
      framesRendering,
      framesTotal: s.framesTotal,
      nodesRendering: nodes.size,
      submitter: s.submitter,
      mine,
      outDir: lj?.outDir,
      framesLocal: writtenFrames,
      localComplete: allWritten,
      etaMs:
        !terminal && framesPerMinute > 0
          ? Math.round((remaining / framesPerMinute) * 60_000)
          : undefined,
      framesPerMinute,
      createdAt: s.createdAt,
      endedAt: terminal ? endedAt.get(s.jobId) : undefined,
      reason:
        s.state === 'failed'
          ? (s.abortReason ??
            (failedChunk
              ? `chunk ${failedChunk.index} failed on ${failedChunk.failures.length} nodes: ${failedChunk.failures.at(-1)?.reason ?? ''}`
              : 'no eligible node'))
          : s.state === 'canceled'
            ? 'canceled'
            : !terminal
              ? waitingHint(s)
              : undefined,
    }
  }

  /** The live nodes of the mesh as presence reports them, this one included. */
  const meshNodes = (): MeshNode[] => {
    const out: MeshNode[] = [
      {
        id: c.self as MeshNode['id'],
        name: c.selfName?.(),
        engines: c.selfEngines(),
        slots: c.selfSlots(),
        paused: c.selfPaused?.(),
        tags: c.selfTags?.() ?? [],
      },
    ]
    for (const [peerId, p] of c.presence.peers()) {
      if (p.state !== 'up' || peerId === c.self) continue
      const { name, engines, slots, paused, tags } = p.presence
      out.push({ id: peerId as MeshNode['id'], name, engines, slots, paused, tags })
    }
    return out
  }

  /** "waiting: …" while some chunk of the job has no live node to take it. */
  const waitingHint = (s: JobState): string | undefined => {
    const v = eligibilityVerdict(s, meshNodes())
    if (v.ok) return undefined
    const left = watchdog.remainingMs(s.jobId)
    return left === undefined
      ? `waiting: ${v.why} (see rmesh peers)`
      : `waiting: ${v.why} (fails in ${Math.ceil(left / 1000)} s unless a node that can run it appears)`
  }

  const watchdog = createNoEligibleWatchdog(
    {
      self: c.self,
      clock: c.clock,
      jobs: () => c.leases.jobs(),
      nodes: meshNodes,
      abort: async (jobId, reason) => {
        await c.log.append(jobLogId(jobId), 'abort', { reason })
      },
      logger,
    },
    { graceMs: c.noEligibleGraceMs, warmupMs: c.noEligibleWarmupMs },
  )

  const frameInfos = (s: JobState, work = working()): Api.FrameInfo[] => {
    const lj = localJobs.get(s.jobId)
    const out: Api.FrameInfo[] = []
    for (const ch of s.chunks) {
      if (ch.kind !== 'frames') continue
      const w = work.get(`${s.jobId}/${ch.index}`)
      for (const frame of ch.frames) {
        const state: Api.FrameState =
          ch.state === 'done'
            ? 'done'
            : ch.state === 'failed'
              ? 'failed'
              : ch.state === 'claimed'
                ? w
                  ? 'rendering'
                  : 'claimed'
                : 'open'
        const info: Api.FrameInfo = {
          frame,
          state,
          node: ch.state === 'done' ? (ch.completedBy ?? null) : (ch.holder ?? null),
          attempts: ch.attempt,
        }
        if (ch.renderMs !== undefined)
          info.renderMs = Math.round(ch.renderMs / Math.max(1, ch.frames.length))
        if (w && w.frame === frame && w.progress !== undefined) info.progress = w.progress
        const failure = ch.failures.at(-1)
        if (failure) {
          info.error = failure.reason
          info.errorNode = failure.node
        }
        if (lj?.written.includes(ch.index)) {
          const o = ch.outputs?.find((x) => x.frame === frame)
          if (o) info.outputs = [join(lj.outDir, frameFileName(frame, safeExtension(o.name)))]
        }
        out.push(info)
      }
    }
    return out
  }

  const videoInfo = (s: JobState): Api.VideoInfo | undefined => {
    const ch = s.chunks.find((x) => x.kind === 'encode')
    const codec = s.job.output.video
    if (!ch || !codec) return undefined
    const lj = localJobs.get(s.jobId)
    const state: Api.VideoInfo['state'] =
      ch.state === 'done'
        ? 'done'
        : ch.state === 'failed'
          ? 'failed'
          : ch.state === 'claimed'
            ? 'encoding'
            : 'waiting'
    const info: Api.VideoInfo = { codec, state, node: ch.completedBy ?? ch.holder ?? null }
    if (lj?.written.includes(ch.index)) info.path = join(lj.outDir, videoName(s))
    if (ch.failures.length) info.error = ch.failures.at(-1)?.reason
    return info
  }

  const videoName = (s: JobState) =>
    `${safeFileName(s.name, 'video')}.${VIDEO_EXTENSION[s.job.output.video ?? 'h264']}`

  const detailOf = (s: JobState): Api.JobDetail => {
    const work = working()
    const lj = localJobs.get(s.jobId)
    return {
      ...summaryOf(s, work),
      scene: {
        path: lj?.scenePath ?? s.job.scene.name,
        name: s.job.scene.name,
        sizeBytes: s.job.scene.size,
      },
      engine: s.job.engine.name,
      format: FORMAT_FROM_ENGINE[s.job.output.format] ?? 'png',
      chunkSize: s.job.chunkSize,
      require: s.job.engine.version ? [`${s.job.engine.name}${s.job.engine.version}`] : [],
      params: s.job.params,
      frames: frameInfos(s, work),
      chunks: s.chunks.map((ch) => ({
        index: ch.index,
        frames: ch.frames,
        state:
          ch.state === 'done'
            ? 'done'
            : ch.state === 'failed'
              ? 'failed'
              : ch.state === 'claimed'
                ? work.has(`${s.jobId}/${ch.index}`)
                  ? 'rendering'
                  : 'claimed'
                : 'open',
        node: ch.completedBy ?? ch.holder ?? null,
        attempt: ch.attempt,
      })),
      video: videoInfo(s),
      blocklist: s.blocklist,
    }
  }

  // ----- collecting outputs of this node's jobs --------------------------------------

  const saveLocal = async (lj: LocalJob) => {
    localJobs.set(lj.jobId, lj)
    await local.put(lj.jobId, lj)
  }

  const providersFor = (manifest: string, known: string[]) =>
    c.providers
      .findProviders(manifest, { known, timeoutMs: 2_000 })
      .catch(() => known.filter((p) => p !== c.self))

  /** Make sure a manifest is complete locally (fetching from holders), then export it. */
  const materialize = async (
    manifest: string,
    holders: string[],
    dest: string,
    pinOwner: string,
    signal?: AbortSignal,
  ) => {
    if ((await c.blocks.missingBlocks(manifest).catch(() => ['?'])).length > 0) {
      await c.exchange.fetchManifest(manifest, {
        providers: await providersFor(manifest, holders),
        signal,
        pinOwner,
      })
    } else {
      await c.blocks.pin(pinOwner, manifest)
    }
    // exportFile writes a temporary file and renames it into place when whole.
    await c.blocks.exportFile(manifest, dest, { signal })
  }

  const swept = new Set<string>()
  const collect = async (jobId: string) => {
    if (collecting.has(jobId) || stopped) return
    const lj = localJobs.get(jobId)
    const s = c.leases.job(jobId)
    if (!lj) return
    if (!s) {
      // At start-up the lease manager has not loaded the logs yet: a job that finished
      // while this node was down gets no new complete entry to trigger collection.
      setTimeout(() => void collect(jobId), 1_000).unref()
      return
    }
    if (s.deleted) return
    collecting.add(jobId)
    try {
      if (!swept.has(jobId)) {
        // Once per job and process: a submitter killed mid-write left a temporary file.
        swept.add(jobId)
        const removed = await removeStaleExports(lj.outDir)
        if (removed > 0) c.logger.info('removed half-written outputs', { jobId, removed })
      }
      let unacked: number[] = []
      let firstUnackedAt = 0
      const ack = async () => {
        if (unacked.length === 0) return
        const chunks = unacked.sort((a, b) => a - b)
        unacked = []
        await c.log.append(jobLogId(jobId), 'ack', { chunks })
      }
      try {
        for (;;) {
          const cur = c.leases.job(jobId)
          if (!cur || cur.deleted || stopped) return
          const todo = cur.chunks.filter(
            (ch) => ch.state === 'done' && !lj.written.includes(ch.index) && ch.outputs,
          )
          if (todo.length === 0) {
            const more = cur.chunks.some((ch) => ch.state !== 'done')
            if (unacked.length > 0 && more && Date.now() - firstUnackedAt < ACK_COALESCE_MS) {
              await new Promise((r) => setTimeout(r, 100))
              continue
            }
            break
          }
          const acked = await collectChunks(cur, todo)
          if (acked.length === 0) {
            // Nothing could be pulled now (holders offline?): try again later.
            setTimeout(() => void collect(jobId), 3_000).unref()
            break
          }
          if (unacked.length === 0) firstUnackedAt = Date.now()
          unacked.push(...acked)
          scheduleEvents(jobId)
        }
      } finally {
        // Whatever was written is acknowledged, also when the loop ends early.
        if (!c.leases.job(jobId)?.deleted) await ack()
      }
    } finally {
      collecting.delete(jobId)
    }
  }

  /** Pull the outputs of `todo` into the output folder; the indexes of those written. */
  const collectChunks = async (cur: JobState, todo: JobState['chunks']): Promise<number[]> => {
    const lj = localJobs.get(cur.jobId)
    if (!lj) return []
    const acked: number[] = []
    await Promise.all(
      todo.map(async (ch) => {
        try {
          await writeChunk(cur, ch, lj)
          lj.written.push(ch.index)
          acked.push(ch.index)
        } catch (err) {
          if (await rejectIfUnobtainable(cur, ch)) return
          logger.warn('could not collect outputs yet; will retry', {
            jobId: cur.jobId,
            chunk: ch.index,
            err: describeError(err),
          })
        }
      }),
    )
    if (acked.length > 0) {
      lj.written.sort((a, b) => a - b)
      await saveLocal(lj)
    }
    return acked
  }

  /**
   * Why a failed collection cannot succeed, asked of the completer (the one peer that
   * must hold the outputs) for the first thing still missing of each output: 'corrupt'
   * when it answers with bytes that fail the hash check (or otherwise misbehaves),
   * 'missing' when it lacks them or cannot be reached, 'ok' when it serves them (the
   * failure was transient or local: never a reason to reject).
   */
  const probeCompleter = async (
    ch: ChunkState,
  ): Promise<{ verdict: 'ok' | 'missing' | 'corrupt'; why?: string }> => {
    const node = ch.completedBy
    if (!node) return { verdict: 'ok' }
    for (const o of ch.outputs ?? []) {
      let cid = o.manifest
      if (await c.blocks.hasManifest(o.manifest).catch(() => false)) {
        const missing = await c.blocks.missingBlocks(o.manifest).catch(() => [] as string[])
        if (missing.length === 0) continue
        cid = missing[0]
      }
      if (node === c.self) return { verdict: 'missing', why: 'this node lost them' }
      try {
        const bytes = await c.exchange.requestOne(node, cid, { timeoutMs: 10_000 })
        if (!bytes) return { verdict: 'missing', why: 'does not have them' }
      } catch (err) {
        if (isRmeshError(err, 'ERR_PEER_MISBEHAVED'))
          return { verdict: 'corrupt', why: String(err.details?.reason ?? err.message) }
        return { verdict: 'missing', why: 'is gone' }
      }
    }
    return { verdict: 'ok' }
  }

  /** After a failed collection: reject the chunk if its outputs cannot be obtained. */
  const rejectIfUnobtainable = async (s: JobState, ch: ChunkState): Promise<boolean> => {
    const attempt = ch.completedAttempt
    if (s.canceled || s.deleted || ch.acked || attempt === undefined || stopped) return false
    const instance = `${ch.index}/${attempt}`
    const key = `${s.jobId}/${instance}`
    const rejected = rejectedByJob.get(s.jobId) ?? new Set<string>()
    if (rejected.has(instance)) return false
    const { verdict, why } = await probeCompleter(ch)
    const now = c.clock.monotonic()
    if (verdict === 'ok') {
      unobtainableSince.delete(key)
      return false
    }
    const since = unobtainableSince.get(key) ?? now
    unobtainableSince.set(key, since)
    if (verdict === 'missing' && now - since < outputGraceMs) return false
    // Re-read: the chunk may have been written, acked or rejected meanwhile.
    const cur = c.leases.job(s.jobId)?.chunks[ch.index]
    if (cur?.state !== 'done' || cur.acked || cur.completedAttempt !== attempt) return false
    if (localJobs.get(s.jobId)?.written.includes(ch.index)) return false
    const node = ch.completedBy ?? 'unknown'
    const name = c.presence.peers().get(node)?.presence.name ?? node.slice(-8)
    const what =
      ch.kind === 'encode'
        ? 'the video'
        : `frame${ch.frames.length > 1 ? 's' : ''} ${formatFrames(ch.frames)}`
    const reason = (
      verdict === 'corrupt'
        ? `outputs of ${what} failed their hash check from ${name} (${why})`
        : `outputs of ${what} unavailable for ${Math.round((now - since) / 1000)} s: ${name} ${why}`
    ).slice(0, LIMITS.maxRejectReason)
    await c.log.append(jobLogId(s.jobId), 'reject', { chunk: ch.index, attempt, reason })
    rejected.add(instance)
    rejectedByJob.set(s.jobId, rejected)
    unobtainableSince.delete(key)
    outputsRejected[verdict === 'corrupt' ? 'hash' : 'unavailable']++
    logger.warn('rejected outputs that cannot be obtained; the chunk will be re-rendered', {
      jobId: s.jobId,
      chunk: ch.index,
      attempt,
      node,
      reason,
    })
    return true
  }

  const writeChunk = async (s: JobState, ch: ChunkState, lj: LocalJob) => {
    await mkdir(lj.outDir, { recursive: true })
    const holders = ch.completedBy ? [ch.completedBy] : []
    for (const o of ch.outputs ?? []) {
      const name =
        ch.kind === 'encode' ? videoName(s) : frameFileName(o.frame, safeExtension(o.name))
      await materialize(o.manifest, holders, join(lj.outDir, name), `job-collected/${s.jobId}`)
    }
  }

  // ----- events ------------------------------------------------------------------------

  const scheduleEvents = (jobId: string) => {
    if (pendingEvents.has(jobId)) return
    pendingEvents.set(
      jobId,
      setTimeout(() => {
        pendingEvents.delete(jobId)
        const s = c.leases.job(jobId)
        if (!s) return
        if (s.deleted) {
          c.events.publish({ type: 'job-removed', jobId })
          return
        }
        c.events.publish({ type: 'job-updated', job: summaryOf(s) })
      }, 30),
    )
  }

  const onEntry = (entry: LogEntry) => {
    const jobId = jobIdOfLog(entry.log)
    if (!jobId) return
    if (entry.kind === 'complete') {
      const arr = rates.get(jobId) ?? []
      const s = c.leases.job(jobId)
      const chunk = (entry.body as { chunk?: number }).chunk
      const frames = s?.chunks[chunk ?? -1]?.frames.length ?? 1
      for (let i = 0; i < frames; i++) arr.push(c.clock.wall())
      rates.set(jobId, arr.slice(-500))
    }
    // The reducer inside the lease manager sees the entry in the same tick; read after it.
    queueMicrotask(() => {
      const s = c.leases.job(jobId)
      scheduleEvents(jobId)
      if (!s) return
      if ('chunk' in (entry.body as object)) {
        const idx = (entry.body as { chunk: number }).chunk
        const ch = s.chunks[idx]
        if (ch && ch.kind === 'frames') {
          for (const f of frameInfos(s).filter((fi) => ch.frames.includes(fi.frame)))
            c.events.publish({ type: 'frame-updated', jobId, frame: f })
        } else if (ch) {
          const v = videoInfo(s)
          if (v) c.events.publish({ type: 'video-updated', jobId, video: v })
        }
      }
      if (s.deleted) void cleanupDeleted(jobId)
      else if (localJobs.has(jobId) && entry.kind === 'complete') {
        if (c.collectDelayMs) setTimeout(() => void collect(jobId), c.collectDelayMs).unref()
        else void collect(jobId)
      } else if (entry.kind === 'ack' && s.submitter !== c.self)
        void releaseAcked(s, (entry.body as { chunks?: unknown }).chunks)
    })
  }

  /** The submitter holds these outputs now: a renderer lets go of its copies. */
  const releaseAcked = async (s: JobState, chunks: unknown) => {
    if (!Array.isArray(chunks)) return
    let released = 0
    for (const i of chunks) {
      const ch = typeof i === 'number' ? s.chunks[i] : undefined
      if (!ch || ch.completedBy !== c.self) continue
      for (const cid of [
        ...(ch.outputs ?? []).map((o) => o.manifest),
        ...(ch.log ? [ch.log] : []),
      ]) {
        await c.blocks.unpin(outputsPinOwner(s.jobId), cid).catch(() => {})
        released++
      }
    }
    if (released > 0) scheduleGc()
  }

  let gcTimer: ReturnType<typeof setTimeout> | undefined
  const scheduleGc = () => {
    if (gcTimer || stopped) return
    gcTimer = setTimeout(() => {
      gcTimer = undefined
      // The grace keeps blocks of imports still in flight (written, not yet pinned).
      void c.blocks
        .gc({ graceMs: 5 * 60_000 })
        .catch((err) => logger.warn('gc failed', { err: describeError(err) }))
    }, 30_000)
    gcTimer.unref?.()
  }

  const cleanupDeleted = async (jobId: string) => {
    // Per-job view state, else kept for every job ever deleted.
    rates.delete(jobId)
    endedAt.delete(jobId)
    rejectedByJob.delete(jobId)
    for (const k of unobtainableSince.keys())
      if (k.startsWith(`${jobId}/`)) unobtainableSince.delete(k)
    await c.worker.forgetJob(jobId)
    for (const owner of [outputsPinOwner(jobId), scenePinOwner(jobId), `job-collected/${jobId}`])
      await c.blocks.unpin(owner).catch(() => {})
    // Not zero: another job's output is unpinned between its import and its pin, and a
    // grace-free GC here deleted it under a complete entry (found by the soak).
    await c.blocks.gc({ graceMs: 60_000 }).catch(() => {})
  }

  // ----- use cases ---------------------------------------------------------------------

  const blender = () => {
    const e = c.engines.get('blender')
    if (!e?.inspect)
      throw new RmeshError(
        'ERR_ENGINE',
        'Blender is not installed on this node; install it (sudo apt-get install blender) or submit from a node that has it',
      )
    return e as Engine &
      Required<Pick<Engine, 'inspect'>> & {
        packScene?: (src: string, dest: string, o: { signal: AbortSignal }) => Promise<unknown>
      }
  }

  const checkScenePath = async (path: unknown): Promise<string> => {
    if (typeof path !== 'string' || path.length === 0 || path.length > 4096)
      throw new InvalidInputError('scenePath must be an absolute path to a .blend file', {
        field: 'scenePath',
      })
    if (!isAbsolute(path))
      throw new InvalidInputError(`scenePath must be absolute, got ${path}`, { field: 'scenePath' })
    if (extname(path).toLowerCase() !== '.blend')
      throw new InvalidInputError(
        `${basename(path)} is not a .blend file; rmesh renders Blender scenes (.blend)`,
        { field: 'scenePath' },
      )
    try {
      const st = await stat(path)
      if (!st.isFile()) throw new InvalidInputError(`${path} is not a file`, { field: 'scenePath' })
    } catch (err) {
      if (err instanceof RmeshError) throw err
      throw new NotFoundError(`scene ${path}`, { field: 'scenePath' })
    }
    return path
  }

  const toApiScene = (path: string, size: number, info: EngineSceneInfo): Api.SceneInfo => ({
    path,
    engine: 'blender',
    sizeBytes: size,
    savedWith: info.blenderVersion,
    frameStart: info.frameStart,
    frameEnd: info.frameEnd,
    frameStep: info.frameStep,
    fps: info.fps,
    resolution: { x: info.resolutionX, y: info.resolutionY, percent: info.resolutionPercentage },
    renderEngine: info.renderEngine,
    format: FORMAT_FROM_ENGINE[info.outputFormat] ?? info.outputFormat,
    camera: info.camera ?? undefined,
    missingFiles: info.missingFiles,
    externalFiles: info.externalFiles.length,
  })

  const inspect = (req: Api.InspectRequest, callerSignal?: AbortSignal): Promise<Api.SceneInfo> =>
    withDeadline(INSPECT_DEADLINE_MS, callerSignal, (signal) => inspectWithin(req, signal))

  const inspectWithin = async (
    req: Api.InspectRequest,
    signal: AbortSignal,
  ): Promise<Api.SceneInfo> => {
    const path = await checkScenePath(req?.path)
    const info = await blender().inspect(path, { signal })
    return toApiScene(path, (await stat(path)).size, info)
  }

  const int = (v: unknown, field: string, min: number, max: number, dflt: number): number => {
    if (v === undefined || v === null) return dflt
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      throw new InvalidInputError(`${field} must be a whole number from ${min} to ${max}`, {
        field,
      })
    return v
  }

  const submit = (
    req: Api.SubmitRequest,
    callerSignal?: AbortSignal,
  ): Promise<Api.SubmitResponse> =>
    withDeadline(SUBMIT_DEADLINE_MS, callerSignal, (signal) => submitWithin(req, signal))

  const submitWithin = async (
    req: Api.SubmitRequest,
    signal: AbortSignal,
  ): Promise<Api.SubmitResponse> => {
    if (!req || typeof req !== 'object')
      throw new InvalidInputError('submit needs a JSON object body')
    if (!c.canSubmit())
      throw new RmeshError(
        'ERR_FORBIDDEN',
        'this node may not submit: its token lacks the submit capability (ask an admin: rmesh token issue --peer <this id> --caps submit,render)',
      )
    const scenePath = await checkScenePath(req.scenePath)
    const quota = c.quotaOf?.(c.self)
    if (quota !== undefined) {
      const unfinished = c.leases
        .jobs()
        .filter(
          (j) => j.submitter === c.self && (j.state === 'queued' || j.state === 'rendering'),
        ).length
      if (unfinished >= quota) {
        throw new RmeshError(
          'ERR_QUOTA',
          `this node's token allows ${quota} unfinished job(s) and ${unfinished} are queued or rendering; wait for one to end or cancel one`,
          { details: { quota, unfinished } },
        )
      }
    }
    const engineName = req.engine ?? 'blender'
    if (typeof engineName !== 'string' || !/^[a-z][a-z0-9-]{0,31}$/.test(engineName))
      throw new InvalidInputError('engine must be a short name', { field: 'engine' })
    const engine = c.engines.get(engineName)
    if (!engine)
      throw new InvalidInputError(
        `engine ${engineName} is not known on this node (known: ${c.engines.names().join(', ')})`,
        { field: 'engine' },
      )
    // Checked here, but the caller's own values are announced: each renderer's engine
    // normalizes them again, and job entries carry only scalar params.
    engine.validate(req.params ?? {})

    let info: EngineSceneInfo | undefined
    if (engine.inspect) info = await engine.inspect(scenePath, { signal })
    if (info && info.missingFiles.length > 0 && !req.pack) {
      throw new RmeshError(
        'ERR_SCENE_MISSING_ASSET',
        `the scene references missing files: ${info.missingFiles.slice(0, 5).join(', ')}; fix the paths in Blender (File > External Data > Find Missing Files)`,
        { details: { missing: info.missingFiles } },
      )
    }
    const step = int(req.step, 'step', 1, 1000, info?.frameStep ?? 1)
    const frames =
      typeof req.frames === 'string' && req.frames.trim() !== ''
        ? parseFrameSpec(req.frames, { step })
        : info
          ? parseFrameSpec(`${info.frameStart}-${info.frameEnd}`, { step })
          : parseFrameSpec('1', {})
    const chunkSize = int(req.chunk, 'chunk', 1, 1000, 1)
    const priority = int(req.priority, 'priority', 0, 100, 50)
    let format: OutputFormat = 'PNG'
    if (req.format !== undefined) {
      const f = FORMAT_TO_ENGINE[req.format]
      if (!f)
        throw new InvalidInputError(
          `format ${String(req.format)} is not supported; use png, exr or jpeg`,
          { field: 'format' },
        )
      format = f
    } else if (info && ['PNG', 'OPEN_EXR', 'JPEG'].includes(info.outputFormat))
      format = info.outputFormat as OutputFormat
    if (req.video !== undefined && !['h264', 'vp9', 'av1'].includes(req.video))
      throw new InvalidInputError('video must be h264, vp9 or av1', { field: 'video' })
    const name = req.name === undefined ? basename(scenePath, extname(scenePath)) : String(req.name)
    if (!/^[^\0/\\]{1,100}$/.test(name))
      throw new InvalidInputError('name must be 1–100 characters without slashes', {
        field: 'name',
      })
    let requirement: string | undefined
    for (const r of req.require ?? []) {
      const m = /^([a-z][a-z0-9-]*)\s*((?:>=|<=|>|<|=|\^|~)?\s*\d+(?:\.\d+){0,2})$/.exec(String(r))
      if (!m)
        throw new InvalidInputError(`requirement ${JSON.stringify(r)} is not like 'blender>=3.4'`, {
          field: 'require',
        })
      if (m[1] !== engineName)
        throw new InvalidInputError(`requirement ${r} names another engine than ${engineName}`, {
          field: 'require',
        })
      requirement = m[2].replace(/\s+/g, '')
    }

    const jobId = newJobId((n) => new Uint8Array(randomBytes(n)))
    const outDir = req.outDir ?? join(dirname(scenePath), 'renders', safeFileName(name, jobId))
    if (!isAbsolute(outDir))
      throw new InvalidInputError('outDir must be an absolute path', { field: 'outDir' })

    // Pack external assets into a copy so every node renders what the artist sees.
    let toImport = scenePath
    let packedDir: string | undefined
    if (req.pack) {
      const b = blender()
      if (!b.packScene) throw new RmeshError('ERR_ENGINE', 'this Blender engine cannot pack scenes')
      packedDir = join(tmpdir(), `rmesh-pack-${jobId}`)
      await mkdir(packedDir, { recursive: true })
      toImport = join(packedDir, basename(scenePath))
      await b.packScene(scenePath, toImport, { signal })
    }
    let imported: Awaited<ReturnType<BlockStore['importFile']>>
    try {
      imported = await c.blocks.importFile(toImport, { name: basename(scenePath), signal })
    } finally {
      if (packedDir) await rm(packedDir, { recursive: true, force: true }).catch(() => {})
    }
    await c.blocks.pin(scenePinOwner(jobId), imported.manifest)
    const lj: LocalJob = { jobId, outDir, scenePath, written: [] }
    await saveLocal(lj)
    const announce: AnnounceBody = {
      jobId,
      name,
      submitter: c.self as AnnounceBody['submitter'],
      scene: {
        manifest: imported.manifest,
        name: safeFileName(basename(scenePath), 'scene.blend'),
        size: imported.size,
      },
      engine: requirement ? { name: engineName, version: requirement } : { name: engineName },
      frames,
      chunkSize,
      output: req.video
        ? { format, video: req.video, fps: info?.fps ?? 24 }
        : { format, fps: info?.fps ?? 24 },
      priority,
      persistent: req.persistent ?? false,
      params: (req.params ?? {}) as AnnounceBody['params'],
      requirements: {},
      limits: {},
    }
    // Every node ignores an invalid announce: refuse it here rather than lose the job silently.
    const valid = validateBody('announce', announce)
    if (!valid.ok) {
      await c.blocks.unpin(scenePinOwner(jobId)).catch(() => {})
      throw new InvalidInputError(`the job cannot be announced: ${valid.reason}`)
    }
    await c.log.append(jobLogId(jobId), 'announce', announce)
    void c.providers.announce([imported.manifest], { dht: 'deferred' }).catch(() => {})
    logger.info('job submitted', { jobId, name, frames: frames.length, outDir })
    return { jobId, name, framesTotal: frames.length, outDir }
  }

  const requireOwnerOrAdmin = (s: JobState) => {
    // The reducer ignores cancel/retry/priority/delete from anyone but the submitter
    // (and admins, where configured); refuse early here with a clear message.
    if (s.submitter !== c.self) {
      throw new RmeshError(
        'ERR_FORBIDDEN',
        `job ${s.jobId} was submitted by another node (${s.submitter}); run this command there`,
      )
    }
  }

  return {
    resolveId,
    stats: () => ({ outputsRejected: { ...outputsRejected } }),
    async start() {
      for await (const [, lj] of local.iterator()) localJobs.set(lj.jobId, lj)
      unsubscribe = c.log.onEntry((e) => onEntry(e))
      for (const jobId of localJobs.keys()) void collect(jobId)
      watchdog.start()
    },
    async stop() {
      stopped = true
      watchdog.stop()
      unsubscribe?.()
      if (gcTimer) clearTimeout(gcTimer)
      for (const t of pendingEvents.values()) clearTimeout(t)
    },
    inspect,
    submit,
    list(states) {
      const work = working()
      return c.leases
        .jobs()
        .filter((s) => !s.deleted && (!states || states.includes(s.state)))
        .sort((a, b) => b.createdAt - a.createdAt || (a.jobId < b.jobId ? -1 : 1))
        .map((s) => summaryOf(s, work))
    },
    detail(id) {
      return detailOf(jobOf(resolveId(id)))
    },
    async cancel(id) {
      const s = jobOf(resolveId(id))
      requireOwnerOrAdmin(s)
      if (s.state === 'done' || s.state === 'failed' || s.state === 'canceled')
        throw new ConflictError(`job ${s.jobId} has already ended (${s.state})`)
      await c.log.append(jobLogId(s.jobId), 'cancel', {})
      return summaryOf(jobOf(s.jobId))
    },
    async retry(id, req) {
      const s = jobOf(resolveId(id))
      requireOwnerOrAdmin(s)
      let chunks: number[]
      if (req?.frames) {
        const frames = new Set(parseFrameSpec(req.frames))
        chunks = s.chunks.filter((ch) => ch.frames.some((f) => frames.has(f))).map((ch) => ch.index)
        if (chunks.length === 0)
          throw new InvalidInputError(`none of frames ${req.frames} belong to job ${s.jobId}`, {
            field: 'frames',
          })
      } else {
        chunks = s.chunks.filter((ch) => ch.state === 'failed').map((ch) => ch.index)
        // An aborted job (no eligible node remained) has no failed chunk: retry revives it.
        if (chunks.length === 0 && s.abortReason === undefined)
          throw new ConflictError(`job ${s.jobId} has no failed frames to retry`)
      }
      await c.log.append(jobLogId(s.jobId), 'retry', { chunks })
      const aborted = s.abortReason !== undefined
      const reopened = [
        ...new Set(
          s.chunks
            .filter((ch) => chunks.includes(ch.index) || (aborted && ch.state !== 'done'))
            .flatMap((ch) => ch.frames),
        ),
      ]
      return { jobId: s.jobId, reopened }
    },
    async setPriority(id, priority) {
      const s = jobOf(resolveId(id))
      requireOwnerOrAdmin(s)
      const p = int(priority, 'priority', 0, 100, 50)
      await c.log.append(jobLogId(s.jobId), 'priority', { priority: p })
      return summaryOf(jobOf(s.jobId))
    },
    async remove(id) {
      const s = jobOf(resolveId(id))
      requireOwnerOrAdmin(s)
      if (s.state === 'queued' || s.state === 'rendering')
        throw new ConflictError(
          `job ${s.jobId} is still ${s.state}: cancel it first (rmesh cancel ${s.jobId})`,
        )
      await c.log.append(jobLogId(s.jobId), 'delete', {})
      localJobs.delete(s.jobId)
      await local.del(s.jobId)
      await cleanupDeleted(s.jobId)
      return { jobId: s.jobId, deleted: true }
    },
    logs(id, q, callerSignal) {
      return withDeadline(LOGS_DEADLINE_MS, callerSignal, async (signal) => {
        const s = jobOf(resolveId(id))
        if (q.frame === undefined) {
          const entries = await c.log.entries(jobLogId(s.jobId))
          return `${entries.map((e) => `${new Date(e.wall).toISOString()} ${e.author.slice(-8)} ${e.kind} ${JSON.stringify(e.body).slice(0, 200)}`).join('\n')}\n`
        }
        const ch = s.chunks.find((x) => x.frames.includes(q.frame!))
        if (!ch) throw new NotFoundError(`frame ${q.frame} in job ${s.jobId}`)
        const logCid =
          ch.log ??
          (
            [...ch.failures].reverse().find((f) => (f as { log?: string }).log) as
              | { log?: string }
              | undefined
          )?.log
        if (!logCid)
          throw new NotFoundError(
            `a log for frame ${q.frame} yet (it has not finished an attempt; use --follow to watch it live)`,
          )
        const dest = join(tmpdir(), `rmesh-log-${randomBytes(6).toString('hex')}`)
        try {
          await materialize(
            logCid,
            [ch.completedBy, ...ch.failures.map((f) => f.node)].filter(
              (x): x is NonNullable<typeof x> => !!x,
            ),
            dest,
            `job-collected/${s.jobId}`,
            signal,
          )
          let text = await readFile(dest, 'utf8')
          if (q.tail)
            text = `${text
              .split('\n')
              .slice(-q.tail - 1)
              .join('\n')}`
          return text
        } finally {
          await rm(dest, { force: true })
        }
      })
    },
    fetch(id, req, callerSignal) {
      return withDeadline(FETCH_DEADLINE_MS, callerSignal, async (signal) => {
        const s = jobOf(resolveId(id))
        if (!req || typeof req.out !== 'string' || !isAbsolute(req.out))
          throw new InvalidInputError('out must be an absolute path', { field: 'out' })
        const staging = req.zip
          ? join(tmpdir(), `rmesh-fetch-${randomBytes(6).toString('hex')}`)
          : req.out
        await mkdir(staging, { recursive: true })
        const files: { name: string; path: string }[] = []
        const missing: number[] = []
        try {
          for (const ch of s.chunks) {
            if (ch.state !== 'done' || !ch.outputs) {
              if (ch.kind === 'frames') missing.push(...ch.frames)
              continue
            }
            for (const o of ch.outputs) {
              const name =
                ch.kind === 'encode' ? videoName(s) : frameFileName(o.frame, safeExtension(o.name))
              const path = join(staging, name)
              try {
                await access(path)
              } catch {
                await materialize(
                  o.manifest,
                  ch.completedBy ? [ch.completedBy] : [],
                  path,
                  `job-collected/${s.jobId}`,
                  signal,
                )
              }
              files.push({ name, path })
            }
          }
          let bytes = 0
          if (req.zip) {
            await mkdir(dirname(req.out), { recursive: true })
            bytes = (await writeZip(req.out, files)).bytes
          } else {
            for (const f of files) bytes += (await stat(f.path)).size
          }
          return { jobId: s.jobId, out: req.out, files: files.length, bytes, missing }
        } finally {
          if (req.zip) await rm(staging, { recursive: true, force: true })
        }
      })
    },
  }
}
