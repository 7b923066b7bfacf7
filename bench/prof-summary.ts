/**
 * Where a daemon's CPU went, from a `node --cpu-prof` profile: busy time by owner (a
 * package of node_modules, an rmesh module, Node's internals, GC), for the notes that say
 * why an aim is missed with a profile rather than a guess.
 *
 *   node dist/bench/prof-summary.js FILE.cpuprofile [--last SEC] [--skip-end SEC] [--top N] [--json]
 *
 * Two views of the same samples: `self` charges a sample to the function it stopped in;
 * `owner` charges it to the innermost frame that belongs to a package or an rmesh module
 * (so Node's stream, Buffer and timer internals count for whoever called them), which is
 * the view to act on. `--last SEC` keeps the samples of the profile's last SEC seconds
 * (e.g. a job's window), `--skip-end SEC` drops its final SEC (the shutdown).
 *
 * On a loaded machine the process is sometimes descheduled between two samples, and the
 * whole gap would be charged to whatever it was running (one 640-ms "decodeRpc" in a
 * profile of 30 daemons on 2 cores): a sample counts for at most GAP_CAP × the median
 * interval, and what is cut is reported as `descheduledMs`.
 *
 * Invariants: reads the file only; idle samples are reported but never counted as busy.
 */
import { readFile } from 'node:fs/promises'
import { isMain, round } from './common.js'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}

interface CpuProfile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
  startTime: number
  endTime: number
}

export interface ProfileShare {
  owner: string
  ms: number
  share: number
}

export interface ProfileSummary {
  windowMs: number
  busyMs: number
  idleMs: number
  /** Gaps between samples beyond GAP_CAP × the median interval: off CPU, not charged. */
  descheduledMs: number
  self: ProfileShare[]
  owner: ProfileShare[]
  functions: ProfileShare[]
}

/** A sample counts for at most this many median sampling intervals. */
const GAP_CAP = 4

const SPECIAL = new Set(['(garbage collector)', '(program)', '(idle)', '(root)'])

/** The owner a frame belongs to: a package, an rmesh module, node:, wasm, or a V8 bucket. */
export function ownerOf(url: string, functionName: string): string | undefined {
  if (!url) return SPECIAL.has(functionName) ? functionName : undefined
  if (url.startsWith('node:')) return undefined
  if (url.startsWith('wasm:')) return 'wasm'
  const nm = url.lastIndexOf('/node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/')
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  const src = url.match(/\/dist\/((?:src|cli|bench)\/.+?)\.js$/)
  if (src) return `rmesh:${src[1]}`
  return url
}

function nodeInternalOf(url: string): string {
  const m = url.match(/^node:(?:internal\/)?([^/]+)/)
  return m ? `node:${m[1]}` : '(native)'
}

export function summarizeProfile(
  profile: CpuProfile,
  opts: { lastSec?: number; skipEndSec?: number; top?: number } = {},
): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const ownerCache = new Map<number, string>()
  const ownerOfNode = (id: number): string => {
    const cached = ownerCache.get(id)
    if (cached !== undefined) return cached
    let at: number | undefined = id
    let found: string | undefined
    while (at !== undefined && found === undefined) {
      const n = byId.get(at)
      if (!n) break
      found = ownerOf(n.callFrame.url, n.callFrame.functionName)
      at = parent.get(at)
    }
    const self = byId.get(id)
    const result = found ?? (self ? nodeInternalOf(self.callFrame.url) : '(unknown)')
    ownerCache.set(id, result)
    return result
  }
  // Sample i happens at startTime + sum(timeDeltas[0..i]).
  const times: number[] = []
  let t = profile.startTime
  for (const d of profile.timeDeltas) {
    t += d
    times.push(t)
  }
  // Profile times are in µs.
  const end = profile.endTime - (opts.skipEndSec ?? 0) * 1e6
  const start = opts.lastSec !== undefined ? end - opts.lastSec * 1e6 : profile.startTime
  const self = new Map<string, number>()
  const owner = new Map<string, number>()
  const fns = new Map<string, number>()
  const sortedDeltas = [...profile.timeDeltas].sort((a, b) => a - b)
  const cap = GAP_CAP * Math.max(1, sortedDeltas[Math.floor(sortedDeltas.length / 2)] ?? 1000)
  let busy = 0
  let idle = 0
  let descheduled = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const at = times[i] as number
    if (at < start || at > end) continue
    // A sample's weight is the gap to the next one (the last gets the previous gap).
    const gap = (times[i + 1] ?? at + (profile.timeDeltas[i] ?? 0)) - at
    const us = Math.min(gap, cap)
    descheduled += gap - us
    const n = byId.get(profile.samples[i] as number)
    if (!n) continue
    const fn = n.callFrame.functionName
    if (fn === '(idle)') {
      idle += us
      continue
    }
    busy += us
    const selfOwner = ownerOf(n.callFrame.url, fn) ?? nodeInternalOf(n.callFrame.url)
    self.set(selfOwner, (self.get(selfOwner) ?? 0) + us)
    const o = ownerOfNode(n.id)
    owner.set(o, (owner.get(o) ?? 0) + us)
    const where = n.callFrame.url.replace(/^.*\/(node_modules|dist)\//, '')
    const key = `${fn || '(anonymous)'} ${where}:${n.callFrame.lineNumber + 1}`
    fns.set(key, (fns.get(key) ?? 0) + us)
  }
  const top = opts.top ?? 25
  const shares = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, us]) => ({ owner: k, ms: round(us / 1000, 1), share: round((100 * us) / busy, 1) }))
  return {
    windowMs: round((end - start) / 1000, 0),
    busyMs: round(busy / 1000, 0),
    idleMs: round(idle / 1000, 0),
    descheduledMs: round(descheduled / 1000, 0),
    self: shares(self),
    owner: shares(owner),
    functions: shares(fns),
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2)
  const file = args.find((a) => !a.startsWith('--') && !/^\d+$/.test(a))
  const num = (flag: string) => {
    const i = args.indexOf(flag)
    if (i < 0) return undefined
    const v = Number(args[i + 1])
    if (!Number.isFinite(v) || v < 0)
      throw new Error(`${flag} takes a number of seconds or a count`)
    return v
  }
  if (!file || args.includes('--help')) {
    console.log(
      'usage: node dist/bench/prof-summary.js FILE.cpuprofile [--last SEC] [--skip-end SEC] [--top N] [--json]',
    )
    process.exit(file ? 0 : 2)
  }
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile
  const s = summarizeProfile(profile, {
    lastSec: num('--last'),
    skipEndSec: num('--skip-end'),
    top: num('--top'),
  })
  if (args.includes('--json')) {
    console.log(JSON.stringify(s, null, 2))
    return
  }
  console.log(
    `window ${s.windowMs} ms, busy ${s.busyMs} ms, idle ${s.idleMs} ms, descheduled (not charged) ${s.descheduledMs} ms`,
  )
  for (const [title, rows] of [
    ['by owner (innermost package or rmesh module)', s.owner],
    ['by self', s.self],
    ['top functions (self)', s.functions],
  ] as const) {
    console.log(`\n${title}`)
    for (const r of rows)
      console.log(`${String(r.share).padStart(6)} %  ${String(r.ms).padStart(9)} ms  ${r.owner}`)
  }
}

if (isMain(import.meta.url)) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err)
    process.exit(1)
  })
}
