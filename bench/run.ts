/**
 * `npm run bench`: runs every benchmark (or a subset), prints a table and writes the
 * figures, the machine, the date and the exact command to bench/RESULTS.md.
 *
 *   node dist/bench/run.js [--only log,transfer,engines,leases,overhead] [--quick] [--out FILE]
 *
 * Invariants: a comparison (rmesh against plain TCP, swarm against serial, persistent
 * against per-process Blender, makespan against the ideal) is always measured side by side
 * in the same run by the module that reports it; a module that fails is recorded as failed
 * and the others still run (the exit code is then 1). `--quick` is a smoke run with small
 * sizes: it writes to the temporary directory unless --out says otherwise, so it never
 * replaces the real figures.
 */
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { cpus, freemem, loadavg, release, tmpdir, totalmem, type, version } from 'node:os'
import { join, relative } from 'node:path'
import { packageRoot } from '../src/version.js'
import type { BenchResult } from './common.js'
import { round } from './common.js'
import { benchAssets } from './assets.js'
import { benchEngines } from './engines.js'
import { benchLeases } from './leases.js'
import { benchLog } from './log.js'
import { benchOverhead } from './overhead.js'
import { benchTransfer } from './transfer.js'
import { benchWan } from './wan.js'

interface Module {
  name: string
  title: string
  run(quick: boolean, log: (l: string) => void): Promise<BenchResult[]>
  /** How the quick run is scaled down. */
  quickNote: string
}

const MODULES: Module[] = [
  {
    name: 'log',
    title: 'Job log (issue 4)',
    quickNote:
      '500 appends, 10,000-entry fold, 500 entries to converge (in one process and in 5), 2,000 to catch up',
    run: (q) =>
      benchLog(
        q ? { appendCount: 500, foldCount: 10_000, convergeCount: 500, catchupCount: 2_000 } : {},
      ),
  },
  {
    name: 'transfer',
    title: 'File transfer (issue 7)',
    quickNote: '16 MiB transfer, 16 MiB swarm to 3 peers',
    run: (q, log) => benchTransfer(q ? { sizeMiB: 16, swarmMiB: 16, peers: 3, log } : { log }),
  },
  {
    name: 'engines',
    title: 'Blender engines (issue 8)',
    quickNote: '2 frames',
    run: (q) => benchEngines(q ? { frames: 2 } : {}),
  },
  {
    name: 'leases',
    title: 'Leases on real daemons (issue 6)',
    quickNote: '20 frames × 200 ms on 1 and 2 nodes',
    run: (q, log) => benchLeases(q ? { frames: 20, frameMs: 200, nodes: [1, 2], log } : { log }),
  },
  {
    name: 'overhead',
    title: 'Overheads on real daemons',
    quickNote: '20 chunks, 5 convergence rounds, 5 s at rest',
    run: (q, log) => benchOverhead(q ? { frames: 20, rounds: 5, idleMs: 5_000, log } : { log }),
  },
  {
    name: 'wan',
    title: 'Beyond one LAN: relay and DCUtR (issue 18)',
    quickNote: '8 MiB transfers',
    run: (q, log) => benchWan(q ? { sizeMiB: 8, log } : { log }),
  },
  {
    name: 'assets',
    title: 'Scene files sent once (issue 21)',
    quickNote: '16 MiB of textures',
    run: (q, log) => benchAssets(q ? { textureMiB: 16, log } : { log }),
  },
]

interface Section {
  module: Module
  results: BenchResult[]
  seconds: number
  error?: string
}

function parseArgs(argv: string[]): { only?: string[]; quick: boolean; out?: string } {
  const out: { only?: string[]; quick: boolean; out?: string } = { quick: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--quick') out.quick = true
    else if (a === '--only') out.only = (argv[++i] ?? '').split(',').filter(Boolean)
    else if (a.startsWith('--only=')) out.only = a.slice(7).split(',').filter(Boolean)
    else if (a === '--out') out.out = argv[++i]
    else if (a === '--help' || a === '-h') {
      console.log(
        `usage: node dist/bench/run.js [--only ${MODULES.map((m) => m.name).join(',')}] [--quick] [--out FILE]`,
      )
      process.exit(0)
    } else throw new Error(`unknown argument ${a} (see --help)`)
  }
  for (const n of out.only ?? []) {
    if (!MODULES.some((m) => m.name === n))
      throw new Error(`no benchmark named ${n}; there are ${MODULES.map((m) => m.name).join(', ')}`)
  }
  return out
}

/** CPU pressure (PSI) over the last 60 s: how much runnable work waited for a CPU. */
function cpuPressure(): string {
  try {
    const line = readFileSync('/proc/pressure/cpu', 'utf8').split('\n')[0]
    return `${/avg60=([\d.]+)/.exec(line)?.[1] ?? '?'} %`
  } catch {
    return 'unknown'
  }
}

function load(): string {
  return `load ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}, CPU pressure (some, avg60) ${cpuPressure()}`
}

function machine(): string[] {
  const c = cpus()
  return [
    `- CPU: ${c[0]?.model ?? 'unknown'}, ${c.length} cores`,
    `- Memory: ${round(totalmem() / 2 ** 30, 1)} GiB (${round(freemem() / 2 ** 30, 1)} GiB free at start)`,
    `- OS: ${type()} ${release()} (${version()})`,
    `- Node: ${process.version}`,
  ]
}

function table(results: BenchResult[]): string[] {
  const rows = [
    '| figure | value | unit | note |',
    '| --- | ---: | --- | --- |',
    ...results.map(
      (r) => `| ${r.name} | ${r.value} | ${r.unit} | ${(r.note ?? '').replaceAll('|', '\\|')} |`,
    ),
  ]
  return rows
}

