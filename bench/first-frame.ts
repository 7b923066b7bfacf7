/**
 * Where the first frame's latency goes: `nodes` real daemons (test engine), then `jobs`
 * jobs one after another, each with a fresh 64 KiB scene so that every renderer must fetch
 * it from the submitter. From each daemon's own log (daemon.log keeps debug lines: "chunk
 * claimed" with claimMs, "engine starting" with sceneMs, the wait for the scene inside
 * the chunk's start) it reports, per job and as medians over the jobs:
 *  - submit → the first claim written anywhere;
 *  - submit → the first engine start anywhere (the figure `leases.*.first-frame` measures
 *    from events), and → the n-th start (every node rendering);
 *  - the scene wait at each node's first start (the fetch from the submitter, 0 on it).
 * All daemons share one machine, hence one wall clock.
 *
 *   npm run build && node dist/bench/first-frame.js [nodes] [jobs]
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { makeTempDir, removeDir, startMesh, stopDaemonProc } from '../test/helpers/daemons.js'
import {
  type BenchResult,
  isMain,
  median,
  runStandalone,
  submitTestJob,
  waitJobDone,
  waitMeshReady,
} from './common.js'
import { LOG_FILE } from '../src/daemon.js'

interface Mark {
  t: number
  node: number
  msg: 'chunk claimed' | 'engine starting'
  sceneMs?: number
}

async function marksOf(dirs: string[], jobId: string, submitAt: number): Promise<Mark[]> {
  const marks: Mark[] = []
  for (const [i, dir] of dirs.entries()) {
    const text = await readFile(join(dir, LOG_FILE), 'utf8')
    for (const line of text.split('\n')) {
      if (!line.includes(jobId)) continue
      const r = JSON.parse(line) as { t: string; msg: string; jobId?: string; sceneMs?: number }
      if (r.jobId !== jobId || (r.msg !== 'chunk claimed' && r.msg !== 'engine starting')) continue
      marks.push({ t: Date.parse(r.t) - submitAt, node: i + 1, msg: r.msg, sceneMs: r.sceneMs })
    }
  }
  return marks.sort((a, b) => a.t - b.t)
}

export async function benchFirstFrame(
  opts: { nodes?: number; jobs?: number; log?: (line: string) => void } = {},
): Promise<BenchResult[]> {
  const nodes = opts.nodes ?? 8
  const jobs = opts.jobs ?? 5
  const log = opts.log ?? (() => undefined)
  const work = await makeTempDir('rmesh-bench-first-')
  const mesh = await startMesh(nodes)
  const firstClaim: number[] = []
  const firstStart: number[] = []
  const allStarted: number[] = []
  const sceneWait: number[] = []
  try {
    await waitMeshReady(mesh)
    // Let start-up work (DHT, syncs, JIT) settle, as a studio's daemons would have.
    await new Promise((r) => setTimeout(r, 5_000))
    for (let j = 0; j < jobs; j++) {
      const dir = join(work, `job${j}`)
      await mkdir(join(dir, 'out'), { recursive: true })
      const scene = join(dir, 'scene.blend')
      await writeFile(scene, Buffer.alloc(64 * 1024, (j * 37 + Date.now()) % 251))
      const { jobId, submitAt } = await submitTestJob(mesh[0], scene, join(dir, 'out'), {
        frames: 2 * nodes,
        frameMs: 500,
      })
      await waitJobDone(mesh[0], jobId, 120_000, true)
      const marks = await marksOf(
        mesh.map((d) => d.dir),
        jobId,
        submitAt,
      )
      const claims = marks.filter((m) => m.msg === 'chunk claimed')
      const starts = marks.filter((m) => m.msg === 'engine starting')
      const firstPerNode = new Map<number, Mark>()
      for (const s of starts) if (!firstPerNode.has(s.node)) firstPerNode.set(s.node, s)
      const perNode = [...firstPerNode.values()]
      firstClaim.push(claims[0]?.t ?? Number.NaN)
      firstStart.push(perNode[0]?.t ?? Number.NaN)
      allStarted.push(perNode.length === nodes ? perNode[nodes - 1].t : Number.NaN)
      for (const s of perNode) if (s.node !== 1) sceneWait.push(s.sceneMs ?? Number.NaN)
      log(
        `job ${j + 1}: first claim ${claims[0]?.t} ms; first start per node ${perNode.map((s) => `n${s.node} ${s.t} (scene ${s.sceneMs})`).join(', ')}`,
      )
      await new Promise((r) => setTimeout(r, 2_000))
    }
  } finally {
    await Promise.all(mesh.map((d) => stopDaemonProc(d)))
    await Promise.all(mesh.map((d) => removeDir(d.dir)))
    await removeDir(work)
  }
  const m = (xs: number[]) => Math.round(median(xs.filter(Number.isFinite)))
  return [
    {
      name: `first-frame.${nodes}n.first-claim`,
      value: m(firstClaim),
      unit: 'ms',
      note: `submit → first claim written, median of ${jobs} jobs`,
    },
    {
      name: `first-frame.${nodes}n.first-start`,
      value: m(firstStart),
      unit: 'ms',
      note: `submit → first engine start (aim < 500 ms); per job ${firstStart.join(' ')}`,
    },
    {
      name: `first-frame.${nodes}n.all-started`,
      value: m(allStarted),
      unit: 'ms',
      note: 'submit → the last node’s first engine start (every node rendering)',
    },
    {
      name: `first-frame.${nodes}n.scene-wait`,
      value: m(sceneWait),
      unit: 'ms',
      note: `a renderer’s wait for the scene at its first start (64 KiB from the submitter); p90 ${Math.round([...sceneWait].sort((a, b) => a - b)[Math.floor(sceneWait.length * 0.9)] ?? Number.NaN)} ms`,
    },
  ]
}

if (isMain(import.meta.url)) {
  const [nodes, jobs] = process.argv.slice(2)
  runStandalone(() =>
    benchFirstFrame({
      nodes: nodes ? Number(nodes) : undefined,
      jobs: jobs ? Number(jobs) : undefined,
      log: (l) => console.error(l),
    }),
  )
}
