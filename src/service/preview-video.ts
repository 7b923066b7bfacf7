/**
 * A preview video of a job this node submitted, while its frames are still coming in: a
 * small H.264 of the frames in the output folder so far, refreshed every `everyFrames` new
 * frames or `everyMs` (whichever first), and once more when the last frame is written.
 * Served by the control API (GET /v1/jobs/:id/preview) and shown on the web UI's job page.
 * The job's own video (the encode chunk) is not touched.
 *
 * Invariants:
 *  - bounded CPU: one encode at a time on this node (a queue of job ids, each at most once),
 *    niced (`nice -n 19`), one ffmpeg thread, at most PREVIEW_HEIGHT lines, a timeout; the
 *    next refresh of a job waits COST_FACTOR times as long as its last encode took, and
 *    the frame step grows with the job (GROWTH), so a long job costs O(frames) encoding,
 *    not O(frames²); the job's last frame is always encoded;
 *  - debounced: a frame written schedules at most one timer per job; a burst of frames
 *    makes one encode;
 *  - files: only `<dir>/<jobId>.mp4` (written to a temporary name in `dir`, then renamed, so
 *    a reader never sees half a file) and a temporary folder of links to the job's frames,
 *    removed after each run; the frames are read where collect.ts wrote them (outDir); a
 *    job's preview is removed when the job is forgotten (deleted), and every preview when
 *    the daemon starts (they are remade from the frames);
 *  - a preview that cannot be made is logged at debug level, never an error of the job.
 */
import { randomBytes } from 'node:crypto'
import { access, mkdir, rename, rm, stat, symlink } from 'node:fs/promises'
import { join } from 'node:path'
import { safeExtension } from '../blobs/safe-name.js'
import { FFMPEG_QUIET_ARGS } from '../engines/ffmpeg-args.js'
import { withLimits } from '../engines/limits.js'
import { runCapture } from '../engines/process.js'
import type { JobState } from '../jobs/reducer.js'
import { encodeRate } from '../jobs/video-options.js'
import type { TimerHandle } from '../util/clock.js'
import { describeError, NotFoundError } from '../util/errors.js'
import { frameFileName, type ServiceContext } from './context.js'
import type { Preview } from './previews.js'

export const PREVIEW_HEIGHT = 360
/** Encodes take at most 1/COST_FACTOR of the time (the next waits COST_FACTOR × the last). */
export const COST_FACTOR = 10
/** Refresh after max(everyFrames, GROWTH × frames in the last preview) new frames. */
export const GROWTH = 0.25
const ENCODE_TIMEOUT_MS = 10 * 60_000

export interface PreviewVideoOptions {
  /** Directory of the previews (created on demand). */
  dir: string
  /** Refresh after this many new frames. */
  everyFrames: number
  /** …or this long after the last refresh, when a frame came in since. */
  everyMs: number
  /** Told when a job's preview changed (the service publishes a job-updated). */
  onUpdated(jobId: string): void
}

export interface PreviewVideoInfo {
  /** Frames in the preview. */
  frames: number
  /** When it was last made (this node's wall clock, ms since the epoch). */
  updatedAt: number
}

export interface PreviewVideos {
  /** Removes previews left by an earlier run (they are remade as frames come in). */
  start(): Promise<void>
  /** collect.ts wrote outputs of this job: maybe refresh its preview. */
  noteWritten(jobId: string): void
  info(jobId: string): PreviewVideoInfo | undefined
  file(idOrPrefix: string): Promise<Preview>
  forget(jobId: string): Promise<void>
  stop(): Promise<void>
}

/** ffmpeg's arguments for a preview of the numbered frames `<dir>/%06d<ext>`. */
export function previewVideoArgs(dir: string, ext: string, rate: string, out: string): string[] {
  const exr = ext === '.exr'
  return [
    ...FFMPEG_QUIET_ARGS,
    '-framerate',
    rate,
    // EXR frames are linear: the sRGB curve, as the job's own video does.
    ...(exr ? ['-apply_trc', 'iec61966_2_1'] : []),
    '-i',
    join(dir, `%06d${ext}`),
    '-vf',
    `scale=-2:'2*trunc(min(${PREVIEW_HEIGHT},ih)/2)':flags=bilinear,format=yuv420p`,
    '-c:v',
    'libx264',
    '-preset',
    'veryfast',
    '-crf',
    '28',
    '-threads',
    '1',
    '-movflags',
    '+faststart',
    '-an',
    '-f',
    'mp4',
    out,
  ]
}

interface Track {
  frames: number
  updatedAt: number
  /** Frames written when the last preview was made (or scheduled). */
  encodedFrames: number
  /** Monotonic time of the last run, and how long it took. */
  lastRun: number
  lastCostMs: number
  timer?: TimerHandle
  timerAt?: number
}

