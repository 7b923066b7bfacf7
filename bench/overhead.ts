/**
 * Overhead benchmarks on real daemons (test/helpers/daemons.ts):
 *  - per-chunk overhead: one node renders `frames` chunks of the test engine at frameMs 0
 *    and 50; the overhead is the wall time from the first render's start to the last
 *    chunk's done event, less the engine's own render time, per chunk;
 *  - log convergence: on 5 daemons, a priority change (one log entry) made on the
 *    submitter, until every daemon has folded it (its job-updated event shows the new
 *    priority). Each daemon coalesces job events for 30 ms, the origin alike, so the
 *    figure is the spread of those events: max over daemons − the origin's own;
 *  - the daemon at rest: `idleNodes` admitted daemons with nothing to do for `idleMs`;
 *    CPU seconds from /proc/<pid>/stat (utime + stime) and resident memory (VmRSS).
 *
 *   npm run build && node dist/bench/overhead.js [--quick]
 *   npm run build && node dist/bench/overhead.js --idle-only [SECONDS]   (daemon.idle.* alone)
 */
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ApiEvent } from '../src/api/types.js'
import {
  apiCall,
  type DaemonProc,
  makeTempDir,
  removeDir,
  startMesh,
  stopDaemonProc,
  waitFor,
} from '../test/helpers/daemons.js'
import {
  type BenchResult,
  makeScene,
  median,
  quantile,
  recordEvents,
  round,
  submitTestJob,
  waitJobDone,
  waitMeshReady,
  isMain,
  runStandalone,
} from './common.js'
import { analyseEvents } from './leases.js'

export interface OverheadBenchOptions {
  /** Chunks of the per-chunk run (default 100). */
  frames?: number
  /** Priority changes in the convergence run (default 20). */
  rounds?: number
  convergeNodes?: number
  /** How long the daemons rest while measured (default 30 s). */
  idleMs?: number
  idleNodes?: number
  log?: (line: string) => void
}

async function withMesh<T>(
  n: number,
  fn: (mesh: DaemonProc[], work: string) => Promise<T>,
): Promise<T> {
  const work = await makeTempDir('rmesh-bench-overhead-')
  const mesh = await startMesh(n)
  try {
    await waitMeshReady(mesh)
    return await fn(mesh, work)
  } finally {
    await Promise.all(mesh.map((d) => stopDaemonProc(d).catch(() => undefined)))
    await Promise.all([work, ...mesh.map((d) => d.dir)].map((p) => removeDir(p)))
  }
}

async function perChunk(frames: number, frameMs: number): Promise<BenchResult[]> {
  return withMesh(1, async ([d], work) => {
    const events = recordEvents(d)
    try {
      await events.ready
      const scene = await makeScene(work)
      const outDir = join(work, 'out')
      await mkdir(outDir, { recursive: true })
      const { jobId, submitAt } = await submitTestJob(d, scene, outDir, { frames, frameMs })
      const logs = recordEvents(d, jobId)
      try {
        await waitJobDone(d, jobId, frames * (frameMs + 2_000) + 60_000)
      } finally {
        logs.stop()
      }
      const node = {
        name: 'node1',
        peerId: d.peerId,
        events: [...events.events, ...logs.events.filter((e) => e.type === 'log-line')],
      }
      const a = analyseEvents([node], jobId, submitAt)
      let renderMs = 0
      for (const e of events.events) {
        if (e.type === 'frame-updated' && e.jobId === jobId && e.frame.state === 'done')
          renderMs += e.frame.renderMs ?? 0
      }
      const span = a.makespanMs - a.firstStartMs
      const note = `1 node, ${frames} chunks of 1 frame, test engine at ${frameMs} ms`
      return [
        {
          name: `overhead.chunk.frame${frameMs}ms`,
          value: round((span - renderMs) / frames, 1),
          unit: 'ms',
          note: `${note}: (first render start → last done − Σ engine time) ÷ chunks`,
        },
        {
          name: `overhead.chunk.frame${frameMs}ms.cycle`,
          value: round(span / frames, 1),
          unit: 'ms',
          note: `${note}: wall time per chunk, render included`,
        },
        {
          name: `overhead.chunk.frame${frameMs}ms.gap`,
          value: round(median(a.gaps), 1),
          unit: 'ms',
          note: `median render end → next render start; p90 ${round(quantile(a.gaps, 0.9), 1)} ms`,
        },
      ]
    } finally {
      events.stop()
    }
  })
}

