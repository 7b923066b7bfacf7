/**
 * Scale on real daemons (issue 17): what one daemon pays for the chunks other nodes render,
 * and how a job spreads over as many daemons as this machine holds.
 *
 * A mesh of `renderers` daemons that render (the test engine, chunk size 1) and `bystanders`
 * daemons with `--slots 0`: admitted, connected, holding every log, but rendering nothing.
 * A bystander's CPU during the job beyond its rate at rest, divided by the chunks rendered,
 * is exactly "the CPU one daemon spends per chunk rendered by another node"
 * (`scale.node.cpu-per-chunk`, the median over bystanders): the bookkeeping every member of
 * the mesh pays for every chunk anywhere. A renderer pays that too, plus its own chunks.
 *
 * It also reports the makespan against the ideal (frames × frameMs ÷ renderers), duplicate
 * renders, and the resident memory of each daemon (VmRSS) at rest and at the end.
 *
 *   npm run scale -- [--renderers N] [--bystanders K] [--frames F] [--frame-ms MS]
 *                    [--prof DIR] [--json]
 *
 * `--prof DIR` runs the bystanders under `node --cpu-prof` (profiles written to DIR when
 * they stop). Every daemon listens on 127.0.0.1 with mDNS off; the run is bounded by the
 * job's deadline (3 × ideal + 3 min).
 */
import { mkdir, readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { admitDirs } from '../cli/local-mesh.js'
import {
  apiCall,
  type DaemonProc,
  makeTempDir,
  removeDir,
  startDaemonProc,
  stopDaemonProc,
} from '../test/helpers/daemons.js'
import {
  type BenchResult,
  cpuMeter,
  isMain,
  makeScene,
  median,
  metricsOf,
  round,
  runStandalone,
  submitTestJob,
  waitJobDone,
  waitMeshReady,
} from './common.js'

export interface ScaleBenchOptions {
  renderers?: number
  bystanders?: number
  frames?: number
  frameMs?: number
  /** Folder for the bystanders' CPU profiles (node --cpu-prof). */
  profDir?: string
  log?: (line: string) => void
}

/** A mesh settles (connections, identify, first syncs) before its rest rate is measured. */
const SETTLE_MS = 10_000
/** Long enough to hold a few rest heartbeats of every peer (10 s each). */
const REST_WINDOW_MS = 20_000

/** A daemon's counters with their labels, e.g. 'rmesh_gossip_messages_total{topic="x"}'. */
async function labeledCounters(d: DaemonProc): Promise<Map<string, number>> {
  const r = await apiCall<string>(d.socket, 'GET', '/metrics', undefined, 30_000)
  const out = new Map<string, number>()
  for (const line of String(r.body).split('\n')) {
    const m =
      /^(rmesh_(?:gossip_messages|gossip_duplicates|log_entries|lease_claims)_total\{[^}]*\}) (\S+)$/.exec(
        line,
      )
    if (m) out.set(m[1], Number(m[2]))
  }
  return out
}

/** CPU ms by thread name (main thread = 'node' or 'rmesh') of a process, from /proc. */
export async function threadCpuMs(pid: number | undefined): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  if (pid === undefined) return out
  try {
    for (const tid of await readdir(`/proc/${pid}/task`)) {
      const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => '')
      if (!stat) continue
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      const ms = (Number(f[11]) + Number(f[12])) * 10
      out.set(name, (out.get(name) ?? 0) + ms)
    }
  } catch {
    // The process is gone: no figures.
  }
  return out
}

export async function rssMiB(pid: number | undefined): Promise<number> {
  if (pid === undefined) return Number.NaN
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    const m = /^VmRSS:\s+(\d+) kB/m.exec(status)
    return m ? Number(m[1]) / 1024 : Number.NaN
  } catch {
    return Number.NaN
  }
}

