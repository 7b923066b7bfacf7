/**
 * Shared checks of the fault scenarios (test/integration/faults/) and the soak
 * (bench/soak.ts): start a mesh tuned for fast lease reopening, submit a test-engine
 * job, and verify the promises after a fault.
 *
 * Invariants the checks enforce (the same after every scenario):
 *  - every frame is in the submitter's output folder exactly once, byte-identical to
 *    testFramePng(jobId, frame), and nothing else is there (no temp or stray files);
 *  - every live daemon reports the same job state, framesDone and per-frame states;
 *  - every daemon that should be up answers GET /v1/node;
 *  - duplicate renders (complete entries beyond the first of a chunk) and extra attempts
 *    are counted from the job's own log and returned for the test to bound and report.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { ChunkInfo, JobDetail, SceneInfo } from '../../src/api/types.js'
import { ensureExampleScene } from '../../src/engines/example-scene.js'
import { isValidImage } from '../../src/engines/images.js'
import { findOnPath } from '../../src/engines/process.js'
import { testFramePng } from '../../src/engines/test-engine.js'
import { frameFileName } from '../../src/service/jobs.js'
import {
  apiCall,
  type DaemonProc,
  makeTempDir,
  removeDir,
  type StartOptions,
  startMesh,
  stopDaemonProc,
  waitFor,
} from './daemons.js'
import { STORING_PER_SLOT } from '../../src/jobs/lease-manager.js'

/**
 * The most leases one node of a fault mesh (one render slot) holds at once: its slot, one
 * chunk claimed ahead, and the chunks still storing (they hold no slot). A node that dies
 * or freezes causes at most this many duplicate renders.
 */
export const LEASES_ONE_NODE_HOLDS = 1 + 1 + STORING_PER_SLOT

const execFileAsync = promisify(execFile)

/** Daemons reopen a silent holder's lease after 3 s (defaults are 10 s and 2 s). */
export const FAST_LEASE_ENV: Record<string, string> = {
  RMESH_LEASE_TIMEOUT_MS: '3000',
  RMESH_PRESENCE_INTERVAL_MS: '500',
}

export async function startFaultMesh(
  count: number,
  options: StartOptions = {},
): Promise<DaemonProc[]> {
  return startMesh(count, {
    logLevel: 'info',
    ...options,
    env: { ...FAST_LEASE_ENV, ...options.env },
  })
}

export async function stopAll(
  procs: (DaemonProc | undefined)[],
  extraDirs: string[] = [],
): Promise<void> {
  const live = procs.filter((p): p is DaemonProc => !!p)
  for (const p of live)
    if (p.proc.signalCode === 'SIGSTOP' || p.proc.exitCode === null) p.proc.kill('SIGCONT')
  await Promise.all(live.map((p) => stopDaemonProc(p, 'SIGKILL').catch(() => {})))
  if (process.env.RMESH_KEEP_TEST_DIRS) return
  await Promise.all([...live.map((p) => p.dir), ...extraDirs].map((d) => removeDir(d)))
}

export interface SubmittedJob {
  jobId: string
  outDir: string
  frames: number[]
  /** The scratch folder holding the dummy scene and the output folder. */
  workDir: string
  /** The mesh's duplicate-render gauge when the job was submitted. */
  duplicatesBefore: number
  /** Set for real-Blender jobs: outputs are checked for validity, not exact bytes. */
  blender?: { width: number; height: number }
}

/** POST the job on `d`; the record the fault checks work from (frames 1..frames). */
async function postJob(
  d: DaemonProc,
  body: Record<string, unknown>,
  frames: number,
  workDir: string,
  duplicatesBefore: number,
  timeoutMs?: number,
): Promise<SubmittedJob> {
  const r = await apiCall<{ jobId: string; outDir: string }>(
    d.socket,
    'POST',
    '/v1/jobs',
    { ...body, frames: `1-${frames}` },
    timeoutMs,
  )
  if (r.status !== 201 && r.status !== 200)
    throw new Error(`submit failed: ${r.status} ${JSON.stringify(r.body)}`)
  return {
    jobId: r.body.jobId,
    outDir: r.body.outDir,
    frames: Array.from({ length: frames }, (_, i) => i + 1),
    workDir,
    duplicatesBefore,
  }
}