async function convergence(nodes: number, rounds: number): Promise<BenchResult[]> {
  return withMesh(nodes, async (mesh, work) => {
    const recorders = mesh.map((d) => recordEvents(d))
    try {
      await Promise.all(recorders.map((r) => r.ready))
      const scene = await makeScene(work)
      // A job that never finishes holds still while its priority moves.
      const { jobId } = await submitTestJob(mesh[0], scene, join(work, 'out'), {
        frames: 1,
        frameMs: 0,
        extra: { hang: true },
      })
      const seen = (r: { events: ApiEvent[] }, priority: number) =>
        r.events.find(
          (e) => e.type === 'job-updated' && e.job.jobId === jobId && e.job.priority === priority,
        )?.time
      const spreads: number[] = []
      const endToEnd: number[] = []
      for (let i = 0; i < rounds; i++) {
        const priority = 10 + i // distinct per round, never the default 50
        const sentAt = Date.now()
        const r = await apiCall(mesh[0].socket, 'POST', `/v1/jobs/${jobId}/priority`, { priority })
        if (r.status !== 200)
          throw new Error(`priority change: ${r.status} ${JSON.stringify(r.body)}`)
        const times = await waitFor(
          () => {
            const t = recorders.map((rec) => seen(rec, priority))
            return t.every((x) => x !== undefined) ? (t as number[]) : undefined
          },
          30_000,
          `priority ${priority} to reach ${nodes} daemons`,
          5,
        )
        spreads.push(Math.max(...times) - times[0])
        endToEnd.push(Math.max(...times) - sentAt)
      }
      await apiCall(mesh[0].socket, 'POST', `/v1/jobs/${jobId}/cancel`, {})
      return [
        {
          name: 'log.converge.entry',
          value: round(median(spreads), 1),
          unit: 'ms',
          note: `one entry appended on 1 of ${nodes} daemons until folded on all (origin's event → last daemon's); median of ${rounds}, p90 ${round(quantile(spreads, 0.9), 1)} ms, max ${round(Math.max(...spreads), 1)} ms`,
        },
        {
          name: 'log.converge.entry.api',
          value: round(median(endToEnd), 1),
          unit: 'ms',
          note: 'API request sent → last daemon’s job-updated event (includes the 30 ms event coalescing)',
        },
      ]
    } finally {
      for (const r of recorders) r.stop()
    }
  })
}

async function procStat(pid: number): Promise<{ cpuS: number; rssMiB: number; wakes: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name (which may hold spaces) start at state (field 3).
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = Number(f[11]) + Number(f[12])
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN)
  // The main thread's voluntary context switches: each is a sleep in the event loop, so
  // their count is how often the daemon wakes (timers, sockets) — at rest, its cost.
  const main = await readFile(`/proc/${pid}/task/${pid}/status`, 'utf8')
  const wakes = Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(main)?.[1] ?? Number.NaN)
  // USER_HZ is 100 on Linux for every architecture Node supports.
  return { cpuS: ticks / 100, rssMiB: rssKiB / 1024, wakes }
}

/** `daemon.idle.*` alone: `nodes` admitted daemons at rest for `idleMs`. */
export async function idle(nodes: number, idleMs: number): Promise<BenchResult[]> {
  return withMesh(nodes, async (mesh) => {
    // Let start-up work (DHT bootstrap, first syncs, module loading) settle first.
    await new Promise((r) => setTimeout(r, Math.min(10_000, idleMs / 3)))
    const before = await Promise.all(mesh.map((d) => procStat(d.proc.pid!)))
    const t0 = performance.now()
    await new Promise((r) => setTimeout(r, idleMs))
    const secs = (performance.now() - t0) / 1000
    const after = await Promise.all(mesh.map((d) => procStat(d.proc.pid!)))
    const cpu = after.map((a, i) => (100 * (a.cpuS - before[i].cpuS)) / secs)
    const rss = after.map((a) => a.rssMiB)
    const wakes = after.map((a, i) => (a.wakes - before[i].wakes) / secs)
    const note = `${nodes} admitted daemons on loopback, nothing to do, measured over ${round(secs, 1)} s`
    return [
      {
        name: 'daemon.idle.cpu',
        value: round(median(cpu), 2),
        unit: '% of a core',
        note: `${note}; median of daemons, max ${round(Math.max(...cpu), 2)} %`,
      },
      {
        name: 'daemon.idle.rss',
        value: round(median(rss), 1),
        unit: 'MiB',
        note: `resident memory (VmRSS), median of daemons, max ${round(Math.max(...rss), 1)} MiB`,
      },
      {
        name: 'daemon.idle.wakes',
        value: round(median(wakes), 2),
        unit: 'per s',
        note: `main-thread wake-ups (voluntary context switches), median of daemons: ${wakes.map((w) => round(w, 2)).join(', ')}`,
      },
    ]
  })
}

export async function benchOverhead(opts: OverheadBenchOptions = {}): Promise<BenchResult[]> {
  const log = opts.log ?? (() => undefined)
  const frames = opts.frames ?? 100
  const out: BenchResult[] = []
  for (const frameMs of [0, 50]) {
    const r = await perChunk(frames, frameMs)
    log(`overhead per chunk at ${frameMs} ms frames: ${r[0].value} ms`)
    out.push(...r)
  }
  const c = await convergence(opts.convergeNodes ?? 5, opts.rounds ?? 20)
  log(`log convergence: ${c[0].value} ms`)
  out.push(...c)
  const i = await idle(opts.idleNodes ?? 3, opts.idleMs ?? 30_000)
  log(`idle: ${i[0].value} % CPU, ${i[1].value} MiB`)
  out.push(...i)
  return out
}

if (isMain(import.meta.url)) {
  const quick = process.argv.includes('--quick')
  const at = process.argv.indexOf('--idle-only')
  runStandalone(() =>
    // `--idle-only [SECONDS]`: only the daemons at rest (default 60 s), as in RESULTS.md.
    at >= 0
      ? idle(3, Number(process.argv[at + 1] ?? 60) * 1000 || 60_000)
      : benchOverhead({
          ...(quick ? { frames: 20, rounds: 5, idleMs: 5_000 } : {}),
          log: (l) => console.error(l),
        }),
  )
}
