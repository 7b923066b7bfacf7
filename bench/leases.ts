/**
 * Lease benchmark on real daemons (test/helpers/daemons.ts startMesh, real libp2p and
 * LevelDB, the test engine): one job of `frames` frames at `frameMs` a frame, chunk size 1,
 * on meshes of 1, 2, 4 and 8 nodes. For each mesh size it reports
 *  - the makespan (submit → last complete entry) against the ideal frames × frameMs ÷ nodes,
 *    as efficiency = ideal / makespan (aim ≥ 0.97 on 8 nodes);
 *  - the median gap on a node between the end of one chunk's render and the start of its
 *    next (aim < 50 ms);
 *  - submit → first frame start (aim < 500 ms);
 *  - duplicate renders: completes beyond the first per chunk, plus claims that lost a race
 *    for the same attempt (a render that may have started and been stopped) (aim < 1 %);
 *  - the CPU the daemons used (from /proc, per process) at rest and during the job, and
 *    what other work on the machine used meanwhile: every node handles every chunk's
 *    entries and messages, so the mesh's CPU per chunk grows with its size, and with all
 *    daemons on one machine the cores bound the makespan. The CPU ceiling is the best
 *    efficiency this machine's cores allow for the CPU the mesh used: an ideal run needs
 *    chunks × (CPU per chunk beyond the rest rate) + rest rate × ideal, so the ceiling is
 *    ideal ÷ max(ideal, that ÷ cores).
 *
 * Everything is derived from each daemon's own event stream (GET /v1/events, stamped with
 * the daemon's clock) and /metrics. A render ends when the engine logs "Saved:" for its
 * frame (a log-line event on the rendering node) and started renderMs earlier (the
 * engine's own figure, from the frame's done event); the gap is the time from one render's
 * end to the next render's start on the same node. The makespan ends at the last
 * frame-updated "done" event: outputs stored and the complete entry written. All daemons
 * share one machine, hence one wall clock. (The job's log history cannot serve: the
 * submitter seals a finished job and the log is compacted.)
 *
 *   npm run build && node dist/bench/leases.js [frames] [frameMs] [nodes,...]
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { ApiEvent } from '../src/api/types.js'
import { makeTempDir, removeDir, startMesh, stopDaemonProc } from '../test/helpers/daemons.js'
import {
  type BenchResult,
  cpuMeter,
  makeScene,
  median,
  metricsOf,
  quantile,
  recordEvents,
  round,
  submitTestJob,
  waitJobDone,
  waitMeshReady,
  isMain,
  runStandalone,
} from './common.js'

export interface LeaseBenchOptions {
  frames?: number
  frameMs?: number
  nodes?: number[]
  log?: (line: string) => void
}

export interface LeaseRun {
  nodes: number
  makespanMs: number
  idealMs: number
  firstStartMs: number
  firstClaimMs: number
  gaps: number[]
  duplicateCompletes: number
  lostClaims: number
  reclaims: number
  chunks: number
  perNode: Record<string, number>
  localCompleteMs: number
  cpu: LeaseCpu
}

export interface LeaseCpu {
  /** Cores' worth the daemons used at rest, just before the submit. */
  idleCores: number
  /** Daemon CPU from submit to the job done, summed over daemons (ms). */
  jobMs: number
  /** Per daemon, percent of one core during the job. */
  perNodePct: number[]
  /** Cores' worth used by other work on the machine during the job. */
  otherCores: number
  cores: number
}

/** Rest window before the submit: the mesh's own background CPU (presence, sync, DHT). */
const IDLE_WINDOW_MS = 5_000

export interface NodeEvents {
  name: string
  peerId: string
  events: readonly ApiEvent[]
}

/** Figures of one finished job (chunk size 1) from every node's events. */
export function analyseEvents(
  nodes: readonly NodeEvents[],
  jobId: string,
  submitAt: number,
): Pick<LeaseRun, 'makespanMs' | 'firstStartMs' | 'firstClaimMs' | 'gaps' | 'perNode' | 'chunks'> {
  let firstStart = Number.POSITIVE_INFINITY
  let firstClaim = Number.POSITIVE_INFINITY
  let last = 0
  let chunks = 0
  const gaps: number[] = []
  const perNode: Record<string, number> = {}
  for (const n of nodes) {
    const done = new Map<number, { time: number; renderMs: number }>()
    const saved = new Map<number, number>()
    for (const e of n.events) {
      if (e.type === 'log-line' && e.jobId === jobId && e.node === n.peerId) {
        if (e.line.startsWith('Saved:') && !saved.has(e.frame)) saved.set(e.frame, e.time)
        continue
      }
      if (e.type !== 'frame-updated' || e.jobId !== jobId || e.frame.node !== n.peerId) continue
      if (e.frame.state === 'claimed' || e.frame.state === 'rendering')
        firstClaim = Math.min(firstClaim, e.time)
      if (e.frame.state === 'done' && !done.has(e.frame.frame))
        done.set(e.frame.frame, { time: e.time, renderMs: e.frame.renderMs ?? 0 })
    }
    const spans: { start: number; end: number }[] = []
    for (const [frame, d] of done) {
      // Without the engine's log line, the done event (after storing) stands for the end.
      const end = saved.get(frame) ?? d.time
      spans.push({ start: end - d.renderMs, end })
      last = Math.max(last, d.time)
    }
    spans.sort((a, b) => a.start - b.start)
    perNode[n.name] = spans.length
    chunks += spans.length
    for (let i = 0; i < spans.length; i++) {
      firstStart = Math.min(firstStart, spans[i].start)
      if (i > 0) gaps.push(spans[i].start - spans[i - 1].end)
    }
  }
  return {
    makespanMs: last - submitAt,
    firstStartMs: Math.round(firstStart - submitAt),
    firstClaimMs: Math.round(firstClaim - submitAt),
    gaps,
    perNode,
    chunks,
  }
}