export function createPreviewVideos(ctx: ServiceContext, o: PreviewVideoOptions): PreviewVideos {
  const { c } = ctx
  const tracks = new Map<string, Track>()
  const queue: string[] = []
  let running: Promise<void> | undefined
  let stopped = false
  const now = () => c.clock.monotonic()
  const fileOf = (jobId: string) => join(o.dir, `${jobId}.mp4`)

  /** Frames of the job in outDir, in frame order, with the extension they have. */
  const writtenFrames = (s: JobState): { frame: number; ext: string }[] => {
    const lj = ctx.localJobs.get(s.jobId)
    if (!lj) return []
    const out: { frame: number; ext: string }[] = []
    for (const idx of lj.written) {
      const ch = s.chunks[idx]
      if (ch?.kind !== 'frames') continue
      for (const f of ch.frames) {
        const name = ch.outputs?.find((x) => x.frame === f)?.name
        if (name) out.push({ frame: f, ext: safeExtension(name) })
      }
    }
    return out.sort((a, b) => a.frame - b.frame)
  }

  const track = (jobId: string) => {
    let t = tracks.get(jobId)
    if (!t) {
      t = {
        frames: 0,
        updatedAt: 0,
        encodedFrames: 0,
        lastRun: Number.NEGATIVE_INFINITY,
        lastCostMs: 0,
      }
      tracks.set(jobId, t)
    }
    return t
  }

  const enqueue = (jobId: string) => {
    if (!queue.includes(jobId)) queue.push(jobId)
    running ??= drain().finally(() => {
      running = undefined
    })
  }

  const drain = async () => {
    for (let id = queue.shift(); id !== undefined && !stopped; id = queue.shift()) {
      await encode(id).catch((err) =>
        ctx.logger.debug('preview video not made', { jobId: id, err: describeError(err) }),
      )
    }
  }

  const encode = async (jobId: string) => {
    const s = c.leases.job(jobId)
    const lj = ctx.localJobs.get(jobId)
    if (!s || s.deleted || !lj) return
    const frames = writtenFrames(s)
    const t = track(jobId)
    const started = now()
    t.lastRun = started
    try {
      await encodeFrames(jobId, t, frames, lj.outDir, s)
    } finally {
      t.lastCostMs = now() - started
    }
  }

  const encodeFrames = async (
    jobId: string,
    t: Track,
    frames: { frame: number; ext: string }[],
    outDir: string,
    s: JobState,
  ) => {
    if (frames.length === 0) return
    const ext = frames[0].ext
    await mkdir(o.dir, { recursive: true })
    const tmp = join(o.dir, `.${jobId}-${randomBytes(4).toString('hex')}`)
    await mkdir(tmp)
    try {
      // Numbered links to the frames written so far: ffmpeg wants a gapless sequence.
      let n = 0
      for (const f of frames) {
        if (f.ext !== ext) continue
        const src = join(outDir, frameFileName(f.frame, f.ext))
        if (
          !(await access(src).then(
            () => true,
            () => false,
          ))
        )
          continue
        await symlink(src, join(tmp, `${String(++n).padStart(6, '0')}${ext}`))
      }
      if (n === 0) return
      const out = join(tmp, 'preview.mp4')
      const run = withLimits('ffmpeg', previewVideoArgs(tmp, ext, encodeRate(s.job.output), out), {
        nice: 19,
      })
      const { outcome } = await runCapture(run.file, run.args, { timeoutMs: ENCODE_TIMEOUT_MS })
      if (outcome.spawnError || outcome.exitCode !== 0 || !(await stat(out)).size)
        throw new Error(`ffmpeg exited ${outcome.exitCode ?? outcome.spawnError}`)
      if (stopped || !ctx.localJobs.has(jobId)) return
      await rename(out, fileOf(jobId))
      t.frames = n
      t.updatedAt = c.clock.wall()
      o.onUpdated(jobId)
    } finally {
      await rm(tmp, { recursive: true, force: true })
    }
  }

  const api: PreviewVideos = {
    async start() {
      await rm(o.dir, { recursive: true, force: true })
    },
    noteWritten(jobId) {
      if (stopped || o.everyMs <= 0) return
      const s = c.leases.job(jobId)
      if (!s || s.deleted) return
      const t = track(jobId)
      const written = writtenFrames(s).length
      if (written <= t.encodedFrames) return
      const at = now()
      // Each preview re-encodes every frame so far: the frame step grows with the job, and
      // a job's previews take at most 1/COST_FACTOR of the time.
      const step = Math.max(o.everyFrames, Math.ceil(t.encodedFrames * GROWTH))
      const byFrames = written - t.encodedFrames >= step
      const costGap = t.lastRun + COST_FACTOR * t.lastCostMs - at
      const due = Math.max(costGap, byFrames ? 0 : t.lastRun + o.everyMs - at)
      if (t.timer && (due <= 0 || at + due < (t.timerAt ?? 0))) {
        c.clock.clearTimeout(t.timer)
        t.timer = undefined
      }
      if (written >= s.framesTotal || due <= 0) {
        t.encodedFrames = written
        enqueue(jobId)
      } else if (!t.timer) {
        t.timerAt = at + due
        t.timer = c.clock.setTimeout(() => {
          t.timer = undefined
          api.noteWritten(jobId)
        }, due)
      }
    },
    info(jobId) {
      const t = tracks.get(jobId)
      return t?.updatedAt ? { frames: t.frames, updatedAt: t.updatedAt } : undefined
    },
    async file(id) {
      const jobId = ctx.resolveId(id)
      if (!tracks.get(jobId)?.updatedAt)
        throw new NotFoundError(
          `a preview video of job ${jobId} (one is made on the submitting node once frames come in)`,
        )
      return { contentType: 'video/mp4', path: fileOf(jobId) }
    },
    async forget(jobId) {
      const t = tracks.get(jobId)
      if (t?.timer) c.clock.clearTimeout(t.timer)
      tracks.delete(jobId)
      const i = queue.indexOf(jobId)
      if (i >= 0) queue.splice(i, 1)
      await rm(fileOf(jobId), { force: true })
    },
    async stop() {
      stopped = true
      for (const t of tracks.values()) if (t.timer) c.clock.clearTimeout(t.timer)
      await running
    },
  }
  return api
}
