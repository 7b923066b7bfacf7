/**
 * The soak (npm run soak [-- --minutes N]): five real daemons on loopback run random
 * test-engine jobs under random faults (SIGKILL + restart, SIGSTOP + SIGCONT) for a
 * bounded time, while each daemon's resident memory and open file descriptors are
 * sampled from /proc every 30 s. The summary goes to bench/soak-results.md.
 *
 * Invariants: every finished job is checked like the fault tests check it (every frame
 * once, exact bytes) and then deleted, so growth means a leak, not kept jobs; node 1 is
 * never faulted, so one process lives the whole run as the leak witness; at most one
 * node is faulted at a time; everything started is stopped and removed at the end.
 */
import { readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { apiCall, REPO_ROOT, restartDaemonProc, stopDaemonProc } from '../test/helpers/daemons.js'
import {
  expectAlive,
  expectOutputs,
  jobDetail,
  startFaultMesh,
  stopAll,
  type SubmittedJob,
  submitTestJob,
} from '../test/helpers/faults.js'

interface Sample {
  atS: number
  node: number
  pid: number
  rssKiB: number
  fds: number
}

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}
const minutes = arg('minutes', 60)
const sampleS = arg('sample-s', 30)
const NODES = 5
const rand = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1))
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function procStats(pid: number): Promise<{ rssKiB: number; fds: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN)
  const fds = (await readdir(`/proc/${pid}/fd`)).length
  return { rssKiB, fds }
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

