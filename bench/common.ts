/**
 * Shared pieces of the benchmarks: the result shape every bench module returns, rounding
 * and order statistics, and helpers that drive real daemons (test/helpers/daemons.ts)
 * through the control API: a ready mesh, a test-engine job, each daemon's event stream
 * (recorded with the daemon's own time stamps) and its /metrics counters. (A job's log
 * history cannot serve: the submitter seals a finished job, which compacts the log.)
 *
 * Also CPU bookkeeping from /proc: what each daemon process used, and what the whole
 * machine used, over a window (all daemons share one machine's cores with other work).
 *
 * Invariants: timings that compare two events on different daemons use wall times of the
 * same machine (one clock); times inside one daemon come from that daemon's own entries.
 * Nothing here sleeps as a measurement: waits poll until a condition holds.
 */
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { createApiClient } from '../src/api/client.js'
import type { ApiEvent, JobDetail, PeerInfo, SubmitResponse } from '../src/api/types.js'
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
  let last: JobDetail | undefined
  try {
    return await waitFor(
      async () => {
        const j = await jobDetail(d, jobId)
        last = j
        if (j.state === 'failed' || j.state === 'canceled')
          throw new Error(`job ${jobId} ended ${j.state}: ${j.reason ?? ''}`)
        return j.state === 'done' && (!local || j.localComplete) ? j : false
      },
      timeoutMs,
      `job ${jobId} to finish`,
      250,
    )
  } catch (err) {
    const l = last
    const where = l
      ? ` (last seen ${l.state}, ${l.framesDone}/${l.framesTotal} done, ${l.framesLocal ?? 0} local, ${l.framesRendering} rendering)`
      : ''
    throw new Error(`${(err as Error).message}${where}`)
  }
}

/**
 * Every event a daemon publishes from now until stop(), stamped by the daemon (`time`);
 * with `logsOf`, also the render log lines of that job.
 */
export function recordEvents(
  d: DaemonProc,
  logsOf?: string,
): { events: ApiEvent[]; ready: Promise<void>; stop(): void } {
  const events: ApiEvent[] = []
  const controller = new AbortController()
  const client = createApiClient({ socketPath: d.socket, streamIdleMs: 60_000 })
  let onReady: () => void = () => undefined
  const ready = new Promise<void>((r) => {
    onReady = r
  })
  void (async () => {
    try {
      for await (const e of client.events({ signal: controller.signal, logsOf })) {
        if (e.type === 'node') onReady()
        events.push(e)
      }
    } catch {
      // Closed by stop() or by the daemon going away: what was recorded stands.
    }
  })()
  return { events, ready, stop: () => controller.abort() }
}

/** Counters of one daemon's GET /metrics (labels dropped, values of a name summed). */
export async function metricsOf(d: DaemonProc): Promise<Map<string, number>> {
  const r = await apiCall<string>(d.socket, 'GET', '/metrics', undefined, 30_000)
  const out = new Map<string, number>()
  for (const line of String(r.body).split('\n')) {
    const m = /^([a-z_]+)(?:\{[^}]*\})? (\S+)$/.exec(line)
    if (m) out.set(m[1], (out.get(m[1]) ?? 0) + Number(m[2]))
  }
  return out
}

/**
 * A daemon's memory right after a forced full GC (GET /metrics?gc=1; the daemon must run
 * with node --expose-gc, else the heap includes garbage), and which bounded caches are
 * still below their bound.
 */
export async function liveMemory(
  socket: string,
  timeoutMs = 15_000,
): Promise<{
  heapKiB?: number
  externalKiB?: number
  folds?: number
  cachesFilling: string[]
}> {
  const r = await apiCall<string>(socket, 'GET', '/metrics?gc=1', undefined, timeoutMs)
  const text = typeof r.body === 'string' ? r.body : ''
  const gauge = (name: string) => {
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text)
    return m ? Number(m[1]) : undefined
  }
  const heap = gauge('rmesh_process_heap_used_bytes')
  const ext = gauge('rmesh_process_external_bytes')
  return {
    heapKiB: heap === undefined ? undefined : heap / 1024,
    externalKiB: ext === undefined ? undefined : ext / 1024,
    folds: gauge('rmesh_state_entries\\{map="folds"\\}'),
    cachesFilling: [...text.matchAll(/^rmesh_cache_capacity\{cache="([^"]+)"\} (\S+)$/gm)]
      .filter(
        ([, name, cap]) => (gauge(`rmesh_cache_entries\\{cache="${name}"\\}`) ?? 0) < Number(cap),
      )
      .map(([, name]) => name),
  }
}

export const shortId = (peerId: string) => peerId.slice(-8)

/** Clock ticks per second of /proc times (USER_HZ: 100 on every Linux Node runs on). */
const USER_HZ = 100

/** CPU time (user + system, ms) a process has used so far; NaN when unreadable. */
export function processCpuMs(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN
  try {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(f[11]) + Number(f[12])) * 1000) / USER_HZ
  } catch {
    return Number.NaN
  }
}

/** The whole machine's CPU time so far (ms, summed over cores): busy and total. */
export function machineCpuMs(): { busy: number; total: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]
    const v = line.trim().split(/\s+/).slice(1, 9).map(Number)
    const total = v.reduce((a, b) => a + b, 0)
    const idle = v[3] + v[4] // idle + iowait
    return { busy: ((total - idle) * 1000) / USER_HZ, total: (total * 1000) / USER_HZ }
  } catch {
    return { busy: Number.NaN, total: Number.NaN }
  }
}

/**
 * CPU bookkeeping of a run: what the daemons used, and what the whole machine used (the
 * rest is other work sharing the cores), between start() and stop().
 */
export function cpuMeter(pids: readonly (number | undefined)[]) {
  const at = () => ({
    t: performance.now(),
    procs: pids.map((p) => processCpuMs(p)),
    machine: machineCpuMs(),
  })
  const first = at()
  return {
    stop() {
      const last = at()
      const wallMs = last.t - first.t
      const perProc = last.procs.map((c, i) => c - first.procs[i])
      const procsMs = perProc.reduce((a, b) => a + b, 0)
      const machineBusyMs = last.machine.busy - first.machine.busy
      return {
        wallMs,
        perProc,
        procsMs,
        /** Cores' worth of CPU the daemons used on average. */
        procsCores: procsMs / wallMs,
        machineBusyMs,
        /** Cores' worth used by everything else on the machine. */
        otherCores: Math.max(0, machineBusyMs - procsMs) / wallMs,
        cores: cpus().length,
      }
    },
  }
}

/** True when `moduleUrl` is the script node was started with (run standalone, not imported). */
export function isMain(moduleUrl: string): boolean {
  return Boolean(process.argv[1]) && moduleUrl === pathToFileURL(process.argv[1]).href
}

/** Runs one bench module standalone: a line per figure on stdout, exit 1 on failure. */
export function runStandalone(run: () => Promise<readonly BenchResult[]>): void {
  run().then(
    (results) => {
      for (const x of results)
        console.log(
          `${x.name.padEnd(32)} ${String(x.value).padStart(10)} ${x.unit}  ${x.note ?? ''}`,
        )
      process.exit(0)
    },
    (err) => {
      console.error(err)
      process.exit(1)
    },
  )
}
