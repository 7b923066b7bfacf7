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
 *    for the same attempt (a render that may have started and been stopped) (aim < 1 %).
 *
 * Everything is derived from the job's own log (GET /v1/jobs/:id/logs, the history) and
 * detail: a chunk's render ends when its complete entry is written (outputs stored) and
 * started renderMs earlier (the engine's own figure). On one node consecutive completes are
 * separated by the next chunk's render plus whatever the slot spent idle: that idle time is
 * the gap. All daemons share one machine, hence one wall clock.
 *
 *   npm run build && node dist/bench/leases.js [frames] [frameMs] [nodes,...]
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { makeTempDir, removeDir, startMesh, stopDaemonProc } from '../test/helpers/daemons.js'
import {
  type BenchResult,
  type HistoryEntry,
  jobDetail,
  jobHistory,
  makeScene,
  median,
  quantile,
  round,
  shortId,
  submitTestJob,
  waitJobDone,
  waitMeshReady,
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
}

/** Figures of one finished job from its history, its detail and its submit time. */
export function analyseJob(
  history: HistoryEntry[],
  renderMsOfChunk: Map<number, number>,
  submitAt: number,
): Omit<LeaseRun, 'nodes' | 'idealMs' | 'localCompleteMs'> {
  const completes = history.filter((e) => e.kind === 'complete' && e.chunk !== undefined)
  const firstComplete = new Map<number, HistoryEntry>()
  let duplicateCompletes = 0
  for (const e of completes) {
    if (firstComplete.has(e.chunk!)) duplicateCompletes++
    else firstComplete.set(e.chunk!, e)
  }
  const claimsByAttempt = new Map<string, Set<string>>()
  let reclaims = 0
  for (const e of history) {
    if (e.kind !== 'claim' || e.chunk === undefined) continue
    const k = `${e.chunk}/${e.attempt}`
    const s = claimsByAttempt.get(k) ?? new Set()
    s.add(e.author)
    claimsByAttempt.set(k, s)
    if ((e.attempt ?? 1) > 1) reclaims++
  }
  let lostClaims = 0
  for (const s of claimsByAttempt.values()) lostClaims += s.size - 1

  const byNode = new Map<string, { start: number; end: number }[]>()
  let firstStart = Number.POSITIVE_INFINITY
  let last = 0
  for (const e of completes) {
    const r = renderMsOfChunk.get(e.chunk!) ?? 0
    const span = { start: e.wall - r, end: e.wall }
    firstStart = Math.min(firstStart, span.start)
    last = Math.max(last, e.wall)
    const list = byNode.get(e.author) ?? []
    list.push(span)
    byNode.set(e.author, list)
  }
  const gaps: number[] = []
  const perNode: Record<string, number> = {}
  for (const [node, spans] of byNode) {
    spans.sort((a, b) => a.end - b.end)
    perNode[node] = spans.length
    for (let i = 1; i < spans.length; i++) gaps.push(spans[i].start - spans[i - 1].end)
  }
  const firstClaim = history.find((e) => e.kind === 'claim')
  return {
    makespanMs: last - submitAt,
    firstStartMs: firstStart - submitAt,
    firstClaimMs: firstClaim ? firstClaim.wall - submitAt : Number.NaN,
    gaps,
    duplicateCompletes,
    lostClaims,
    reclaims,
    chunks: firstComplete.size,
    perNode,
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
  try {
    await waitMeshReady(mesh)
    const scene = await makeScene(work)
    const outDir = join(work, 'out')
    await mkdir(outDir, { recursive: true })
    const idealMs = (frames * frameMs) / nodes
    const { jobId, submitAt } = await submitTestJob(mesh[0], scene, outDir, { frames, frameMs })
    await waitJobDone(mesh[0], jobId, idealMs * 3 + 120_000, true)
    const localCompleteMs = Date.now() - submitAt
    const detail = await jobDetail(mesh[0], jobId)
    const renderMs = new Map<number, number>()
    for (const c of detail.chunks) {
      let sum = 0
      for (const f of c.frames) sum += detail.frames.find((x) => x.frame === f)?.renderMs ?? 0
      renderMs.set(c.index, sum)
    }
    const a = analyseJob(await jobHistory(mesh[0], jobId), renderMs, submitAt)
    const names = new Map(mesh.map((d, i) => [shortId(d.peerId), `node${i + 1}`]))
    const perNode = Object.fromEntries(
      Object.entries(a.perNode).map(([k, v]) => [names.get(k) ?? k, v]),
    )
    const run: LeaseRun = { ...a, perNode, nodes, idealMs, localCompleteMs }
    log(
      `leases ${nodes} node(s): makespan ${(run.makespanMs / 1000).toFixed(2)} s (ideal ${(idealMs / 1000).toFixed(2)} s), ` +
        `first start ${run.firstStartMs} ms, median gap ${median(run.gaps)} ms, per node ${JSON.stringify(perNode)}`,
    )
    return run
  } finally {
    await Promise.all(mesh.map((d) => stopDaemonProc(d).catch(() => undefined)))
    await Promise.all([work, ...mesh.map((d) => d.dir)].map((p) => removeDir(p)))
  }
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
    const renders = r.chunks + r.duplicateCompletes + r.lostClaims
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
        value: round((100 * (renders - r.chunks)) / r.chunks, 2),
        unit: '%',
        note: `${r.duplicateCompletes} duplicate completes, ${r.lostClaims} lost claim races, ${r.reclaims} reclaims, of ${r.chunks} chunks`,
      },
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

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [frames, frameMs, nodes] = process.argv.slice(2)
  benchLeases({
    frames: frames ? Number(frames) : undefined,
    frameMs: frameMs ? Number(frameMs) : undefined,
    nodes: nodes ? nodes.split(',').map(Number) : undefined,
    log: (l) => console.error(l),
  }).then(
    (r) => {
      for (const x of r) console.log(`${x.name.padEnd(28)} ${String(x.value).padStart(10)} ${x.unit}  ${x.note ?? ''}`)
      process.exit(0)
    },
    (err) => {
      console.error(err)
      process.exit(1)
    },
  )
}
