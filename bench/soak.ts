/**
 * The soak (npm run soak [-- --minutes N]): five real daemons on loopback run random
 * test-engine jobs under random faults (SIGKILL + restart, SIGSTOP + SIGCONT, a partition
 * of the mesh into two random sides through the daemons' test gate) for a
 * bounded time, while each daemon's memory and open file descriptors are sampled every
 * 30 s: the live heap (the daemons run with --expose-gc and each sample asks
 * GET /metrics?gc=1, which collects first), external memory, then RSS and fds from /proc.
 * The summary goes to bench/soak-results.md (or --out PATH). With --blender, about a third
 * of the jobs render the example scene with the real Blender (frames checked for valid
 * pixels of the scene's size instead of exact bytes).
 *
 * Why live memory after a full GC (V8 heap + external: buffers live outside the heap), not
 * RSS: V8 grows its heap to fit the allocation rate and returns pages lazily, so RSS
 * climbs for many minutes on a healthy process; live memory only grows if something keeps
 * objects. The verdict rule is written into the report.
 *
 * Invariants: every finished job is checked like the fault tests check it (every frame
 * once, exact bytes; valid pixels for Blender) and then deleted, so growth means a leak,
 * not kept jobs; node 1's process is never killed or paused, so one process lives the
 * whole run as the leak witness; one fault runs at a time; everything started is stopped
 * and removed at the end.
 */
import { readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import {
  apiCall,
  type DaemonProc,
  REPO_ROOT,
  restartDaemonProc,
  stopDaemonProc,
} from '../test/helpers/daemons.js'
import { liveMemory } from './common.js'
import { createPartitionGate } from '../test/helpers/fault-gates.js'
import {
  expectAlive,
  jobDetail,
  startFaultMesh,
  stopAll,
  type SubmittedJob,
  submitBlenderJob,
  submitTestJob,
  verifyJobOutputs,
} from '../test/helpers/faults.js'

interface Sample {
  atS: number
  node: number
  pid: number
  rssKiB: number
  fds: number
  /** V8 heap in use right after a full GC (absent when the daemon did not answer). */
  heapKiB?: number
  /** Buffers and other memory outside the V8 heap, after the same GC. */
  externalKiB?: number
  /** Folds the lease manager holds (live and kept jobs). */
  folds?: number
  /** Bounded caches below their bound now (rmesh_cache_entries < rmesh_cache_capacity). */
  cachesFilling?: string[]
}

/** Samples from a process's first minutes are start-up (JIT, caches filling), not trend. */
const WARMUP_S = 120
/** Growth over the settled span above both of these is "growing" (see the report). */
const GROW_MIB = 8
const GROW_SHARE = 0.1
/** Settled samples needed for a verdict: a floor needs several samples in each half. */
const MIN_SETTLED = 10

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}
const minutes = arg('minutes', 60)
/** Share of real-Blender jobs (0 without --blender; --blender-share F to change it). */
const blenderShare = process.argv.includes('--blender') ? arg('blender-share', 1 / 3) : 0
const outIndex = process.argv.indexOf('--out')
const reportPath =
  outIndex >= 0 ? process.argv[outIndex + 1] : join(REPO_ROOT, 'bench', 'soak-results.md')
const sampleS = arg('sample-s', 30)
const NODES = 5
const mib = (kib: number | undefined) => (kib === undefined ? '—' : String(Math.round(kib / 1024)))
const rand = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1))
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function procStats(pid: number): Promise<{ rssKiB: number; fds: number; stopped: boolean }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN)
  const stopped = /State:\s+T/.test(status)
  const fds = (await readdir(`/proc/${pid}/fd`)).length
  return { rssKiB, fds, stopped }
}

/** Caches that seals trim as they fill: they may never reach their bound, so none waits. */
const TRIMMED_CACHES = new Set(['entry-meta'])

/**
 * When every bounded cache of the process had reached its bound at least once (seconds
 * since start), or undefined. Live memory rises while they fill, by design and up to
 * their bounds; a leak is growth after that.
 */