/** Submit a test-engine job on `d` (any file named .blend is a scene for that engine). */
export async function submitTestJob(
  d: DaemonProc,
  o: {
    frames: number
    frameMs: number
    chunk?: number
    params?: Record<string, unknown>
    sceneBytes?: number
    /** Tags a node must carry to take it (a pool). */
    tags?: string[]
  },
): Promise<SubmittedJob> {
  const duplicatesBefore = await metric(d, 'rmesh_duplicate_renders')
  const workDir = await makeTempDir('rmesh-fault-job-')
  const scenePath = join(workDir, 'scene.blend')
  await writeFile(
    scenePath,
    o.sceneBytes ? randomBytes(o.sceneBytes) : `fault scene ${Date.now()}\n`,
  )
  const outDir = join(workDir, 'out')
  return postJob(
    d,
    {
      scenePath,
      engine: 'test',
      chunk: o.chunk ?? 1,
      params: { frameMs: o.frameMs, ...o.params },
      outDir,
      ...(o.tags ? { tags: o.tags } : {}),
    },
    o.frames,
    workDir,
    duplicatesBefore,
  )
}

/** Why the real-Blender variants cannot run here, or undefined when they can. */
export async function blenderSkipReason(): Promise<string | undefined> {
  if ((await findOnPath('blender')).length === 0) return 'Blender is not installed (not on PATH)'
  if ((await findOnPath('ffmpeg')).length === 0) return 'ffmpeg (to decode the frames) is missing'
  return undefined
}

/** The rendered size of each scene, asked once from a daemon (one Blender run). */
const sceneSizes = new Map<string, Promise<{ width: number; height: number }>>()

function sceneSize(d: DaemonProc, scenePath: string): Promise<{ width: number; height: number }> {
  let p = sceneSizes.get(scenePath)
  if (!p) {
    p = apiCall<SceneInfo>(
      d.socket,
      'POST',
      '/v1/scenes/inspect',
      { path: scenePath },
      120_000,
    ).then((r) => {
      if (r.status !== 200) throw new Error(`inspect: ${r.status} ${JSON.stringify(r.body)}`)
      const { x, y, percent } = r.body.resolution
      return { width: Math.round((x * percent) / 100), height: Math.round((y * percent) / 100) }
    })
    sceneSizes.set(scenePath, p)
    p.catch(() => sceneSizes.delete(scenePath))
  }
  return p
}

/**
 * Submit the example scene (examples/make-scene.py: tiny, few samples, denoising off) to
 * the real Blender engine on `d`, packed so every node has its texture. `persistent`
 * (the job's --persistent) has each node load the scene into one Blender and keep it:
 * for the scenarios whose fault is in the mesh, not in the chunk's Blender process, it
 * saves a Blender start-up per frame.
 */
export async function submitBlenderJob(
  d: DaemonProc,
  o: { frames: number; chunk?: number; persistent?: boolean },
): Promise<SubmittedJob> {
  const scene = await ensureExampleScene()
  const size = await sceneSize(d, scene.scenePath)
  const duplicatesBefore = await metric(d, 'rmesh_duplicate_renders')
  const workDir = await makeTempDir('rmesh-fault-blender-')
  const outDir = join(workDir, 'out')
  const job = await postJob(
    d,
    {
      scenePath: scene.scenePath,
      chunk: o.chunk ?? 1,
      pack: true,
      outDir,
      ...(o.persistent ? { persistent: true } : {}),
    },
    o.frames,
    workDir,
    duplicatesBefore,
    120_000,
  )
  return { ...job, blender: size }
}

export async function jobDetail(d: DaemonProc, jobId: string): Promise<JobDetail | undefined> {
  const r = await apiCall<JobDetail>(d.socket, 'GET', `/v1/jobs/${jobId}`, undefined, 5_000)
  return r.status === 200 ? r.body : undefined
}