/** `count` admitted daemons; those at `bystanderFrom` and beyond never render. */
async function startScaleMesh(
  count: number,
  bystanderFrom: number,
  profDir: string | undefined,
): Promise<DaemonProc[]> {
  const dirs = await Promise.all(Array.from({ length: count }, () => makeTempDir()))
  await admitDirs(dirs)
  const first = await startDaemonProc({ dir: dirs[0], name: 'node1' })
  const boot = first.addresses.filter((a) => a.includes('/ip4/127.0.0.1/'))
  const rest: DaemonProc[] = []
  // Started a few at a time: 30 daemons loading at once on 2 cores miss their start deadline.
  for (let i = 1; i < count; i += 4) {
    const batch = dirs.slice(i, i + 4).map((dir, j) => {
      const index = i + j
      const bystander = index >= bystanderFrom
      return startDaemonProc({
        dir,
        bootstrap: boot,
        name: bystander ? `watch${index - bystanderFrom + 1}` : `node${index + 1}`,
        extraArgs: bystander ? ['--slots', '0'] : [],
        startTimeoutMs: 60_000,
        env:
          bystander && profDir
            ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profDir}` }
            : undefined,
      })
    })
    rest.push(...(await Promise.all(batch)))
  }
  return [first, ...rest]
}

export async function benchScale(opts: ScaleBenchOptions = {}): Promise<BenchResult[]> {
  const renderers = opts.renderers ?? 4
  const bystanders = opts.bystanders ?? 2
  const frames = opts.frames ?? 200
  const frameMs = opts.frameMs ?? 1_000
  const log = opts.log ?? (() => undefined)
  const count = renderers + bystanders
  if (opts.profDir) await mkdir(opts.profDir, { recursive: true })
  const work = await makeTempDir('rmesh-bench-scale-')
  const mesh = await startScaleMesh(count, renderers, opts.profDir)
  try {
    // A full mesh of n daemons is n(n−1)/2 connections, each with its handshakes, on the
    // same 2 cores as every daemon's start: allow time in proportion.
    await waitMeshReady(mesh, Math.max(120_000, 10_000 * count))
    log(`scale: ${renderers} renderers + ${bystanders} bystanders connected`)
    const pids = mesh.map((d) => d.proc.pid)
    // Let start-up work (DHT table fill, first syncs) settle before the rest window.
    await new Promise((r) => setTimeout(r, SETTLE_MS))
    const restMeter = cpuMeter(pids)
    await new Promise((r) => setTimeout(r, REST_WINDOW_MS))
    const rest = restMeter.stop()
    const rssRest = await Promise.all(pids.map((p) => rssMiB(p)))
    const scene = await makeScene(work)
    const outDir = join(work, 'out')
    await mkdir(outDir, { recursive: true })
    const idealMs = (frames * frameMs) / renderers
    const watcher = mesh[renderers] ?? mesh[mesh.length - 1]
    const countersBefore = await labeledCounters(watcher)
    const threadsBefore = await threadCpuMs(watcher.proc.pid)
    const jobMeter = cpuMeter(pids)
    const { jobId, submitAt } = await submitTestJob(mesh[0], scene, outDir, { frames, frameMs })
    const detail = await waitJobDone(mesh[0], jobId, idealMs * 3 + 180_000)
    const makespanMs = Date.now() - submitAt
    const used = jobMeter.stop()
    const rssEnd = await Promise.all(pids.map((p) => rssMiB(p)))
    const metrics = await Promise.all(mesh.map((d) => metricsOf(d)))
    const countersAfter = await labeledCounters(watcher)
    const threadsAfter = await threadCpuMs(watcher.proc.pid)
    const byThread = [...threadsAfter]
      .map(([k, v]) => [k, (v - (threadsBefore.get(k) ?? 0)) / frames] as const)
      .filter(([, v]) => v > 0)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${round(v, 2)} ms`)
    log(`scale: CPU per chunk by thread at that node: ${byThread.join(', ')}`)
    const traffic = [...countersAfter]
      .map(([k, v]) => [k, (v - (countersBefore.get(k) ?? 0)) / frames] as const)
      .filter(([, v]) => v > 0)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k.replace(/^rmesh_|_total/g, '')} ${round(v, 2)}`)
    log(
      `scale: per chunk at ${bystanders > 0 ? 'a bystander' : 'the last node'}: ${traffic.join(', ')}`,
    )
    const restRate = rest.perProc.map((ms) => ms / rest.wallMs)
    const beyondRest = used.perProc.map((ms, i) => Math.max(0, ms - restRate[i] * used.wallMs))
    const perChunk = beyondRest.map((ms) => ms / frames)
    const bystanderPerChunk = perChunk.slice(renderers)
    // The same without the rest rate taken off: what the job window cost in all.
    const bystanderGross = used.perProc.slice(renderers).map((ms) => ms / frames)
    const rendererPerChunk = perChunk.slice(0, renderers)
    const duplicates = metrics[0].get('rmesh_duplicate_renders') ?? 0
    const lost = metrics.reduce((n, m) => n + (m.get('rmesh_lease_conflicts_total') ?? 0), 0)
    // How the renderers' claims were written (rmesh_lease_claims_total): in a lease pass, or
    // right after a complete, to leave in the same gossip message. The job is the only one.
    const claimsBy = new Map<string, number>()
    for (const d of mesh.slice(0, renderers)) {
      for (const [k, v] of await labeledCounters(d)) {
        const way = /^rmesh_lease_claims_total\{after="([^"]+)"\}$/.exec(k)?.[1]
        if (way) claimsBy.set(way, (claimsBy.get(way) ?? 0) + v)
      }
    }
    const claimWays = [...claimsBy].map(([k, v]) => `after ${k} ${v}`).join(', ')
    if (claimWays) log(`scale: claims by the renderers: ${claimWays}`)
    const reattempts = detail.frames.reduce((n, f) => n + Math.max(0, f.attempts - 1), 0)
    const rendered = new Map<string, number>()
    for (const f of detail.frames) if (f.node) rendered.set(f.node, (rendered.get(f.node) ?? 0) + 1)
    log(
      `scale: makespan ${(makespanMs / 1000).toFixed(1)} s (ideal ${(idealMs / 1000).toFixed(1)} s); ` +
        `bystander CPU per chunk ${bystanderPerChunk.map((x) => round(x, 1)).join('/')} ms; ` +
        `renderer ${rendererPerChunk.map((x) => round(x, 1)).join('/')} ms`,
    )
    const tag = `${count}n`
    const out: BenchResult[] = []
    if (bystanders > 0) {
      out.push({
        name: `scale.real.${tag}.bystander.cpu-per-chunk-gross`,
        value: round(median(bystanderGross), 1),
        unit: 'ms',
        note: `median bystander CPU during the job ÷ chunks, its rest rate included (${round(100 * median(restRate.slice(renderers)), 2)} % of a core at rest in this mesh)`,
      })
      out.push({
        name: 'scale.node.cpu-per-chunk',
        value: round(median(bystanderPerChunk), 1),
        unit: 'ms',
        note: `median CPU a daemon that renders nothing spends per chunk rendered elsewhere, beyond its rest rate (${bystanders} bystanders on a ${count}-daemon mesh: ${bystanderPerChunk.map((x) => round(x, 1)).join(', ')}; aim ≤ 5); per chunk it received ${traffic.join(', ')}`,
      })
    }
    out.push(
      {
        name: `scale.real.${tag}.efficiency`,
        value: round(idealMs / makespanMs, 3),
        unit: 'x',
        note: `${frames} frames × ${frameMs} ms on ${renderers} renderers (+${bystanders} bystanders); makespan ${round(makespanMs / 1000, 1)} s against ${round(idealMs / 1000, 1)} s`,
      },
      {
        name: `scale.real.${tag}.duplicates`,
        value: round((100 * duplicates) / frames, 2),
        unit: '%',
        note: `completes beyond the first per chunk: ${duplicates} of ${frames}; claim races lost ${lost}, re-attempts ${reattempts}${claimWays ? `; claims written ${claimWays}` : ''}`,
      },
      {
        name: `scale.real.${tag}.renderer.cpu-per-chunk`,
        value: round(median(rendererPerChunk), 1),
        unit: 'ms',
        note: `median renderer CPU per chunk anywhere (its own included), beyond its rest rate; mesh CPU during the job ${round(used.procsCores, 2)} cores of ${used.cores}, other work ${round(used.otherCores, 2)}`,
      },
      {
        name: `scale.real.${tag}.rest.cpu`,
        value: round(100 * median(restRate), 2),
        unit: '% of a core',
        note: `median daemon at rest in this mesh, over ${REST_WINDOW_MS / 1000} s (max ${round(100 * Math.max(...restRate), 2)})`,
      },
      {
        name: `scale.real.${tag}.rss`,
        value: round(median(rssEnd), 1),
        unit: 'MiB',
        note: `median VmRSS per daemon after the job (at rest before it ${round(median(rssRest), 1)}; max ${round(Math.max(...rssEnd), 1)})`,
      },
    )
    return out
  } finally {
    await Promise.all(mesh.map((d) => stopDaemonProc(d).catch(() => undefined)))
    await Promise.all([work, ...mesh.map((d) => d.dir)].map((p) => removeDir(p)))
  }
}

function parseScaleArgs(argv: string[]): ScaleBenchOptions {
  const o: ScaleBenchOptions = {}
  const num = (flag: string, v: string | undefined) => {
    const n = Number(v)
    if (!Number.isInteger(n) || n < 0) {
      console.error(`${flag} needs a whole number ≥ 0, got '${v ?? ''}'`)
      process.exit(2)
    }
    return n
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--renderers') o.renderers = num(a, argv[++i])
    else if (a === '--bystanders') o.bystanders = num(a, argv[++i])
    else if (a === '--frames') o.frames = num(a, argv[++i])
    else if (a === '--frame-ms') o.frameMs = num(a, argv[++i])
    else if (a === '--prof') o.profDir = argv[++i]
    else {
      console.error(
        'usage: node dist/bench/scale.js [--renderers N] [--bystanders K] [--frames F] [--frame-ms MS] [--prof DIR]',
      )
      process.exit(2)
    }
  }
  return o
}

if (isMain(import.meta.url)) {
  const o = parseScaleArgs(process.argv.slice(2))
  runStandalone(() => benchScale({ ...o, log: (l) => console.error(l) }))
}