function cachesFullAt(ss: Sample[]): number | undefined {
  const reached = new Set<string>()
  const all = new Set<string>()
  for (const s of ss) {
    if (!s.cachesFilling) continue
    for (const c of s.cachesFilling) if (!TRIMMED_CACHES.has(c)) all.add(c)
  }
  for (const s of ss) {
    if (!s.cachesFilling) continue
    for (const c of all) if (!s.cachesFilling.includes(c)) reached.add(c)
    if (reached.size === all.size) return s.atS
  }
  return undefined
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length
  if (n < 2) return 0
  const mx = xs.reduce((a, b) => a + b, 0) / n
  const my = ys.reduce((a, b) => a + b, 0) / n
  let num = 0
  let den = 0
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my)
    den += (xs[i] - mx) ** 2
  }
  return den === 0 ? 0 : num / den
}

async function heapStats(
  socket: string,
): Promise<Pick<Sample, 'heapKiB' | 'externalKiB' | 'folds' | 'cachesFilling'>> {
  const m = await liveMemory(socket)
  return {
    heapKiB: m.heapKiB,
    externalKiB: m.externalKiB,
    folds: m.folds,
    cachesFilling: m.cachesFilling,
  }
}

async function main() {
  const started = Date.now()
  const endAt = started + minutes * 60_000
  const gate = await createPartitionGate()
  const procs = await startFaultMesh(NODES, {
    logLevel: 'warn',
    env: {
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --expose-gc`.trim(),
      ...gate.env,
    },
  })
  const samples: Sample[] = []
  const faults = { kill: 0, stop: 0, partition: 0, unexpectedExits: 0, slowRestarts: 0 }
  const jobs = {
    submitted: 0,
    blender: 0,
    verified: 0,
    failed: 0,
    frames: 0,
    errors: [] as string[],
  }
  let faulting = false
  const active = new Map<string, { job: SubmittedJob; submitter: number; at: number }>()
  const durations: number[] = []
  const verifiedAt: number[] = []
  const log = (msg: string) =>
    console.log(`[soak ${Math.round((Date.now() - started) / 1000)} s] ${msg}`)

  const sample = async () => {
    const atS = Math.round((Date.now() - started) / 1000)
    for (let i = 0; i < procs.length; i++) {
      const p = procs[i]
      if (!p.proc.pid || p.proc.exitCode !== null || p.proc.signalCode !== null) continue
      try {
        // A paused daemon cannot answer; its sample is /proc only. GC first, then RSS.
        const before = await procStats(p.proc.pid)
        const heap = before.stopped ? {} : await heapStats(p.socket).catch(() => ({}))
        const { rssKiB, fds } = before.stopped ? before : await procStats(p.proc.pid)
        samples.push({ atS, node: i + 1, pid: p.proc.pid, rssKiB, fds, ...heap })
      } catch {}
    }
    const w = samples.filter((s) => s.atS === atS)
    log(
      `sample: ${w.map((s) => `n${s.node} heap ${mib(s.heapKiB)} ext ${mib(s.externalKiB)} rss ${mib(s.rssKiB)} MiB/${s.fds} fd`).join(', ')}`,
    )
  }

  /** A daemon that exited without our doing is a crash: record and restart it. */
  const reviveCrashed = async () => {
    for (let i = 0; i < procs.length; i++) {
      const p = procs[i]
      if (faulting || (p.proc.exitCode === null && p.proc.signalCode === null)) continue
      faults.unexpectedExits++
      jobs.errors.push(
        `node ${i + 1} exited on its own (${p.proc.exitCode ?? p.proc.signalCode}): ${p.stderr.join('').slice(-300)}`,
      )
      procs[i] = await restartAfterFault(i)
    }
  }

  /**
   * Restart a node we killed. A restart that does not answer in time (an overloaded machine:
   * LevelDB open, key load and libp2p start share 2 cores with 4 busy daemons) is a slow
   * restart, not a crash: it is counted apart and retried with a longer wait.
   */
  const restartAfterFault = async (i: number): Promise<DaemonProc> => {
    for (let attempt = 1; ; attempt++) {
      const startTimeoutMs = 30_000 * attempt
      try {
        return await restartDaemonProc({
          ...procs[i],
          options: { ...procs[i].options, startTimeoutMs },
        })
      } catch (err) {
        if (attempt >= 3) throw err
        faults.slowRestarts++
        jobs.errors.push(
          `slow restart: node ${i + 1} did not answer within ${startTimeoutMs / 1000} s of its restart; retrying`,
        )
      }
    }
  }

  const injectFault = async () => {
    const i = rand(1, NODES - 1)
    const kind = Math.random()
    faulting = true
    try {
      if (kind < 0.25) {
        // A random split of the whole mesh (node 1 included: its process is not hurt).
        const order = [...procs].sort(() => Math.random() - 0.5)
        const cut = rand(1, NODES - 1)
        const [sideA, sideB] = [order.slice(0, cut), order.slice(cut)]
        const name = (side: DaemonProc[]) => side.map((p) => procs.indexOf(p) + 1).join(',')
        faults.partition++
        log(`fault: partition ${name(sideA)} | ${name(sideB)}`)
        await gate.split(sideA, sideB, 30_000)
        await sleep(rand(5_000, 30_000))
        const ms = await gate.heal(sideA, sideB, 120_000)
        log(`fault: healed, reconnected after ${ms} ms`)
      } else if (kind < 0.6) {
        faults.kill++
        log(`fault: SIGKILL node ${i + 1}`)
        await stopDaemonProc(procs[i], 'SIGKILL')
        await sleep(rand(500, 5_000))
        procs[i] = await restartAfterFault(i)
      } else {
        faults.stop++
        log(`fault: SIGSTOP node ${i + 1}`)
        procs[i].proc.kill('SIGSTOP')
        await sleep(rand(1_000, 8_000))
        procs[i].proc.kill('SIGCONT')
      }
    } finally {
      faulting = false
    }
  }

  const submitOne = async () => {
    // Node 1 submits most jobs; the others sometimes (they may be killed: the job survives).
    const submitter = Math.random() < 0.7 ? 0 : rand(1, NODES - 1)
    const d = procs[submitter]
    if (d.proc.exitCode !== null || d.proc.signalCode !== null) return
    try {
      const spec = { frames: rand(10, 60), frameMs: rand(50, 300), chunk: rand(1, 3) }
      const blenderSpec = { frames: rand(4, 12), chunk: rand(1, 2) }
      const blender = Math.random() < blenderShare
      const job = blender ? await submitBlenderJob(d, blenderSpec) : await submitTestJob(d, spec)
      if (blender) jobs.blender++
      jobs.submitted++
      active.set(job.jobId, { job, submitter, at: Date.now() })
      log(
        `job ${job.jobId} from node ${submitter + 1}: ${blender ? `blender ${JSON.stringify(blenderSpec)}` : JSON.stringify(spec)}`,
      )
    } catch (err) {
      jobs.errors.push(`submit to node ${submitter + 1}: ${(err as Error).message}`)
    }
  }

  const checkJobs = async () => {
    for (const [jobId, { job, submitter, at }] of active) {
      const d = procs[submitter]
      const j = await jobDetail(d, jobId).catch(() => undefined)
      if (!j) continue
      if (j.state === 'failed' || j.state === 'canceled') {
        jobs.failed++
        jobs.errors.push(`job ${jobId} ${j.state}: ${j.reason}`)
      } else if (!(j.state === 'done' && j.localComplete)) continue
      else {
        try {
          await verifyJobOutputs(job)
          durations.push(Date.now() - at)
          verifiedAt.push((Date.now() - started) / 1000)
          log(`job ${jobId} verified after ${Date.now() - at} ms`)
          jobs.verified++
          jobs.frames += job.frames.length
        } catch (err) {
          jobs.failed++
          jobs.errors.push(`job ${jobId}: ${(err as Error).message}`)
        }
      }
      active.delete(jobId)
      await apiCall(d.socket, 'DELETE', `/v1/jobs/${jobId}`).catch(() => {})
      await rm(job.workDir, { recursive: true, force: true })
    }
  }

  let nextSample = Date.now()
  let nextFault = Date.now() + rand(20_000, 40_000)
  let faultRun: Promise<void> | undefined
  try {
    while (Date.now() < endAt) {
      if (Date.now() >= nextSample) {
        await sample()
        nextSample += sampleS * 1000
      }
      if (!faultRun && Date.now() >= nextFault) {
        faultRun = injectFault()
          .catch((err) => {
            jobs.errors.push(`fault: ${(err as Error).message}`)
          })
          .finally(() => {
            faultRun = undefined
            nextFault = Date.now() + rand(20_000, 40_000)
          })
      }
      if (active.size < 2) await submitOne()
      await checkJobs()
      await reviveCrashed()
      await sleep(500)
    }
    await faultRun
    // Let the last jobs finish (bounded), then take a final sample.
    const drainUntil = Date.now() + 120_000
    while (active.size > 0 && Date.now() < drainUntil) {
      await checkJobs()
      await sleep(500)
    }
    for (const [jobId, a] of active) {
      const j = await jobDetail(procs[a.submitter], jobId).catch(() => undefined)
      const chunks = j?.chunks
        .map((c) => `${c.index}:${c.state}@${c.attempt}:${c.node?.slice(-4) ?? '-'}`)
        .join(' ')
      jobs.errors.push(
        `job ${jobId} (node ${a.submitter + 1}) unfinished at the end: ${j?.state} ${j?.framesDone}/${j?.framesTotal} local ${j?.framesLocal}; ${chunks}`,
      )
    }
    await sample()
    await expectAlive(procs).catch((err) => jobs.errors.push(`end: ${(err as Error).message}`))
  } finally {
    // Unfinished jobs are bugs to chase: keep every data directory (daemon.log) for them.
    const keep = active.size > 0
    if (keep) {
      const dirs = [...procs.map((p) => p.dir), ...[...active.values()].map((a) => a.job.workDir)]
      jobs.errors.push(`kept for inspection: ${dirs.join(' ')}`)
    }
    await writeReport({ started, minutes, samples, faults, jobs, durations, verifiedAt })
    if (keep) await Promise.all(procs.map((p) => stopDaemonProc(p, 'SIGKILL').catch(() => {})))
    else await stopAll(procs)
    await gate.remove()
  }
}

async function writeReport(r: {
  started: number
  minutes: number
  samples: Sample[]
  faults: {
    kill: number
    stop: number
    partition: number
    unexpectedExits: number
    slowRestarts: number
  }
  jobs: {
    submitted: number
    blender: number
    verified: number
    failed: number
    frames: number
    errors: string[]
  }
  durations: number[]
  /** Seconds since start at which each job was verified. */
  verifiedAt: number[]
}) {
  const sorted = [...r.durations].sort((a, b) => a - b)
  const pct = (q: number) =>
    sorted.length
      ? Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] / 100) / 10
      : Number.NaN
  const cpu = cpus()
  const lines: string[] = [
    '# Soak results',
    '',
    `- Command: \`npm run soak -- ${process.argv.slice(2).join(' ') || `--minutes ${r.minutes}`}\` (node dist/bench/soak.js)`,
    `- Date: ${new Date(r.started).toISOString()}; ran ${Math.round((Date.now() - r.started) / 60_000)} min`,
    `- Machine: ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}; other work was running at the same time`,
    `- Mesh: ${NODES} daemons on 127.0.0.1, test engine${blenderShare ? ' and real Blender (example scene)' : ''}, lease timeout 3 s, presence every 0.5 s`,
    `- Jobs: ${r.jobs.submitted} submitted${blenderShare ? ` (${r.jobs.blender} real Blender)` : ''}, ${r.jobs.verified} verified (every frame once, exact bytes; Blender frames: a PNG of the scene's size with non-constant pixels; ${r.jobs.frames} frames), ${r.jobs.failed} failed`,
    `- Submit to verified output, per job: median ${pct(0.5)} s, p90 ${pct(0.9)} s, max ${pct(1)} s`,
    `- Faults: ${r.faults.kill} SIGKILL + restart, ${r.faults.stop} SIGSTOP + SIGCONT (nodes 2–5; node 1's process never faulted), ${r.faults.partition} partitions of the mesh into two random sides for 5–30 s; ${r.faults.unexpectedExits} unexpected exits (crashes); ${r.faults.slowRestarts} slow restarts (a restarted daemon that took over its start timeout to answer, retried)`,
    '',
    '## Memory and file descriptors per process',
    '',
    `How "flat" is judged: only samples after a process's first ${WARMUP_S / 60} minutes count (start-up: JIT), and for memory only those after every bounded cache of the daemon (\`rmesh_cache_entries\` against \`rmesh_cache_capacity\` in /metrics: dropped and verified ids, seals, logs; not entry metadata, which seals trim, so it may never fill) has reached its bound once: live memory rises while they fill, by design and up to their bounds, and a leak is growth beyond that. A process whose caches never all filled is judged from the warm-up, filling included. The floor per 10 minutes over the whole settled span is shown for information. The signal is live memory right after a full GC (\`GET /metrics?gc=1\` on daemons run with \`--expose-gc\`): V8 heap in use plus external memory (Buffers and ArrayBuffers live outside the V8 heap; the leak this harness found was there). RSS is shown but not judged: V8 sizes its heap to the allocation rate and returns pages lazily, so RSS keeps rising for a long time on a healthy process. Live memory at one instant also holds whatever is in flight (chunks being stored, entries being joined), which only adds; so the judged figure is the low envelope: the minimum over the first half of the settled samples against the minimum over the second half. A leak raises the floor; in-flight noise does not. A process is **growing** when that floor rises by more than ${GROW_MIB} MiB and more than ${GROW_SHARE * 100} % of the first floor, or its fd floor rises by more than 10 and 20 %; it needs at least ${MIN_SETTLED} settled samples, else "too short" (restarted nodes rarely live that long; node 1 is never faulted and always does). The least-squares slope (MiB/h) and KiB/job (slope over the span divided by the jobs verified in it; every node folds every job) are shown for information.`,
    '',
    '| node | pid | samples (settled) | caches full at (min) | floor per 10 min (MiB) | live after GC first → last (MiB) | floor 1st half → 2nd half (MiB) | live slope (MiB/h) | KiB/job | heap / external last (MiB) | RSS first → last (MiB) | RSS slope (MiB/h) | fds first → last | fds max | fd slope (/h) | folds last | verdict |',
    `|${'---|'.repeat(17)}`,
  ]
  const byProc = new Map<string, Sample[]>()
  for (const s of r.samples) {
    const k = `${s.node}/${s.pid}`
    byProc.set(k, [...(byProc.get(k) ?? []), s])
  }
  const verdicts: string[] = []
  for (const [, ss] of [...byProc].sort(
    (a, b) => a[1][0].node - b[1][0].node || a[1][0].atS - b[1][0].atS,
  )) {
    const use = ss.filter((s) => s.atS - ss[0].atS >= WARMUP_S)
    const withHeap = use.filter((s) => s.heapKiB !== undefined && s.externalKiB !== undefined)
    const fullAt = cachesFullAt(ss)
    const heapUse = withHeap.filter((s) => fullAt === undefined || s.atS >= fullAt)
    const live = (s: Sample) => (s.heapKiB! + s.externalKiB!) / 1024
    // For information: the floor per 10 minutes over the whole settled span.
    const floors: number[] = []
    for (const s of withHeap) {
      const k = Math.floor((s.atS - withHeap[0].atS) / 600)
      floors[k] = Math.min(floors[k] ?? Number.POSITIVE_INFINITY, live(s))
    }
    const half = Math.floor(heapUse.length / 2)
    const floor1 = Math.min(...heapUse.slice(0, half).map(live))
    const floor2 = Math.min(...heapUse.slice(half).map(live))
    const half2 = Math.floor(use.length / 2)
    const fdFloor1 = Math.min(...use.slice(0, half2).map((s) => s.fds))
    const fdFloor2 = Math.min(...use.slice(half2).map((s) => s.fds))
    const trend = (xs: Sample[], y: (s: Sample) => number) =>
      slope(
        xs.map((s) => s.atS / 3600),
        xs.map(y),
      )
    const spanH = (xs: Sample[]) => (xs.length ? (xs[xs.length - 1].atS - xs[0].atS) / 3600 : 0)
    const heapSlope = trend(heapUse, live)
    const rssSlope = trend(use, (s) => s.rssKiB / 1024)
    const fdSlope = trend(use, (s) => s.fds)
    const heapGrowth = heapSlope * spanH(heapUse)
    const jobsInSpan = heapUse.length
      ? r.verifiedAt.filter((t) => t >= heapUse[0].atS && t <= heapUse[heapUse.length - 1].atS)
          .length
      : 0
    const perJob = jobsInSpan > 0 ? Math.round((heapGrowth * 1024) / jobsInSpan) : Number.NaN
    const short = heapUse.length < MIN_SETTLED || use.length < MIN_SETTLED
    const growing =
      !short &&
      ((floor2 - floor1 > GROW_MIB && floor2 - floor1 > GROW_SHARE * floor1) ||
        (fdFloor2 - fdFloor1 > 10 && fdFloor2 - fdFloor1 > 0.2 * fdFloor1))
    const verdict = short
      ? 'too short'
      : growing
        ? fullAt === undefined
          ? '**growing** (caches never all full)'
          : '**growing**'
        : 'flat'
    if (!short) verdicts.push(growing ? '**growing**' : verdict)
    const f = use[0] ?? ss[0]
    const l = use[use.length - 1] ?? ss[ss.length - 1]
    const hf = heapUse[0]
    const hl = heapUse[heapUse.length - 1]
    lines.push(
      `| ${ss[0].node} | ${ss[0].pid} | ${ss.length} (${use.length}) | ${fullAt === undefined ? 'never' : Math.round(fullAt / 60)} | ${floors.map((x) => Math.round(x)).join(', ') || '—'} | ${hf ? `${Math.round(live(hf))} → ${Math.round(live(hl))}` : '—'} | ${heapUse.length > 1 ? `${Math.round(floor1)} → ${Math.round(floor2)}` : '—'} | ${heapUse.length > 1 ? heapSlope.toFixed(1) : '—'} | ${Number.isFinite(perJob) ? perJob : '—'} | ${hl ? `${mib(hl.heapKiB)} / ${mib(hl.externalKiB)}` : '—'} | ${mib(f.rssKiB)} → ${mib(l.rssKiB)} | ${use.length > 1 ? rssSlope.toFixed(1) : '—'} | ${f.fds} → ${l.fds} | ${Math.max(...ss.map((s) => s.fds))} | ${use.length > 1 ? fdSlope.toFixed(1) : '—'} | ${l.folds ?? '—'} | ${verdict} |`,
    )
  }
  const anyGrowing = verdicts.includes('**growing**')
  lines.splice(
    lines.indexOf('## Memory and file descriptors per process'),
    0,
    `- Outcome: ${verdicts.length === 0 ? 'no process lived long enough to judge' : anyGrowing ? '**memory or fds growing** on some process (table below)' : `flat: live memory after GC and fds of all ${verdicts.length} judged processes`}`,
    '',
  )
  lines.push(
    '',
    '## Samples (heap + external after GC MiB / RSS MiB / open fds)',
    '',
    `| t (s) | ${Array.from({ length: NODES }, (_, i) => `node ${i + 1}`).join(' | ')} |`,
    `|---|${'---|'.repeat(NODES)}`,
  )
  const times = [...new Set(r.samples.map((s) => s.atS))]
  for (const t of times) {
    const row = Array.from({ length: NODES }, (_, i) => {
      const s = r.samples.find((x) => x.atS === t && x.node === i + 1)
      return s
        ? `${s.heapKiB === undefined ? '—' : `${mib(s.heapKiB)} + ${mib(s.externalKiB)}`} / ${mib(s.rssKiB)} / ${s.fds}`
        : '—'
    })
    lines.push(`| ${t} | ${row.join(' | ')} |`)
  }
  if (r.jobs.errors.length)
    lines.push(
      '',
      '## Errors',
      '',
      ...r.jobs.errors.slice(0, 50).map((e) => `- ${e.replace(/\n/g, ' ').slice(0, 400)}`),
    )
  const out = reportPath
  await writeFile(out, `${lines.join('\n')}\n`)
  console.log(`[soak] wrote ${out}`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