export async function runLeaseJob(
  nodes: number,
  frames: number,
  frameMs: number,
  log: (line: string) => void = () => undefined,
): Promise<LeaseRun> {
  const work = await makeTempDir('rmesh-bench-leases-')
  const mesh = await startMesh(nodes)
  const recorders = mesh.map((d) => recordEvents(d))
  const stoppers = recorders.map((r) => r.stop)
  try {
    await waitMeshReady(mesh)
    await Promise.all(recorders.map((r) => r.ready))
    const scene = await makeScene(work)
    const outDir = join(work, 'out')
    await mkdir(outDir, { recursive: true })
    const idealMs = (frames * frameMs) / nodes
    const pids = mesh.map((d) => d.proc.pid)
    const idleMeter = cpuMeter(pids)
    await new Promise((r) => setTimeout(r, IDLE_WINDOW_MS))
    const idle = idleMeter.stop()
    const jobMeter = cpuMeter(pids)
    const { jobId, submitAt } = await submitTestJob(mesh[0], scene, outDir, { frames, frameMs })
    // Render log lines need the job id: they are followed from just after the submit.
    const logs = mesh.map((d) => recordEvents(d, jobId))
    stoppers.push(...logs.map((r) => r.stop))
    const detail = await waitJobDone(mesh[0], jobId, idealMs * 3 + 120_000, true)
    const localCompleteMs = Date.now() - submitAt
    const used = jobMeter.stop()
    // Every node's own done events are published before its complete entry leaves it.
    const a = analyseEvents(
      mesh.map((d, i) => ({
        name: `node${i + 1}`,
        peerId: d.peerId,
        events: [...recorders[i].events, ...logs[i].events.filter((e) => e.type === 'log-line')],
      })),
      jobId,
      submitAt,
    )
    if (a.chunks < frames)
      throw new Error(`only ${a.chunks} of ${frames} renders were seen in the events`)
    const metrics = await Promise.all(mesh.map((d) => metricsOf(d)))
    const run: LeaseRun = {
      ...a,
      nodes,
      idealMs,
      localCompleteMs,
      duplicateCompletes: metrics[0].get('rmesh_duplicate_renders') ?? 0,
      lostClaims: metrics.reduce((n, m) => n + (m.get('rmesh_lease_conflicts_total') ?? 0), 0),
      reclaims: detail.frames.reduce((n, f) => n + Math.max(0, f.attempts - 1), 0),
      cpu: {
        idleCores: idle.procsCores,
        jobMs: used.procsMs,
        perNodePct: used.perProc.map((ms) => round((100 * ms) / used.wallMs, 0)),
        otherCores: used.otherCores,
        cores: used.cores,
      },
    }
    log(
      `leases ${nodes} node(s): makespan ${(run.makespanMs / 1000).toFixed(2)} s (ideal ${(idealMs / 1000).toFixed(2)} s), ` +
        `first start ${run.firstStartMs} ms, median gap ${median(run.gaps)} ms, per node ${JSON.stringify(run.perNode)}, ` +
        `daemon CPU ${round(used.procsCores, 2)} cores (${run.cpu.perNodePct.join('/')} %), other work ${round(used.otherCores, 2)} cores`,
    )
    return run
  } finally {
    for (const stop of stoppers) stop()
    await Promise.all(mesh.map((d) => stopDaemonProc(d).catch(() => undefined)))
    await Promise.all([work, ...mesh.map((d) => d.dir)].map((p) => removeDir(p)))
  }
}

