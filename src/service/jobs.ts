/**
 * The job service: the daemon's use cases around jobs, composed from one module per concern:
 *  - submit.ts: validate, inspect the scene for defaults, import it, announce the job;
 *  - collect.ts: for jobs this node submitted, pull each finished output into the output
 *    folder, then ack; reject outputs that cannot be obtained; clean up after a delete;
 *  - actions.ts: cancel / retry / priority / delete;
 *  - fetch.ts: logs, and fetch (folder or ZIP);
 *  - previews.ts: a frame's thumbnail and full-size image, the job as a ZIP download;
 *  - preview-video.ts: a small video of the frames so far, while a job of ours renders;
 *  - views.ts: the API's views, and the no-eligible watchdog (a job this node submitted
 *    that no live node can take for noEligibleGraceMs is failed with an abort entry);
 *  - dependency-gate.ts: job order, a job of this node submitted with `after` gets its
 *    `ready` entry once those jobs are done, or an `abort` naming the one that failed;
 *  - context.ts: what they share (components, this node's record of its jobs, helpers).
 * This file wires them to the log: each entry updates the views, the event stream and
 * collection.
 *
 * Invariant: events about a job are coalesced (at most one job-updated per 30 ms per job)
 * and read the state after the reducer has folded the entry.
 */
import type * as Api from '../api/types.js'
import type { JobState } from '../jobs/reducer.js'
import { jobIdOfLog, jobLogId, type LogEntry } from '../log/types.js'
import { NotFoundError } from '../util/errors.js'
import { createJobActions, type JobActions } from './actions.js'
import { createCollector } from './collect.js'
import { createDependencyGate } from './dependency-gate.js'
import { createServiceContext, type JobServiceComponents } from './context.js'
import { createJobFetch, type JobFetch } from './fetch.js'
import { createPreviewVideos } from './preview-video.js'
import { createJobPreviews, type JobPreviews, type Preview } from './previews.js'
import { createSubmitter, type Submitter } from './submit.js'
import { createJobViews } from './views.js'

export { ConflictError, frameFileName, type JobServiceComponents } from './context.js'

export interface JobService extends Submitter, JobActions, JobFetch, JobPreviews {
  start(): Promise<void>
  stop(): Promise<void>
  list(states?: Api.JobState[]): Api.JobSummary[]
  detail(idOrPrefix: string): Api.JobDetail
  resolveId(idOrPrefix: string): string
  /** The preview video of a job this node submitted (404 until one is made). */
  previewVideo(idOrPrefix: string): Promise<Preview>
  /** Done chunks this node rejected because their outputs could not be obtained. */
  stats(): { outputsRejected: { hash: number; unavailable: number } }
}

export function createJobService(c: JobServiceComponents): JobService {
  const ctx = createServiceContext(c)
  const views = createJobViews(ctx)
  const pendingEvents = new Map<string, ReturnType<typeof setTimeout>>()
  let unsubscribe: (() => void) | undefined

  const scheduleEvents = (jobId: string) => {
    // Nobody listens (no dashboard, web page or CLI watching): a job's summary is not
    // worth computing for every entry of every job in the mesh (issue 17).
    if (pendingEvents.has(jobId) || c.events.subscribers() === 0) return
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
        c.events.publish({ type: 'job-updated', job: views.summaryOf(s) })
      }, 30),
    )
  }

  const previewVideos = c.previewVideo
    ? createPreviewVideos(ctx, { ...c.previewVideo, onUpdated: scheduleEvents })
    : undefined
  const collector = createCollector(ctx, {
    onWritten: (jobId) => {
      scheduleEvents(jobId)
      previewVideos?.noteWritten(jobId)
    },
    onForget: (jobId) => {
      views.forget(jobId)
      void previewVideos?.forget(jobId)
    },
  })
  const submitter = createSubmitter(ctx)
  const actions = createJobActions(ctx, {
    summaryOf: (s: JobState) => views.summaryOf(s),
    cleanupDeleted: collector.cleanupDeleted,
  })
  const gate = createDependencyGate({
    self: c.self,
    clock: c.clock,
    jobs: () => c.leases.jobs(),
    job: (jobId) => c.leases.job(jobId),
    append: async (jobId, kind, body) => {
      await c.log.append(jobLogId(jobId), kind, body)
    },
    logger: ctx.logger,
  })
  const fetcher = createJobFetch(ctx)
  const previews = createJobPreviews(ctx, fetcher)

  const onEntry = (entry: LogEntry) => {
    const jobId = jobIdOfLog(entry.log)
    if (!jobId) return
    if (entry.kind === 'complete') {
      const s = c.leases.job(jobId)
      const chunk = (entry.body as { chunk?: number }).chunk
      views.noteCompleted(jobId, s?.chunks[chunk ?? -1]?.frames.length ?? 1)
    }
    // The reducer inside the lease manager sees the entry in the same tick; read after it.
    queueMicrotask(() => {
      const s = c.leases.job(jobId)
      scheduleEvents(jobId)
      // Claims, releases and acks never end a job nor start one: most entries skip the gate.
      if (entry.kind !== 'claim' && entry.kind !== 'release' && entry.kind !== 'ack') gate.poke()
      if (!s) return
      // Events are for listeners (dashboard, web page, live logs): none, nothing to build.
      if ('chunk' in (entry.body as object) && c.events.subscribers() > 0) {
        const idx = (entry.body as { chunk: number }).chunk
        const ch = s.chunks[idx]
        if (ch && ch.kind === 'frames') {
          // This chunk's frames only: every frame of the job per entry was quadratic in
          // the job's size on every node of the mesh.
          for (const f of views.frameInfos(s, ch))
            c.events.publish({ type: 'frame-updated', jobId, frame: f })
        } else if (ch) {
          const v = views.videoInfo(s)
          if (v) c.events.publish({ type: 'video-updated', jobId, video: v })
        }
      }
      if (s.deleted) void collector.cleanupDeleted(jobId)
      else if (ctx.localJobs.has(jobId) && entry.kind === 'complete') {
        if (c.collectDelayMs)
          setTimeout(() => void collector.collect(jobId), c.collectDelayMs).unref()
        else void collector.collect(jobId)
      } else if (entry.kind === 'ack' && s.submitter !== c.self)
        void collector.releaseAcked(s, (entry.body as { chunks?: unknown }).chunks)
    })
  }

  return {
    ...submitter,
    ...actions,
    ...fetcher,
    ...previews,
    resolveId: ctx.resolveId,
    stats: collector.stats,
    async previewVideo(id) {
      if (!previewVideos)
        throw new NotFoundError('a preview video (previews are off on this node: previewEveryMs 0)')
      return previewVideos.file(id)
    },
    async start() {
      await previewVideos?.start()
      await ctx.loadLocal()
      unsubscribe = c.log.onEntry((e) => onEntry(e))
      for (const jobId of ctx.localJobs.keys()) void collector.collect(jobId)
      views.start()
      gate.start()
    },
    async stop() {
      ctx.stop()
      views.stop()
      gate.stop()
      unsubscribe?.()
      collector.stop()
      await previewVideos?.stop()
      for (const t of pendingEvents.values()) clearTimeout(t)
    },
    list: (states) => views.list(states),
    detail: (id) => {
      const d = views.detailOf(ctx.jobOf(ctx.resolveId(id)))
      const preview = previewVideos?.info(d.jobId)
      return preview ? { ...d, preview } : d
    },
  }
}
