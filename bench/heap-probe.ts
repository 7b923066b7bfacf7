/**
 * The heap probe (npm run heap-probe [-- --phases 60,150,150 --quiet-s 90 --snapshots DIR]):
 * where live memory goes per job, when the soak says it grows. Three daemons on loopback
 * run 40-frame test-engine jobs (one frame per chunk) one after another, submitted by each
 * node in turn, each deleted once collected. After each phase of N jobs: a quiet wait
 * (longer than any deadline a finished request may still hold), then every daemon's live
 * memory after a full GC and which of its bounded caches are still filling. With
 * --snapshots DIR, also a V8 heap snapshot of node 1 (written by the daemon on SIGUSR2)
 * and, from the second phase on, what grew since the previous one by object type and name.
 *
 * Invariants: jobs run one at a time, so between phases nothing is in flight but what the
 * daemons keep; everything started is stopped and removed at the end.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { apiCall } from '../test/helpers/daemons.js'
import { startFaultMesh, stopAll, submitTestJob, waitJobCollected } from '../test/helpers/faults.js'
import { liveMemory } from './common.js'

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : undefined
}
const phases = (arg('phases') ?? '60,150,150').split(',').map(Number)
const quietMs = Number(arg('quiet-s') ?? 90) * 1000
const snapshotDir = arg('snapshots')
if (!phases.every((n) => Number.isInteger(n) && n > 0) || !(quietMs >= 0)) {
  console.error('usage: heap-probe [--phases 60,150,150] [--quiet-s 90] [--snapshots DIR]')
  process.exit(2)
}

type Summary = Map<string, { count: number; bytes: number }>

/** Self size and count by (node type, name) of a V8 heap snapshot. */
function summarize(path: string): Summary {
  const s = JSON.parse(readFileSync(path, 'utf8'))
  const fields: string[] = s.snapshot.meta.node_fields
  const types: string[] = s.snapshot.meta.node_types[0]
  const [iType, iName, iSize] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f))
  const out: Summary = new Map()
  const strings = new Set(['string', 'concatenated string', 'sliced string'])
  for (let i = 0; i < s.nodes.length; i += fields.length) {
    const type = types[s.nodes[i + iType]]
    const name = strings.has(type) ? '(string)' : String(s.strings[s.nodes[i + iName]]).slice(0, 60)
    const k = `${type}: ${name}`
    const e = out.get(k) ?? { count: 0, bytes: 0 }
    e.count++
    e.bytes += s.nodes[i + iSize]
    out.set(k, e)
  }
  return out
}

function printGrowth(before: Summary, after: Summary): void {
  const rows = [...after].map(([k, e]) => {
    const b = before.get(k) ?? { count: 0, bytes: 0 }
    return { k, bytes: e.bytes - b.bytes, count: e.count - b.count }
  })
  const total = rows.reduce((a, r) => a + r.bytes, 0)
  console.log(`  node 1 heap snapshot: ${(total / 2 ** 20).toFixed(2)} MiB more (self sizes)`)
  for (const r of rows.sort((a, b) => b.bytes - a.bytes).slice(0, 12))
    console.log(
      `    ${String(Math.round(r.bytes / 1024)).padStart(7)} KiB ${String(r.count).padStart(7)} objects  ${r.k}`,
    )
}

async function snapshot(pid: number, dir: string): Promise<string> {
  const before = new Set(readdirSync(dir))
  process.kill(pid, 'SIGUSR2')
  for (let i = 0; i < 1200; i++) {
    await new Promise((r) => setTimeout(r, 500))
    const f = readdirSync(dir).find((x) => x.endsWith('.heapsnapshot') && !before.has(x))
    // The file appears at once and is written for a few seconds more.
    if (f) {
      await new Promise((r) => setTimeout(r, 5_000))
      return join(dir, f)
    }
  }
  throw new Error('no heap snapshot within 10 minutes')
}

async function main(): Promise<void> {
  if (snapshotDir) {
    await mkdir(snapshotDir, { recursive: true })
    // The daemons write their snapshots into their working directory: this one.
    process.chdir(resolve(snapshotDir))
  }
  const procs = await startFaultMesh(3, {
    logLevel: 'warn',
    env: { NODE_OPTIONS: '--expose-gc --heapsnapshot-signal=SIGUSR2' },
  })
  let jobs = 0
  let previous: Summary | undefined
  try {
    console.log(
      `[heap-probe] 3 daemons; phases ${phases.join(', ')} jobs; quiet ${quietMs / 1000} s`,
    )
    for (const n of phases) {
      for (let i = 0; i < n; i++, jobs++) {
        const submitter = procs[jobs % procs.length]
        const job = await submitTestJob(submitter, { frames: 40, frameMs: 5, chunk: 1 })
        await waitJobCollected(submitter, job.jobId, 120_000)
        await apiCall(submitter.socket, 'DELETE', `/v1/jobs/${job.jobId}`)
        await rm(job.workDir, { recursive: true, force: true })
      }
      await new Promise((r) => setTimeout(r, quietMs))
      const mem = await Promise.all(procs.map((p) => liveMemory(p.socket, 60_000)))
      const live = mem.map((m) => (((m.heapKiB ?? 0) + (m.externalKiB ?? 0)) / 1024).toFixed(1))
      const filling = [...new Set(mem.flatMap((m) => m.cachesFilling))]
      console.log(
        `after ${jobs} jobs: live after GC ${live.join(' / ')} MiB (nodes 1-3); caches still filling: ${filling.join(', ') || 'none'}`,
      )
      if (snapshotDir && procs[0].proc.pid) {
        const file = await snapshot(procs[0].proc.pid, resolve('.'))
        const summary = summarize(file)
        if (previous) printGrowth(previous, summary)
        previous = summary
        await rm(file, { force: true })
      }
    }
  } finally {
    await stopAll(procs)
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