/** The CPU figures of one mesh size: see the header. */
export function cpuResults(n: number, r: LeaseRun): BenchResult[] {
  const c = r.cpu
  const jobCores = c.jobMs / r.makespanMs
  // What the chunks cost beyond the mesh's rest rate, and what an ideal run would need.
  const workMs = Math.max(0, c.jobMs - c.idleCores * r.makespanMs)
  const neededMs = workMs + c.idleCores * r.idealMs
  const ceiling = Math.min(1, r.idealMs / Math.max(r.idealMs, neededMs / c.cores))
  return [
    {
      name: `leases.${n}n.cpu.per-chunk`,
      value: round(workMs / r.chunks, 0),
      unit: 'ms',
      note: `daemon CPU per chunk beyond the rest rate, summed over the ${n} daemon(s) (${round(workMs / r.chunks / n, 0)} ms on each)`,
    },
    {
      name: `leases.${n}n.cpu.mesh`,
      value: round(jobCores, 2),
      unit: 'cores',
      note: `daemons during the job, of ${c.cores} (per daemon ${c.perNodePct.join('/')} % of a core; at rest ${round(c.idleCores, 2)}); other work on the machine meanwhile ${round(c.otherCores, 2)} cores`,
    },
    {
      name: `leases.${n}n.cpu.ceiling`,
      value: round(ceiling, 3),
      unit: 'x',
      note: `best efficiency ${c.cores} cores allow: ideal ÷ max(ideal, CPU an ideal run needs ÷ cores), that CPU = chunks × per-chunk + rest rate × ideal`,
    },
  ]
}

export async function benchLeases(opts: LeaseBenchOptions = {}): Promise<BenchResult[]> {
  const frames = opts.frames ?? 200
  const frameMs = opts.frameMs ?? 1_000
  const sizes = opts.nodes ?? [1, 2, 4, 8]
  const log = opts.log ?? (() => undefined)
  const out: BenchResult[] = []
  const job = `${frames} frames × ${frameMs} ms, chunk 1`
  let allGaps: number[] = []
  let firstStarts: number[] = []
  for (const n of sizes) {
    const r = await runLeaseJob(n, frames, frameMs, log)
    allGaps = allGaps.concat(r.gaps)
    firstStarts.push(r.firstStartMs)
    out.push(
      {
        name: `leases.${n}n.makespan`,
        value: round(r.makespanMs / 1000, 2),
        unit: 's',
        note: `${job}; submit → last complete; per node ${JSON.stringify(r.perNode)}`,
      },
      {
        name: `leases.${n}n.ideal`,
        value: round(r.idealMs / 1000, 2),
        unit: 's',
        note: 'frames × frameMs ÷ nodes',
      },
      {
        name: `leases.${n}n.efficiency`,
        value: round(r.idealMs / r.makespanMs, 4),
        unit: 'x',
        note: `ideal / makespan${n === 8 ? ' (aim ≥ 0.97)' : ''}`,
      },
      {
        name: `leases.${n}n.gap.median`,
        value: round(median(r.gaps), 1),
        unit: 'ms',
        note: `chunk end → next chunk start on a node; p90 ${round(quantile(r.gaps, 0.9), 1)} ms, max ${round(Math.max(...r.gaps), 1)} ms, ${r.gaps.length} gaps`,
      },
      {
        name: `leases.${n}n.first-frame`,
        value: r.firstStartMs,
        unit: 'ms',
        note: `submit → first render start (first claim at ${r.firstClaimMs} ms)`,
      },
      {
        name: `leases.${n}n.duplicates`,
        value: round((100 * r.duplicateCompletes) / frames, 2),
        unit: '%',
        note: `completes beyond the first per chunk (aim < 1 %): ${r.duplicateCompletes} of ${frames} chunks; claim races lost ${r.lostClaims}, re-attempts ${r.reclaims}`,
      },
      ...cpuResults(n, r),
      {
        name: `leases.${n}n.outputs-local`,
        value: round(r.localCompleteMs / 1000, 2),
        unit: 's',
        note: 'submit → every frame in the submitter’s output folder (as seen by polling)',
      },
    )
  }
  firstStarts = firstStarts.filter(Number.isFinite)
  out.push(
    {
      name: 'leases.gap.median',
      value: round(median(allGaps), 1),
      unit: 'ms',
      note: `over every mesh size (aim < 50 ms); p90 ${round(quantile(allGaps, 0.9), 1)} ms`,
    },
    {
      name: 'leases.first-frame.median',
      value: round(median(firstStarts), 1),
      unit: 'ms',
      note: 'submit → first frame start, median over the mesh sizes (aim < 500 ms)',
    },
  )
  return out
}

if (isMain(import.meta.url)) {
  const [frames, frameMs, nodes] = process.argv.slice(2)
  runStandalone(() =>
    benchLeases({
      frames: frames ? Number(frames) : undefined,
      frameMs: frameMs ? Number(frameMs) : undefined,
      nodes: nodes ? nodes.split(',').map(Number) : undefined,
      log: (l) => console.error(l),
    }),
  )
}
