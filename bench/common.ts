/**
 * Shared pieces of the benchmarks: the result shape every bench module returns, rounding
 * and order statistics, and helpers that drive real daemons (test/helpers/daemons.ts)
 * through the control API: a ready mesh, a test-engine job, and the job's history parsed
 * from GET /v1/jobs/:id/logs (one line per log entry, with its author's wall time).
 *
 * Invariants: timings that compare two events on different daemons use wall times of the
 * same machine (one clock); times inside one daemon come from that daemon's own entries.
 * Nothing here sleeps as a measurement: waits poll until a condition holds.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { JobDetail, PeerInfo, SubmitResponse } from '../src/api/types.js'
import { apiCall, type DaemonProc, waitFor } from '../test/helpers/daemons.js'

export interface BenchResult {
  name: string
  value: number
  unit: string
  note?: string
}

export function round(x: number, digits = 1): number {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const i = (s.length - 1) * q
  const lo = Math.floor(i)
  const hi = Math.ceil(i)
  return s[lo] + (s[hi] - s[lo]) * (i - lo)
}

export const median = (xs: readonly number[]) => quantile(xs, 0.5)

async function api<T>(d: DaemonProc, method: string, path: string, body?: unknown): Promise<T> {
  const r = await apiCall<T>(d.socket, method, path, body, 30_000)
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body
}

/** Every daemon hears every other one (presence), so the first job is shared at once. */
export async function waitMeshReady(mesh: DaemonProc[], timeoutMs = 60_000): Promise<void> {
  await waitFor(
    async () => {
      for (const d of mesh) {
        const peers = await api<PeerInfo[]>(d, 'GET', '/v1/peers')
        if (peers.filter((p) => p.state !== 'gone' && p.connected).length < mesh.length - 1)
          return false
      }
      return true
    },
    timeoutMs,
    `${mesh.length} daemons to see each other`,
    200,
  )
}

/** The test engine renders any file; the API wants a .blend name. */
export async function makeScene(dir: string): Promise<string> {
  const path = join(dir, 'bench-scene.blend')
  await writeFile(path, Buffer.alloc(64 * 1024, 7))
  return path
}

export interface TestJob {
  frames: number
  frameMs: number
  chunk?: number
  name?: string
  extra?: Record<string, string | number | boolean>
}

/** Submit a test-engine job; `submitAt` is the wall time just before the request. */
export async function submitTestJob(
  d: DaemonProc,
  scenePath: string,
  outDir: string,
  job: TestJob,
): Promise<{ jobId: string; submitAt: number; acceptedAt: number }> {
  const submitAt = Date.now()
  const r = await api<SubmitResponse>(d, 'POST', '/v1/jobs', {
    scenePath,
    frames: `1-${job.frames}`,
    chunk: job.chunk ?? 1,
    format: 'png',
    engine: 'test',
    name: job.name ?? 'bench',
    outDir,
    params: { frameMs: job.frameMs, ...job.extra },
  })
  return { jobId: r.jobId, submitAt, acceptedAt: Date.now() }
}

export function jobDetail(d: DaemonProc, jobId: string): Promise<JobDetail> {
  return api<JobDetail>(d, 'GET', `/v1/jobs/${jobId}`)
}

/** Wait until the job is done; with `local`, also until every output is in outDir. */
export async function waitJobDone(
  d: DaemonProc,
  jobId: string,
  timeoutMs: number,
  local = false,
): Promise<JobDetail> {
  return waitFor(
    async () => {
      const j = await jobDetail(d, jobId)
      if (j.state === 'failed' || j.state === 'canceled')
        throw new Error(`job ${jobId} ended ${j.state}: ${j.reason ?? ''}`)
      return j.state === 'done' && (!local || j.localComplete) ? j : false
    },
    timeoutMs,
    `job ${jobId} to finish`,
    250,
  )
}

export interface HistoryEntry {
  wall: number
  /** The author's peer id, last 8 characters (as the history prints it). */
  author: string
  kind: string
  chunk?: number
  attempt?: number
}

/** The job's log entries in fold order, from the history view of the logs route. */
export async function jobHistory(d: DaemonProc, jobId: string): Promise<HistoryEntry[]> {
  const r = await apiCall<string>(d.socket, 'GET', `/v1/jobs/${jobId}/logs`, undefined, 30_000)
  if (r.status !== 200) throw new Error(`history of ${jobId}: ${r.status}`)
  const out: HistoryEntry[] = []
  for (const line of String(r.body).split('\n')) {
    const m = /^(\S+) (\S+) (\S+) (.*)$/.exec(line)
    if (!m) continue
    const num = (k: string) => {
      // The body is cut at 200 characters; chunk and attempt come first in it.
      const x = new RegExp(`"${k}":(\\d+)`).exec(m[4])
      return x ? Number(x[1]) : undefined
    }
    out.push({
      wall: Date.parse(m[1]),
      author: m[2],
      kind: m[3],
      chunk: num('chunk'),
      attempt: num('attempt'),
    })
  }
  return out
}

export const shortId = (peerId: string) => peerId.slice(-8)