/** Wait until the submitter sees the job done with every output written locally. */
export async function waitJobCollected(
  submitter: DaemonProc,
  jobId: string,
  timeoutMs: number,
): Promise<JobDetail> {
  try {
    return await waitFor(
      async () => {
        const j = await jobDetail(submitter, jobId)
        if (j?.state === 'failed' || j?.state === 'canceled')
          throw new Error(`job ${jobId} ended ${j.state}: ${j.reason}`)
        return j?.state === 'done' && j.localComplete ? j : undefined
      },
      timeoutMs,
      `job ${jobId} done and collected`,
      200,
    )
  } catch (err) {
    // A timeout says what was still missing, and what the submitter last said about it.
    const j = await jobDetail(submitter, jobId).catch(() => undefined)
    const missing = j?.frames
      .filter((f) => f.state !== 'done' || !f.outputs?.length)
      .map((f) => `${f.frame}:${f.state}${f.node ? `@${f.node.slice(-6)}` : ''}`)
    throw new Error(
      `${err instanceof Error ? err.message : String(err)}; job ${j?.state ?? '?'}, localComplete ${j?.localComplete}, frames not in the output folder: ${missing?.join(' ') || 'none'}; submitter's last log lines:\n${submitter.stderr.slice(-25).join('\n')}`,
    )
  }
}

/** The fingerprint every replica must agree on. */
function fingerprint(j: JobDetail): string {
  return JSON.stringify({
    state: j.state,
    framesDone: j.framesDone,
    frames: j.frames.map((f) => [f.frame, f.state]),
    chunks: j.chunks.map((c) => [c.index, c.state, c.attempt, c.node]),
  })
}

/** Every daemon in `procs` reports the same job state (waits for gossip/sync to settle). */
export async function expectConverged(
  procs: DaemonProc[],
  jobId: string,
  timeoutMs = 30_000,
): Promise<JobDetail> {
  let last: string[] = []
  try {
    return await waitFor(
      async () => {
        const details = await Promise.all(procs.map((p) => jobDetail(p, jobId)))
        if (details.some((d) => !d)) return undefined
        last = details.map((d) => fingerprint(d!))
        return last.every((f) => f === last[0]) && details[0]!.state === 'done'
          ? details[0]
          : undefined
      },
      timeoutMs,
      'every replica to agree on the job state',
      200,
    )
  } catch (err) {
    throw new Error(
      `${(err as Error).message}\nreplicas:\n${last.map((l) => l.slice(0, 400)).join('\n')}`,
    )
  }
}

/** Every frame exactly once in outDir, with the test engine's exact bytes, and nothing else. */
export async function expectOutputs(job: SubmittedJob): Promise<void> {
  await expectFrameFiles(job)
  for (const f of job.frames) {
    const bytes = new Uint8Array(await readFile(join(job.outDir, frameFileName(f, '.png'))))
    const want = testFramePng(job.jobId, f)
    if (Buffer.compare(bytes, want) !== 0)
      throw new Error(`frame ${f}: wrong bytes (${bytes.length} bytes, want ${want.length})`)
  }
}

/**
 * A real-Blender job's outputs: every frame once and nothing else, each a complete PNG
 * (signature, IEND) of the scene's resolution whose decoded pixels are not all one value
 * (a black or pink frame from a broken render would be). Blender's bytes are not
 * reproducible, so there is no exact comparison.
 */
