/**
 * The dashboard's model: a pure reducer from a snapshot plus API events to what is on screen.
 *
 * Invariants: pure (time enters only through actions' `now`); a job's frames are kept only for
 * the selected job (a mesh can hold jobs of 100k frames); throughput counts increases of
 * framesDone seen in job-updated events, so a frame is never counted twice.
 */
import type {
  ApiEvent,
  FrameInfo,
  JobDetail,
  JobSummary,
  NodeInfo,
  PeerInfo,
} from '../../src/api/types.js'

export const BUCKET_MS = 10_000
export const BUCKETS = 60

export interface Throughput {
  /** Start of the newest bucket. */
  start: number
  /** Frames finished per bucket, oldest first, newest last. */
  counts: number[]
}

export interface DashboardState {
  connected: boolean
  error?: string
  node?: NodeInfo
  peers: Record<string, PeerInfo>
  jobs: Record<string, JobSummary>
  detail?: JobDetail
  /** The frame the event stream last reported done (the dashboard shows its thumbnail). */
  lastDone?: { jobId: string; frame: number }
  throughput: Throughput
}

export type DashboardAction =
  | { type: 'snapshot'; node: NodeInfo; peers: PeerInfo[]; jobs: JobSummary[]; now: number }
  | { type: 'event'; event: ApiEvent; now: number }
  | { type: 'detail'; job: JobDetail }
  | { type: 'job'; job: JobSummary; now: number }
  | { type: 'disconnected'; error: string }
  | { type: 'tick'; now: number }

export function initialState(now: number): DashboardState {
  return {
    connected: false,
    peers: {},
    jobs: {},
    throughput: { start: bucketOf(now), counts: new Array(BUCKETS).fill(0) },
  }
}

function bucketOf(t: number): number {
  return Math.floor(t / BUCKET_MS) * BUCKET_MS
}

/** Shifts buckets forward to `now`, then adds `n` to the newest. */
export function addThroughput(t: Throughput, now: number, n: number): Throughput {
  const b = bucketOf(now)
  let counts = t.counts
  let start = t.start
  if (b > start) {
    const shift = Math.min(BUCKETS, Math.round((b - start) / BUCKET_MS))
    counts = [...counts.slice(shift), ...new Array(shift).fill(0)]
    start = b
  }
  if (n > 0) {
    counts = counts === t.counts ? [...counts] : counts
    counts[counts.length - 1] += n
  }
  return counts === t.counts && start === t.start ? t : { start, counts }
}

function upsertJob(s: DashboardState, job: JobSummary, now: number): DashboardState {
  const prev = s.jobs[job.jobId]
  const delta = prev ? Math.max(0, job.framesDone - prev.framesDone) : 0
  const detail = s.detail?.jobId === job.jobId ? { ...s.detail, ...job } : s.detail
  return {
    ...s,
    jobs: { ...s.jobs, [job.jobId]: job },
    detail,
    throughput: addThroughput(s.throughput, now, delta),
  }
}

function upsertFrame(detail: JobDetail, frame: FrameInfo): JobDetail {
  const frames = detail.frames
  let lo = 0
  let hi = frames.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const f = frames[mid].frame
    if (f === frame.frame) {
      const next = frames.slice()
      next[mid] = frame
      return { ...detail, frames: next }
    }
    if (f < frame.frame) lo = mid + 1
    else hi = mid - 1
  }
  return detail
}

export function reduce(s: DashboardState, a: DashboardAction): DashboardState {
  switch (a.type) {
    case 'snapshot': {
      const jobs: Record<string, JobSummary> = {}
      for (const j of a.jobs) jobs[j.jobId] = j
      const peers: Record<string, PeerInfo> = {}
      for (const p of a.peers) peers[p.peerId] = p
      return {
        ...s,
        connected: true,
        error: undefined,
        node: a.node,
        peers,
        jobs,
        throughput: addThroughput(s.throughput, a.now, 0),
      }
    }
    case 'detail':
      return {
        ...s,
        detail: a.job,
        jobs: { ...s.jobs, [a.job.jobId]: pickSummary(a.job, s.jobs[a.job.jobId]) },
      }
    case 'job':
      return upsertJob(s, a.job, a.now)
    case 'disconnected':
      return { ...s, connected: false, error: a.error }
    case 'tick': {
      const throughput = addThroughput(s.throughput, a.now, 0)
      return throughput === s.throughput ? s : { ...s, throughput }
    }
    case 'event':
      return applyEvent(s, a.event, a.now)
  }
}