async function main() {
  const started = Date.now()
  const endAt = started + minutes * 60_000
  const procs = await startFaultMesh(NODES, { logLevel: 'warn' })
  const samples: Sample[] = []
  const faults = { kill: 0, stop: 0, unexpectedExits: 0 }
  const jobs = { submitted: 0, verified: 0, failed: 0, frames: 0, errors: [] as string[] }
  let faulting = false
  const active = new Map<string, { job: SubmittedJob; submitter: number; at: number }>()
  const durations: number[] = []
  const log = (msg: string) =>
    console.log(`[soak ${Math.round((Date.now() - started) / 1000)} s] ${msg}`)

  const sample = async () => {
    const atS = Math.round((Date.now() - started) / 1000)
    for (let i = 0; i < procs.length; i++) {
      const p = procs[i]
      if (!p.proc.pid || p.proc.exitCode !== null || p.proc.signalCode !== null) continue
      try {
        samples.push({ atS, node: i + 1, pid: p.proc.pid, ...(await procStats(p.proc.pid)) })
      } catch {}
    }
    const w = samples.filter((s) => s.atS === atS)
    log(
      `sample: ${w.map((s) => `n${s.node} ${Math.round(s.rssKiB / 1024)} MiB/${s.fds} fd`).join(', ')}`,
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
      procs[i] = await restartDaemonProc(p)
    }
  }

  const injectFault = async () => {
    const i = rand(1, NODES - 1)
    faulting = true
    try {
      if (Math.random() < 0.5) {
        faults.kill++
        log(`fault: SIGKILL node ${i + 1}`)
        await stopDaemonProc(procs[i], 'SIGKILL')
        await sleep(rand(500, 5_000))
        procs[i] = await restartDaemonProc(procs[i])
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
      const job = await submitTestJob(d, spec)
      jobs.submitted++
      active.set(job.jobId, { job, submitter, at: Date.now() })
      log(`job ${job.jobId} from node ${submitter + 1}: ${JSON.stringify(spec)}`)
    } catch (err) {
      jobs.errors.push(`submit: ${(err as Error).message}`)
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
          await expectOutputs(job)
          durations.push(Date.now() - at)
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
    await writeReport({ started, minutes, samples, faults, jobs, durations })
    if (keep) await Promise.all(procs.map((p) => stopDaemonProc(p, 'SIGKILL').catch(() => {})))
    else await stopAll(procs)
  }
}

async function writeReport(r: {
  started: number
  minutes: number
  samples: Sample[]
  faults: { kill: number; stop: number; unexpectedExits: number }
  jobs: { submitted: number; verified: number; failed: number; frames: number; errors: string[] }
  durations: number[]
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
    `- Command: \`npm run soak -- --minutes ${r.minutes}\` (node dist/bench/soak.js)`,
    `- Date: ${new Date(r.started).toISOString()}; ran ${Math.round((Date.now() - r.started) / 60_000)} min`,
    `- Machine: ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}; other work was running at the same time`,
    `- Mesh: ${NODES} daemons on 127.0.0.1, test engine, lease timeout 3 s, presence every 0.5 s`,
    `- Jobs: ${r.jobs.submitted} submitted, ${r.jobs.verified} verified (every frame once, exact bytes; ${r.jobs.frames} frames), ${r.jobs.failed} failed`,
    `- Submit to verified output, per job: median ${pct(0.5)} s, p90 ${pct(0.9)} s, max ${pct(1)} s`,
    `- Faults: ${r.faults.kill} SIGKILL + restart, ${r.faults.stop} SIGSTOP + SIGCONT (nodes 2–5; node 1 never faulted); ${r.faults.unexpectedExits} unexpected exits`,
    '',
    '## Memory and file descriptors per process',
    '',
    'Slopes are least-squares over the process lifetime, after its first minute (start-up).',
    '',
    '| node | pid | samples | RSS first → last (MiB) | RSS max | RSS slope (MiB/h) | fds first → last | fds max | fd slope (/h) | verdict |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  const byProc = new Map<string, Sample[]>()
  for (const s of r.samples) {
    const k = `${s.node}/${s.pid}`
    byProc.set(k, [...(byProc.get(k) ?? []), s])
  }
  for (const [, ss] of [...byProc].sort(
    (a, b) => a[1][0].node - b[1][0].node || a[1][0].atS - b[1][0].atS,
  )) {
    const settled = ss.filter((s) => s.atS - ss[0].atS >= 60)
    const use = settled.length >= 2 ? settled : ss
    const hours = use.map((s) => s.atS / 3600)
    const rssSlope = slope(
      hours,
      use.map((s) => s.rssKiB / 1024),
    )
    const fdSlope = slope(
      hours,
      use.map((s) => s.fds),
    )
    const first = use[0]
    const last = use[use.length - 1]
    const spanH = (last.atS - first.atS) / 3600
    // Growing: the trend over the span adds more than 20 % and 20 MiB (or 20 % and 10 fds).
    const rssGrowth = rssSlope * spanH
    const fdGrowth = fdSlope * spanH
    const growing =
      use.length >= 4 &&
      ((rssGrowth > 20 && rssGrowth > 0.2 * (first.rssKiB / 1024)) ||
        (fdGrowth > 10 && fdGrowth > 0.2 * first.fds))
    const verdict = use.length < 4 ? 'too short' : growing ? '**growing**' : 'flat'
    lines.push(
      `| ${ss[0].node} | ${ss[0].pid} | ${ss.length} | ${Math.round(first.rssKiB / 1024)} → ${Math.round(last.rssKiB / 1024)} | ${Math.round(Math.max(...ss.map((s) => s.rssKiB)) / 1024)} | ${rssSlope.toFixed(1)} | ${first.fds} → ${last.fds} | ${Math.max(...ss.map((s) => s.fds))} | ${fdSlope.toFixed(1)} | ${verdict} |`,
    )
  }
  lines.push(
    '',
    '## Samples (RSS MiB / open fds)',
    '',
    `| t (s) | ${Array.from({ length: NODES }, (_, i) => `node ${i + 1}`).join(' | ')} |`,
    `|---|${'---|'.repeat(NODES)}`,
  )
  const times = [...new Set(r.samples.map((s) => s.atS))]
  for (const t of times) {
    const row = Array.from({ length: NODES }, (_, i) => {
      const s = r.samples.find((x) => x.atS === t && x.node === i + 1)
      return s ? `${Math.round(s.rssKiB / 1024)} / ${s.fds}` : '—'
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
  const out = join(REPO_ROOT, 'bench', 'soak-results.md')
  await writeFile(out, `${lines.join('\n')}\n`)
  console.log(`[soak] wrote ${out}`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