function printTable(section: Section): void {
  console.log(`\n== ${section.module.title} (${round(section.seconds, 1)} s)`)
  if (section.error) console.log(`   FAILED: ${section.error}`)
  for (const r of section.results)
    console.log(
      `   ${r.name.padEnd(36)} ${String(r.value).padStart(10)} ${r.unit.padEnd(12)} ${r.note ?? ''}`,
    )
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2))
  const root = packageRoot()
  const outPath =
    args.out ??
    (args.quick ? join(tmpdir(), 'rmesh-bench-quick.md') : join(root, 'bench', 'RESULTS.md'))
  const command =
    process.env.npm_lifecycle_event === 'bench' && process.argv.length === 2
      ? 'npm run bench'
      : `node ${relative(root, process.argv[1])} ${process.argv.slice(2).join(' ')}`.trim()
  const chosen = MODULES.filter((m) => !args.only || args.only.includes(m.name))
  const started = new Date()
  const loadBefore = load()
  const sections: Section[] = []
  for (const m of chosen) {
    const t0 = performance.now()
    console.error(`-- ${m.name}: running${args.quick ? ` (quick: ${m.quickNote})` : ''}`)
    const section: Section = { module: m, results: [], seconds: 0 }
    try {
      section.results = await m.run(args.quick, (l) => console.error(`   ${l}`))
    } catch (err) {
      section.error = err instanceof Error ? (err.stack ?? err.message) : String(err)
    }
    section.seconds = (performance.now() - t0) / 1000
    sections.push(section)
    printTable(section)
  }
  const ended = new Date()

  const md: string[] = [
    '# rmesh benchmark results',
    '',
    `Written by \`bench/run.ts\`. Command: \`${command}\``,
    '',
    `- Date: ${started.toISOString()} → ${ended.toISOString()} (${round((ended.getTime() - started.getTime()) / 60_000, 1)} min)`,
    ...machine(),
    `- Machine load at start: ${loadBefore}`,
    `- Machine load at end: ${load()}`,
    ...(args.quick
      ? ['- **Quick smoke run**: sizes scaled down, figures are not comparable.']
      : []),
    '',
  ]
  const notes = NOTES()
  for (const s of sections) {
    md.push(`## ${s.module.title}`, '')
    md.push(
      `Module \`${s.module.name}\`, ${round(s.seconds, 1)} s${args.quick ? ` (quick: ${s.module.quickNote})` : ''}.`,
      '',
    )
    if (notes[s.module.name]) md.push(notes[s.module.name], '')
    if (s.error) md.push('**Failed:**', '', '```', s.error.slice(0, 3_000), '```', '')
    if (s.results.length) md.push(...table(s.results), '')
  }
  await writeFile(outPath, `${md.join('\n')}\n`)
  console.error(`\nwritten ${outPath}`)
  return sections.some((s) => s.error) ? 1 : 0
}

/** What each module's figures mean and how they compare: printed above its table. */
function NOTES(): Record<string, string> {
  return {
    log: 'Append+sign and verify+join on memory stores; fold = sort + reduce of 100,000 entries; converge = 10,000 entries appended on one of 5 libp2p hosts in one process until all hold them (issue 4; the hosts share the process-wide verified-id cache, so the note counts signature checks); converge.processes = the same with each node in an OS process of its own (LevelDB stores, each signature checked once per node), side by side. Catch-up (issue 17): a node holding 90 % of each log plus entries of its own runs one log-sync 2.0.0 session with a peer (LevelDB, every signature checked), beside an empty node downloading everything.',
    transfer:
      'Side by side in one run: one transfer between two hosts against a plain TCP copy of the same bytes (ratio = rmesh / TCP throughput, aim ≥ 0.25; the profile rows say where the rest goes), and a scene sent from 1 submitter to 7 peers by swarm against one peer after another (ratio = swarm / serial time, aim ≤ 0.4; every node’s upload is capped to model one NIC per machine on one loopback).',
    wan: "In network namespaces (two NAT sites, an office relay on a shared bridge): one transfer with the block exchange from the office (direct, through the NAT), from a NAT'd site-B machine through the office relay, and from a site-B machine behind a forwarded port after DCUtR replaced the relayed connection; ratios are throughput / direct. No rate bound (daemons bound bulk files over relays to relayedUploadMiBps, 4 MiB/s by default).",
    engines:
      'Side by side on the example scene: one Blender process per frame against one persistent Blender per node; per-frame times include start-up and scene load, amortised (speed-up = per-process / persistent).',
    leases:
      'Real daemons (libp2p, LevelDB, one process each) on loopback, the test engine, chunk size 1. Makespan = submit → last frame done (outputs stored, complete entry written); ideal = frames × frame time ÷ nodes; efficiency = ideal / makespan (aim ≥ 0.97 on 8 nodes). Gap = a render’s end (the engine’s "Saved:" line) → the same node’s next render start (aim < 50 ms). First frame = submit → the first render’s start (aim < 500 ms). Duplicates = completes beyond the first per chunk (aim < 1 %). All daemons share this machine’s CPUs: with 8 daemons the figures measure the CPU the mesh needs as much as the scheduler (see the load lines above).',
    assets:
      'Side by side in one run: the same project (a tiny scene and 200 MiB of noise-PNG textures, no --pack) submitted twice, unchanged, then a third time with one texture replaced, from a daemon with no render slot to one renderer, real Blender. Bytes = block bytes the renderer fetched for the job (aim for the resubmit < 1 MiB); stored = growth of the submitter’s block store; submit = the API call (trace, import, announce).',
    overhead:
      'Per-chunk overhead: one daemon, chunks of one test-engine frame at 0 and 50 ms. Convergence: one log entry (a priority change) on 5 daemons. At rest: 3 admitted daemons with nothing to do.',
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err)
    process.exit(2)
  },
)