function pickSummary(d: JobDetail, prev: JobSummary | undefined): JobSummary {
  const {
    scene: _s,
    engine: _e,
    format: _f,
    chunkSize: _c,
    require: _r,
    params: _p,
    frames: _fr,
    chunks: _ch,
    video: _v,
    blocklist: _b,
    preview: _pv,
    ...summary
  } = d
  return { ...prev, ...summary }
}

function applyEvent(s: DashboardState, e: ApiEvent, now: number): DashboardState {
  switch (e.type) {
    case 'node':
      return { ...s, node: e.node }
    case 'node-rules':
      return s.node ? { ...s, node: { ...s.node, rules: e.rules } } : s
    case 'peer-up':
    case 'presence':
      return { ...s, peers: { ...s.peers, [e.peer.peerId]: e.peer } }
    case 'peer-down': {
      const p = s.peers[e.peerId]
      return p
        ? {
            ...s,
            peers: { ...s.peers, [e.peerId]: { ...p, state: 'gone', connected: false, work: [] } },
          }
        : s
    }
    case 'job-updated':
      return upsertJob(s, e.job, now)
    case 'job-removed': {
      const { [e.jobId]: _gone, ...jobs } = s.jobs
      return { ...s, jobs, detail: s.detail?.jobId === e.jobId ? undefined : s.detail }
    }
    case 'frame-updated': {
      const lastDone =
        e.frame.state === 'done' ? { jobId: e.jobId, frame: e.frame.frame } : s.lastDone
      return s.detail?.jobId === e.jobId
        ? { ...s, lastDone, detail: upsertFrame(s.detail, e.frame) }
        : { ...s, lastDone }
    }
    case 'video-updated':
      return s.detail?.jobId === e.jobId ? { ...s, detail: { ...s.detail, video: e.video } } : s
    default:
      return s
  }
}

/**
 * The selected job's latest finished frame that has a thumbnail: the one the stream last
 * reported done, else the highest-numbered done one (after a snapshot, order is unknown).
 */
export function latestThumb(
  s: DashboardState,
): { jobId: string; frame: number; thumb: string } | undefined {
  const d = s.detail
  if (!d) return undefined
  const pick = (f: FrameInfo | undefined) =>
    f?.state === 'done' && f.thumb ? { jobId: d.jobId, frame: f.frame, thumb: f.thumb } : undefined
  if (s.lastDone?.jobId === d.jobId) {
    const hit = pick(d.frames.find((f) => f.frame === s.lastDone?.frame))
    if (hit) return hit
  }
  for (let i = d.frames.length - 1; i >= 0; i--) {
    const hit = pick(d.frames[i])
    if (hit) return hit
  }
  return undefined
}

/** Jobs in display order: running and queued first by priority, then the rest newest first. */
export function sortedJobs(s: DashboardState): JobSummary[] {
  const active = (j: JobSummary) =>
    j.state === 'rendering' || j.state === 'queued' || j.state === 'paused' || j.state === 'waiting'
      ? 0
      : 1
  return Object.values(s.jobs).sort(
    (a, b) =>
      active(a) - active(b) ||
      (active(a) === 0 ? b.priority - a.priority : 0) ||
      b.createdAt - a.createdAt ||
      (a.jobId < b.jobId ? -1 : 1),
  )
}

export function sortedPeers(s: DashboardState): PeerInfo[] {
  const rank = (p: PeerInfo) => (p.state === 'gone' ? 1 : 0)
  return Object.values(s.peers).sort(
    (a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name) || (a.peerId < b.peerId ? -1 : 1),
  )
}