export async function verifyBlenderOutputs(job: SubmittedJob): Promise<void> {
  if (!job.blender) throw new Error(`job ${job.jobId} is not a Blender job`)
  const { width, height } = job.blender
  await expectFrameFiles(job)
  for (const f of job.frames) {
    const path = join(job.outDir, frameFileName(f, '.png'))
    if (!(await isValidImage(path, 'PNG'))) throw new Error(`frame ${f}: not a complete PNG`)
    const head = await readFile(path)
    // IHDR is always the first chunk: width and height at bytes 16 and 20.
    const w = head.readUInt32BE(16)
    const h = head.readUInt32BE(20)
    if (head.toString('latin1', 12, 16) !== 'IHDR' || w !== width || h !== height)
      throw new Error(`frame ${f}: ${w}×${h}, want ${width}×${height}`)
    const { stdout } = await execFileAsync(
      'ffmpeg',
      ['-v', 'error', '-i', path, '-f', 'rawvideo', '-pix_fmt', 'gray', '-'],
      { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 },
    )
    if (stdout.length !== width * height)
      throw new Error(`frame ${f}: decoded ${stdout.length} bytes, want ${width * height}`)
    if (stdout.every((b) => b === stdout[0]))
      throw new Error(`frame ${f}: every pixel is ${stdout[0]} (an empty render)`)
  }
}

/** The check that fits the job: exact bytes for the test engine, valid pixels for Blender. */
export async function verifyJobOutputs(job: SubmittedJob): Promise<void> {
  await (job.blender ? verifyBlenderOutputs(job) : expectOutputs(job))
}

/** outDir holds exactly one PNG per frame of the job and nothing else (no temp files). */
async function expectFrameFiles(job: SubmittedJob): Promise<void> {
  const names = (await readdir(job.outDir)).sort()
  const expected = job.frames.map((f) => frameFileName(f, '.png')).sort()
  if (JSON.stringify(names) !== JSON.stringify(expected)) {
    const extra = names.filter((n) => !expected.includes(n))
    const missing = expected.filter((n) => !names.includes(n))
    throw new Error(
      `output folder mismatch: missing ${JSON.stringify(missing)}, extra ${JSON.stringify(extra)}`,
    )
  }
}

export async function expectAlive(procs: DaemonProc[]): Promise<void> {
  for (const p of procs) {
    if (p.proc.exitCode !== null || p.proc.signalCode !== null)
      throw new Error(
        `daemon ${p.dir} exited (${p.proc.exitCode ?? p.proc.signalCode}): ${p.stderr.join('').slice(-2000)}`,
      )
    const r = await apiCall(p.socket, 'GET', '/v1/node', undefined, 10_000)
    if (r.status !== 200) throw new Error(`daemon ${p.dir} answers ${r.status}`)
  }
}

export interface RenderCounts {
  chunks: number
  /** Complete entries beyond the first of a chunk (the reducer's count): wasted renders. */
  duplicateCompletes: number
  /** Attempts beyond the first of each chunk (reopened, lost or failed leases). */
  extraAttempts: number
}

