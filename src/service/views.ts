/**
 * The API's views of jobs (summaries, details, frames, the video) computed from the reduced
 * state, presence (who renders what now) and this node's own record of its jobs; and the
 * no-eligible watchdog, whose countdown the summaries show.
 *
 * Invariants: views only read; the per-job figures kept here (completion times for the rate,
 * the time a job ended) are bounded per job and dropped by `forget` when the job is deleted.
 */
import { join } from 'node:path'
import type * as Api from '../api/types.js'
import { safeExtension } from '../blobs/safe-name.js'
import { eligibilityVerdict, type MeshNode } from '../jobs/eligibility.js'
import type { ChunkState, JobState } from '../jobs/reducer.js'
import { jobLogId } from '../log/types.js'
import { FORMAT_FROM_ENGINE, frameFileName, type ServiceContext } from './context.js'
import { createNoEligibleWatchdog } from './no-eligible-watchdog.js'

export interface JobViews {
  summaryOf(s: JobState): Api.JobSummary
  detailOf(s: JobState): Api.JobDetail
  /** Every frame of the job, or only those of `chunk` (one entry's worth, for an event). */
  frameInfos(s: JobState, chunk?: ChunkState): Api.FrameInfo[]
  videoInfo(s: JobState): Api.VideoInfo | undefined
  list(states?: Api.JobState[]): Api.JobSummary[]
  /** Chunk completions of a job, for its frame rate. */
  noteCompleted(jobId: string, frames: number): void
  forget(jobId: string): void
  start(): void
  stop(): void
}

function apiJobState(s: JobState['state']): Api.JobState {
  return s
}

export function createJobViews(ctx: ServiceContext): JobViews {
  const { c } = ctx
  const logger = ctx.logger
  const rates = new Map<string, number[]>()
  const endedAt = new Map<string, number>()

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
    const lj = ctx.localJobs.get(s.jobId)
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
            : s.state === 'paused'
              ? `paused: no new chunk starts until rmesh resume ${s.jobId}`
              : s.state === 'waiting'
                ? `waiting for ${pendingDependencies(s).join(', ') || 'its dependencies'} to finish`
                : !terminal
                  ? waitingHint(s)
                  : undefined,
      ...(s.job.after ? { after: [...s.job.after] } : {}),
    }
  }

  /** The jobs of `s.job.after` that are not done on this node's replica. */
  const pendingDependencies = (s: JobState): string[] =>
    (s.job.after ?? []).filter((id) => c.leases.job(id)?.state !== 'done')

  /** Each blocklisted node of `s` and its failures in the job (by chunk, then attempt). */
  const blockedNodes = (s: JobState): Api.BlockedNode[] =>
    s.blocklist.map((node) => ({
      node,
      failures: s.chunks.flatMap((ch) =>
        ch.failures
          .filter((f) => f.node === node)
          .map((f) => ({
            chunk: ch.index,
            frames: ch.frames,
            attempt: f.attempt,
            reason: f.reason,
          })),
      ),
    }))

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
        video: c.selfVideo?.(),
        devices: c.selfDevices?.(),
      },
    ]
    for (const [peerId, p] of c.presence.peers()) {
      if (p.state !== 'up' || peerId === c.self) continue
      const { name, engines, slots, paused, tags, video, devices } = p.presence
      out.push({ id: peerId as MeshNode['id'], name, engines, slots, paused, tags, video, devices })
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

  const frameInfos = (
    s: JobState,
    work = working(),
    chunks: readonly ChunkState[] = s.chunks,
  ): Api.FrameInfo[] => {
    const lj = ctx.localJobs.get(s.jobId)
    const out: Api.FrameInfo[] = []
    for (const ch of chunks) {
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
        const o = ch.outputs?.find((x) => x.frame === frame)
        if (o?.thumb && ch.state === 'done') info.thumb = o.thumb.manifest
        if (o && lj?.written.includes(ch.index))
          info.outputs = [join(lj.outDir, frameFileName(frame, safeExtension(o.name)))]
        out.push(info)
      }
    }
    return out
  }

  const videoInfo = (s: JobState): Api.VideoInfo | undefined => {
    const ch = s.chunks.find((x) => x.kind === 'encode')
    const codec = s.job.output.video
    if (!ch || !codec) return undefined
    const lj = ctx.localJobs.get(s.jobId)
    const state: Api.VideoInfo['state'] =
      ch.state === 'done'
        ? 'done'
        : ch.state === 'failed'
          ? 'failed'
          : ch.state === 'claimed'
            ? 'encoding'
            : 'waiting'
    const info: Api.VideoInfo = { codec, state, node: ch.completedBy ?? ch.holder ?? null }
    if (lj?.written.includes(ch.index)) info.path = join(lj.outDir, ctx.videoName(s))
    if (ch.failures.length) info.error = ch.failures.at(-1)?.reason
    return info
  }

  const detailOf = (s: JobState): Api.JobDetail => {
    const work = working()
    const lj = ctx.localJobs.get(s.jobId)
    return {
      ...summaryOf(s, work),
      scene: {
        path: lj?.scenePath ?? s.job.scene.name,
        name: s.job.scene.name,
        sizeBytes: s.job.scene.size,
      },
      ...(s.job.files
        ? {
            files: {
              count: s.job.files.count,
              bytes: s.job.files.size,
              missing: s.job.files.missing ?? 0,
              ...(lj?.missing ? { missingPaths: lj.missing } : {}),
            },
          }
        : {}),
      ...(s.job.files?.missing ? { allowMissing: true } : {}),
      engine: s.job.engine.name,
      format: FORMAT_FROM_ENGINE[s.job.output.format] ?? 'png',
      chunkSize: s.job.chunkSize,
      require: s.job.engine.version ? [`${s.job.engine.name}${s.job.engine.version}`] : [],
      ...(s.job.requirements.tags?.length ? { tags: [...s.job.requirements.tags] } : {}),
      ...(s.job.requirements.device ? { device: s.job.requirements.device } : {}),
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
      blocked: blockedNodes(s),
    }
  }

  return {
    summaryOf: (s) => summaryOf(s),
    detailOf,
    frameInfos: (s, chunk) => frameInfos(s, undefined, chunk ? [chunk] : s.chunks),
    videoInfo,
    list(states) {
      const work = working()
      return c.leases
        .jobs()
        .filter((s) => !s.deleted && (!states || states.includes(s.state)))
        .sort((a, b) => b.createdAt - a.createdAt || (a.jobId < b.jobId ? -1 : 1))
        .map((s) => summaryOf(s, work))
    },
    noteCompleted(jobId, frames) {
      const arr = rates.get(jobId) ?? []
      for (let i = 0; i < frames; i++) arr.push(c.clock.wall())
      rates.set(jobId, arr.slice(-500))
    },
    forget(jobId) {
      rates.delete(jobId)
      endedAt.delete(jobId)
    },
    start: () => watchdog.start(),
    stop: () => watchdog.stop(),
  }
}