/** A gauge or counter from the daemon's /metrics (summed over label sets). */
export async function metric(d: DaemonProc, name: string): Promise<number> {
  const r = await apiCall<string>(d.socket, 'GET', '/metrics')
  let sum = 0
  for (const line of String(r.body).split('\n')) {
    const m = new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`).exec(line)
    if (m) sum += Number(m[2])
  }
  return sum
}

/**
 * Count renders: extra attempts from the job's chunks; duplicate completes from the
 * reducer's gauge (over all jobs, so pass the value read before this job was submitted).
 * The job's own log cannot be used: a finished job is compacted into one seal entry.
 */
export async function renderCounts(
  d: DaemonProc,
  jobId: string,
  duplicatesBefore = 0,
): Promise<RenderCounts> {
  const j = await jobDetail(d, jobId)
  if (!j) throw new Error(`job ${jobId} unknown on ${d.dir}`)
  return {
    chunks: j.chunks.length,
    extraAttempts: j.chunks.reduce((n, c) => n + Math.max(0, c.attempt - 1), 0),
    duplicateCompletes: (await metric(d, 'rmesh_duplicate_renders')) - duplicatesBefore,
  }
}

export function report(
  name: string,
  counts: RenderCounts,
  extra: Record<string, unknown> = {},
): void {
  console.log(`[faults] ${name}: ${JSON.stringify({ ...counts, ...extra })}`)
}

/** The full set of checks after a scenario; returns the render counts. */
export async function expectPromisesKept(
  name: string,
  procs: DaemonProc[],
  submitter: DaemonProc,
  job: SubmittedJob,
  timeoutMs = 90_000,
): Promise<RenderCounts> {
  const started = Date.now()
  await waitJobCollected(submitter, job.jobId, timeoutMs)
  await expectConverged(procs, job.jobId)
  await verifyJobOutputs(job)
  await expectAlive(procs)
  const counts = await renderCounts(submitter, job.jobId, job.duplicatesBefore)
  report(name, counts, { settleMs: Date.now() - started })
  return counts
}

/** Wait until `d` is rendering some chunk of the job (per the submitter's view). */
export async function waitRendering(
  observer: DaemonProc,
  d: DaemonProc,
  jobId: string,
  timeoutMs = 20_000,
): Promise<void> {
  await waitFor(
    async () => {
      const j = await jobDetail(observer, jobId)
      return j?.chunks.some(
        (c) => c.node === d.peerId && (c.state === 'rendering' || c.state === 'claimed'),
      )
    },
    timeoutMs,
    `${d.peerId} to hold a chunk`,
    25,
  )
}

export async function waitFramesDone(
  d: DaemonProc,
  jobId: string,
  n: number,
  timeoutMs = 30_000,
): Promise<void> {
  await waitFor(
    async () => ((await jobDetail(d, jobId))?.framesDone ?? 0) >= n,
    timeoutMs,
    `${n} frames done`,
    50,
  )
}

/** Pids of the live (not zombie) processes whose parent is `ppid` and whose name is `comm`. */
export async function childProcesses(ppid: number, comm: string): Promise<number[]> {
  const out: number[] = []
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '')
    // pid (comm) state ppid …: comm may hold spaces and parentheses, so split after the last ')'.
    const close = stat.lastIndexOf(')')
    if (close < 0 || stat.slice(stat.indexOf('(') + 1, close) !== comm) continue
    const [state, parent] = stat.slice(close + 2).split(' ')
    if (Number(parent) === ppid && state !== 'Z') out.push(Number(name))
  }
  return out
}

/** True while `pid` runs (a zombie waiting to be reaped counts as gone). */
export async function processRuns(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  return stat !== '' && stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
}

export async function daemonLog(d: DaemonProc): Promise<string> {
  return readFile(join(d.dir, 'daemon.log'), 'utf8').catch(() => '')
}

/**
 * SIGSTOPs `victim` while it holds a chunk of the job. `untilBusy` waits until it renders;
 * a complete sent just before the freeze may still be on its way, so only a claim still
 * standing 500 ms after the freeze counts as held (else it thaws and tries again).
 */
export async function freezeWhileHolding(
  submitter: DaemonProc,
  victim: DaemonProc,
  jobId: string,
  untilBusy: () => Promise<unknown>,
): Promise<{ held: ChunkInfo[]; pausedAt: number }> {
  for (let tries = 0; tries < 5; tries++) {
    await untilBusy()
    const pausedAt = Date.now()
    victim.proc.kill('SIGSTOP')
    await new Promise((r) => setTimeout(r, 500))
    const held = (await jobDetail(submitter, jobId))!.chunks.filter(
      (c) => c.node === victim.peerId && (c.state === 'claimed' || c.state === 'rendering'),
    )
    if (held.length > 0) return { held, pausedAt }
    victim.proc.kill('SIGCONT')
  }
  throw new Error('the victim never held a chunk when frozen')
}

/** Waits until every lease in `held` is reopened as a newer attempt on another node. */
export async function waitReopenedElsewhere(
  submitter: DaemonProc,
  victim: DaemonProc,
  jobId: string,
  held: readonly ChunkInfo[],
  timeoutMs: number,
): Promise<void> {
  await waitFor(
    async () => {
      const j = await jobDetail(submitter, jobId)
      return held.every((h) => {
        const c = j!.chunks[h.index]
        return c.attempt > h.attempt && c.node !== victim.peerId
      })
    },
    timeoutMs,
    'the frozen node’s leases to be reopened elsewhere',
    100,
  )
}
