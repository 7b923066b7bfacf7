/**
 * Log benchmarks: append+sign and verify+join throughput, fold time for 100,000 entries,
 * the time for 10,000 entries appended on one node to converge on 5 nodes over loopback
 * (real libp2p, memory stores so the disk does not dominate), and the catch-up of a node
 * that holds 90 % of a large log (log.catchup.*: what one session sends it, beside a full
 * download; LevelDB stores).
 * log.converge.processes is the same convergence with each node in an OS process of its own
 * (bench/log-node.ts, LevelDB stores as a daemon has), measured side by side with
 * log.converge in the same run: in one process the 5 nodes share one verified-id cache, so
 * each signature is checked once per process, not once per node.
 * Both append in bursts of 64 issued together (bench/append-burst.ts; a daemon's handlers
 * of one network read append without awaiting each other, and group commit writes a burst
 * in one batch); --append-burst 1 awaits each append, the pattern measured before.
 *
 * Run on its own with `node dist/bench/log.js` after `npm run build`; see --help (e.g.
 * `--only-converge`, `--child-node-flags "--cpu-prof --cpu-prof-dir=/tmp/prof"`).
 *
 * Invariants: every child is killed in a finally (also on error or timeout), and exits by
 * itself when its stdin closes, so no child outlives the bench; every wait has a deadline.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { Level } from 'level'
import { appendBurst } from './append-burst.js'
import { isMain, processCpuMs, round, runStandalone } from './common.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { signerFor } from '../src/auth/identity.js'
import { createEntry, entryVerificationCount, forgetVerifiedEntries } from '../src/log/entry.js'
import { createLogManager, type LogManager } from '../src/log/log.js'
import { createLevelLogStore, createMemoryLogStore } from '../src/log/store.js'
import { compareEntries, jobLogId, type LogEntry } from '../src/log/types.js'
import { createHost, type RmeshLibp2p } from '../src/net/host.js'
import { createLogSync, type LogSync } from '../src/sync/sync.js'
import { systemClock } from '../src/util/clock.js'
import { silentLogger } from '../src/util/logger.js'

export interface BenchResult {
  name: string
  value: number
  unit: string
  note?: string
}

export interface BenchLogOptions {
  appendCount?: number
  foldCount?: number
  convergeCount?: number
  convergeNodes?: number
  /** Entries of the catch-up scenarios (one mesh-wide log; and 100 job logs). */
  catchupCount?: number
  /** Only log.converge and log.converge.processes, side by side. */
  onlyConverge?: boolean
  /** Options of the multi-process convergence (node flags and store of the children). */
  processes?: ConvergeProcessOptions
}

async function manager(): Promise<LogManager> {
  return createLogManager({
    store: createMemoryLogStore(),
    signer: signerFor(await generateKeyPair('Ed25519')),
    clock: systemClock,
    logger: silentLogger,
    tokenId: () => '',
  })
}

export async function benchLog(opts: BenchLogOptions = {}): Promise<BenchResult[]> {
  const appendCount = opts.appendCount ?? 5_000
  const foldCount = opts.foldCount ?? 100_000
  const convergeCount = opts.convergeCount ?? 10_000
  const convergeNodes = opts.convergeNodes ?? 5
  const out: BenchResult[] = []
  const log = jobLogId('bench')
  if (opts.onlyConverge) {
    out.push(await converge(convergeCount, convergeNodes, opts.processes?.burst ?? DEFAULT_BURST))
    out.push(...(await convergeProcesses(convergeCount, convergeNodes, opts.processes)))
    return out
  }

  const a = await manager()
  let t = performance.now()
  const appended: LogEntry[] = []
  for (let i = 0; i < appendCount; i++) appended.push(await a.append(log, 'claim', { chunk: i }))
  let s = (performance.now() - t) / 1000
  out.push({
    name: 'log.append+sign',
    value: Math.round(appendCount / s),
    unit: 'entries/s',
    note: `${appendCount} entries, memory store`,
  })

  // Forget verified ids so every signature is checked, as on first sight from a peer.
  forgetVerifiedEntries()
  const copies = appended.map((e) => new Uint8Array(e.bytes))
  const b = await manager()
  t = performance.now()
  for (let i = 0; i < copies.length; i += 500) await b.join(copies.slice(i, i + 500))
  s = (performance.now() - t) / 1000
  out.push({
    name: 'log.verify+join',
    value: Math.round(appendCount / s),
    unit: 'entries/s',
    note: `${appendCount} entries in batches of 500 (first sight: the signature is verified)`,
  })

  // Fold: entries are built without signing (the fold never looks at signatures).
  const signer = signerFor(await generateKeyPair('Ed25519'))
  const seed = await createEntry(signer, {
    log,
    kind: 'claim',
    body: 0,
    clock: 1,
    next: [],
    wall: 0,
    tok: '',
  })
  const authors = ['12D3KooWA', '12D3KooWB', '12D3KooWC']
  const many = Array.from({ length: foldCount }, (_, i) => ({
    ...seed,
    id: `${seed.id.slice(0, -8)}${String(i).padStart(8, '0')}`,
    clock: 1 + Math.floor(i / 3),
    author: authors[i % 3],
    body: { chunk: i % 1000, kind: i % 2 },
  })) as unknown as LogEntry<{ chunk: number; kind: number }>[]
  for (let i = many.length - 1; i > 0; i--) {
    const j = (i * 7919) % (i + 1)
    ;[many[i], many[j]] = [many[j], many[i]]
  }
  t = performance.now()
  const sorted = [...many].sort(compareEntries)
  const state = new Map<number, number>()
  for (const e of sorted) state.set(e.body.chunk, (state.get(e.body.chunk) ?? 0) + e.body.kind)
  out.push({
    name: 'log.fold',
    value: Math.round(performance.now() - t),
    unit: 'ms',
    note: `${foldCount} entries: sort + trivial reduce`,
  })

  out.push(await converge(convergeCount, convergeNodes, opts.processes?.burst ?? DEFAULT_BURST))
  out.push(...(await convergeProcesses(convergeCount, convergeNodes, opts.processes)))
  const catchupCount = opts.catchupCount ?? 20_000
  out.push(...(await catchup({ name: 'log.catchup', logs: 1, perLog: catchupCount })))
  out.push(
    ...(await catchup({
      name: 'log.catchup.jobs',
      logs: 100,
      perLog: Math.ceil(catchupCount / 100),
    })),
  )
  return out
}

async function converge(count: number, nodes: number, burst: number): Promise<BenchResult> {
  const log = jobLogId('converge')
  const peers: Array<{ host: RmeshLibp2p; log: LogManager; sync: LogSync }> = []
  try {
    for (let i = 0; i < nodes; i++) {
      const key = await generateKeyPair('Ed25519')
      const host = await createHost({
        privateKey: key,
        listen: ['/ip4/127.0.0.1/tcp/0'],
        mdns: false,
      })
      const m = createLogManager({
        store: createMemoryLogStore(),
        signer: signerFor(key),
        clock: systemClock,
        logger: silentLogger,
        tokenId: () => '',
      })
      const sync = createLogSync(
        { libp2p: host, log: m, logger: silentLogger, clock: systemClock },
        { intervalMs: 1_000 },
      )
      await sync.start()
      peers.push({ host, log: m, sync })
    }
    for (let i = 0; i < nodes; i++) {
      for (let j = i + 1; j < nodes; j++)
        await peers[i].host.dial(multiaddr(peers[j].host.getMultiaddrs()[0].toString()))
    }
    await new Promise((r) => setTimeout(r, 1_500)) // let gossipsub graft its mesh
    const t = performance.now()
    // CPU time beside wall time: on a shared machine the wall time mostly measures the load.
    const cpuBefore = process.cpuUsage()
    const verifiedBefore = entryVerificationCount()
    const last = await appendBurst(count, burst, (i) => peers[0].log.append(log, 'claim', { i }))
    const deadline = Date.now() + 120_000
    for (;;) {
      const done = await Promise.all(
        peers.map(async (p) => (await p.log.heads(log))[0] === last.id),
      )
      if (done.every(Boolean)) break
      if (Date.now() > deadline) throw new Error('convergence bench did not converge in 120 s')
      await new Promise((r) => setTimeout(r, 20))
    }
    const cpu = process.cpuUsage(cpuBefore)
    return {
      name: 'log.converge',
      value: Math.round(performance.now() - t),
      unit: 'ms',
      note: `${count} entries appended on one node (bursts of ${burst}) until all ${nodes} nodes hold them (loopback, gossip + anti-entropy); ${entryVerificationCount() - verifiedBefore} signature checks; process CPU ${Math.round((cpu.user + cpu.system) / 1000)} ms`,
    }
  } finally {
    for (const p of peers) {
      await p.sync.stop()
      await p.host.stop()
    }
  }
}

export interface ConvergeProcessOptions {
  /** Node flags for every child, e.g. ['--cpu-prof', '--cpu-prof-dir=/tmp/prof']. */
  nodeFlags?: readonly string[]
  /** Children that get nodeFlags (indexes; default all). Child 0 appends. */
  flagged?: readonly number[]
  /** The children's log store (default LevelDB in a temporary folder, as a daemon). */
  store?: 'level' | 'memory'
  /** Appends issued together between yields (bench/append-burst.ts); default 64. */
  burst?: number
}

/**
 * Appends issued together in the convergence benches (bench/append-burst.ts): a daemon's
 * handlers of one network read append without awaiting each other (group commit writes
 * them in one batch); --append-burst 1 measures appends awaited one by one.
 */
const DEFAULT_BURST = 64

/** Deadlines of the multi-process bench: one command, and the whole convergence. */
const ASK_MS = 30_000
const APPEND_MS = 300_000
const CONVERGE_MS = 120_000

interface NodeChild {
  proc: ChildProcess
  /** One command, one answer line; throws on {ok:false}, on exit and after timeoutMs. */
  ask(cmd: Record<string, unknown>, timeoutMs?: number): Promise<Record<string, unknown>>
  /** The hello line: peer id and listen addresses. */
  hello: Promise<Record<string, unknown>>
  exited: Promise<void>
}

function spawnNode(index: number, opts: ConvergeProcessOptions): NodeChild {
  const script = join(import.meta.dirname, 'log-node.js')
  const flags = !opts.flagged || opts.flagged.includes(index) ? (opts.nodeFlags ?? []) : []
  const proc = spawn(process.execPath, [...flags, script, '--store', opts.store ?? 'level'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const waiting: Array<{ ok(x: Record<string, unknown>): void; fail(e: Error): void }> = []
  let gone: Error | undefined
  const exited = new Promise<void>((resolve) => {
    const end = (why: string) => {
      gone ??= new Error(`log node ${index} ${why}`)
      for (const w of waiting.splice(0)) w.fail(gone)
      resolve()
    }
    proc.on('exit', (code, signal) => end(`exited (${signal ?? code})`))
    proc.on('error', (err) => end(`failed to start: ${err.message}`))
  })
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    let x: Record<string, unknown>
    try {
      x = JSON.parse(line)
    } catch {
      x = { ok: false, error: { code: 'ERR_DECODE', message: `not JSON: ${line.slice(0, 200)}` } }
    }
    waiting.shift()?.ok(x)
  })
  const next = (what: string, timeoutMs: number) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      if (gone) return reject(gone)
      const timer = setTimeout(
        () => reject(new Error(`log node ${index}: no answer to ${what} in ${timeoutMs} ms`)),
        timeoutMs,
      )
      const settle = () => clearTimeout(timer)
      waiting.push({
        ok(x) {
          settle()
          if (x.ok === true) resolve(x)
          else reject(new Error(`log node ${index}: ${what}: ${JSON.stringify(x.error)}`))
        },
        fail(e) {
          settle()
          reject(e)
        },
      })
    })
  const hello = next('start', ASK_MS)
  hello.catch(() => undefined) // awaited by the caller; never an unhandled rejection
  return {
    proc,
    hello,
    exited,
    ask(cmd, timeoutMs = ASK_MS) {
      const answer = next(String(cmd.op), timeoutMs)
      proc.stdin!.write(`${JSON.stringify(cmd)}\n`)
      return answer
    },
  }
}

/** Ask a child to exit (so --cpu-prof writes its profile); kill it if it does not. */
async function stopNode(c: NodeChild): Promise<void> {
  if (c.proc.exitCode === null && c.proc.signalCode === null) {
    c.ask({ op: 'exit' }, 5_000).catch(() => undefined)
    const timer = setTimeout(() => c.proc.kill('SIGKILL'), 10_000)
    await c.exited
    clearTimeout(timer)
  }
}

/**
 * converge() with each node in an OS process of its own (bench/log-node.ts): child 0
 * appends `count` entries with the same yielding; the time runs from the append command
 * until every child's heads are the last entry (polled every 20 ms).
 */
export async function convergeProcesses(
  count: number,
  nodes: number,
  opts: ConvergeProcessOptions = {},
): Promise<BenchResult[]> {
  const log = jobLogId('converge')
  const children: NodeChild[] = []
  // A parent that dies before the finally still takes its children with it.
  const killAll = () => {
    for (const c of children) c.proc.kill('SIGKILL')
  }
  process.once('exit', killAll)
  try {
    for (let i = 0; i < nodes; i++) children.push(spawnNode(i, opts))
    const hellos = await Promise.all(children.map((c) => c.hello))
    for (let i = 0; i < nodes; i++) {
      for (let j = i + 1; j < nodes; j++)
        await children[i].ask({ op: 'dial', addr: (hellos[j].addrs as string[])[0] })
    }
    await new Promise((r) => setTimeout(r, 1_500)) // let gossipsub graft its mesh
    const before = await Promise.all(children.map((c) => c.ask({ op: 'heads', log })))
    const cpuBefore = children.map((c) => processCpuMs(c.proc.pid))
    const t = performance.now()
    const burst = opts.burst ?? DEFAULT_BURST
    const appended = await children[0].ask({ op: 'append', log, count, burst }, APPEND_MS)
    const last = appended.last as string
    const deadline = Date.now() + CONVERGE_MS
    let states: Record<string, unknown>[]
    for (;;) {
      states = await Promise.all(children.map((c) => c.ask({ op: 'heads', log })))
      if (states.every((s) => (s.heads as string[])[0] === last)) break
      if (Date.now() > deadline)
        throw new Error(`multi-process convergence did not converge in ${CONVERGE_MS} ms`)
      await new Promise((r) => setTimeout(r, 20))
    }
    const ms = Math.round(performance.now() - t)
    const cpu = children.map((c, i) => Math.round(processCpuMs(c.proc.pid) - cpuBefore[i]))
    const checks = states.map(
      (s, i) => (s.verifications as number) - (before[i].verifications as number),
    )
    const held = await Promise.all(children.map((c) => c.ask({ op: 'count', log })))
    const entries = held.map((h) => h.entries as number)
    if (entries.some((n) => n !== count))
      throw new Error(`a node holds ${entries.join('/')} entries, not ${count}`)
    const store = opts.store ?? 'level'
    return [
      {
        name: 'log.converge.processes',
        value: ms,
        unit: 'ms',
        note: `${count} entries appended on node 0 (bursts of ${burst}) until all ${nodes} nodes (one OS process each, ${store === 'level' ? 'LevelDB' : 'memory'} stores) hold them; appends took ${appended.ms} ms; signature checks per node ${checks.join('/')}; CPU ms per node ${cpu.join('/')}`,
      },
    ]
  } finally {
    await Promise.all(children.map(stopNode))
    process.removeListener('exit', killAll)
  }
}

export interface CatchupScenario {
  name: string
  logs: number
  perLog: number
  /** Authors writing (a 100-node mesh) and entries written concurrently per round. */
  authors?: number
  width?: number
  /** Share of each log the returning node holds, and entries it wrote while away. */
  held?: number
  own?: number
}

/**
 * A node returns after a day away: it holds the first 90 % of every log (what a node that
 * stopped holds: every parent of what it has) and wrote a few entries of its own that the
 * others lack, so its heads are unknown to them. It catches up from one peer with one
 * session (LevelDB stores, real libp2p, every signature checked as on first sight), beside
 * a node with an empty store that downloads everything from the same peer.
 */
export async function catchup(sc: CatchupScenario): Promise<BenchResult[]> {
  const authors = sc.authors ?? 100
  const width = sc.width ?? 4
  const held = sc.held ?? 0.9
  const own = sc.own ?? 5
  const signers = await Promise.all(
    Array.from({ length: authors }, async () => signerFor(await generateKeyPair('Ed25519'))),
  )
  // Rounds of `width` concurrent entries, each naming the previous round's entries, so each
  // author's entries form a chain and the log is a DAG with concurrency, as in a busy mesh.
  const logs: LogEntry[][] = []
  let k = 0
  for (let l = 0; l < sc.logs; l++) {
    const log = sc.logs === 1 ? jobLogId('day') : jobLogId(`day-${l}`)
    const list: LogEntry[] = []
    let heads: LogEntry[] = []
    while (list.length < sc.perLog) {
      const round: LogEntry[] = []
      for (let w = 0; w < width && list.length + round.length < sc.perLog; w++) {
        round.push(
          await createEntry(signers[k++ % authors], {
            log,
            kind: 'claim',
            body: { chunk: k, attempt: 1 },
            clock: 1 + Math.max(0, ...heads.map((h) => h.clock)),
            next: heads.map((h) => h.id),
            wall: 1_700_000_000_000 + k,
            tok: 'bench',
          }),
        )
      }
      list.push(...round)
      heads = round
    }
    logs.push(list)
  }
  const total = logs.reduce((n, l) => n + l.length, 0)
  const dir = await mkdtemp(join(tmpdir(), 'rmesh-bench-catchup-'))
  const nodes: Array<{ host: RmeshLibp2p; log: LogManager; sync: LogSync; db: Level }> = []
  const node = async (i: number) => {
    const key = await generateKeyPair('Ed25519')
    const db = new Level(join(dir, String(i)))
    await db.open()
    const host = await createHost({
      privateKey: key,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      mdns: false,
    })
    const m = createLogManager({
      store: createLevelLogStore(db),
      signer: signerFor(key),
      clock: systemClock,
      logger: silentLogger,
      tokenId: () => 'bench',
    })
    // No periodic or connect-time sessions: the one measured session is the only one.
    const sync = createLogSync(
      { libp2p: host, log: m, logger: silentLogger, clock: systemClock, isAdmitted: () => true },
      { intervalMs: 3_600_000 },
    )
    await sync.start()
    const n = { host, log: m, sync, db }
    nodes.push(n)
    return n
  }
  try {
    const [a, b, c] = [await node(0), await node(1), await node(2)]
    let missing = 0
    for (const list of logs) {
      const cut = Math.floor(list.length * held)
      missing += list.length - cut
      for (let i = 0; i < list.length; i += 500) await a.log.join(list.slice(i, i + 500))
      for (let i = 0; i < cut; i += 500) await b.log.join(list.slice(i, Math.min(cut, i + 500)))
    }
    for (const list of logs.slice(0, Math.max(1, Math.ceil(sc.logs / 10))))
      for (let i = 0; i < own; i++) await b.log.append(list[0].log, 'claim', { own: i })
    const session = async (from: typeof a, to: typeof a) => {
      await to.host.peerStore.merge(from.host.peerId, { multiaddrs: from.host.getMultiaddrs() })
      forgetVerifiedEntries() // first sight: every received signature is checked
      const t = performance.now()
      try {
        const r = await to.sync.syncWith(from.host.peerId)
        return { ...r, ms: Math.round(performance.now() - t), failed: 0 }
      } catch {
        // Seen once in a few runs under load: the responder reset the stream at the end of
        // a session. Counted in the note; the next session measures.
        const r = await to.sync.syncWith(from.host.peerId)
        return { ...r, ms: Math.round(performance.now() - t), failed: 1 }
      }
    }
    const partial = await session(a, b)
    const full = await session(a, c)
    const what =
      sc.logs === 1 ? `one log of ${total} entries` : `${sc.logs} logs × ${sc.perLog} entries`
    const kib = (x: { bytesIn: number; bytesOut: number }) =>
      round((x.bytesIn + x.bytesOut) / 1024, 1)
    return [
      {
        name: `${sc.name}.missing`,
        value: missing,
        unit: 'entries',
        note: `${what} by ${authors} authors; the returning node holds ${held * 100} % of each and wrote ${own} of its own in ${Math.max(1, Math.ceil(sc.logs / 10))} log(s)`,
      },
      {
        name: `${sc.name}.entries`,
        value: partial.entries,
        unit: 'entries',
        note: `entries sent to it in one session (${partial.received} stored)`,
      },
      {
        name: `${sc.name}.bytes`,
        value: kib(partial),
        unit: 'KiB',
        note: `frames both ways: ${round(partial.bytesIn / 1024, 1)} in, ${round(partial.bytesOut / 1024, 1)} out`,
      },
      {
        name: `${sc.name}.ms`,
        value: partial.ms,
        unit: 'ms',
        note: 'one session, LevelDB, signatures checked',
      },
      {
        name: `${sc.name}.full.entries`,
        value: full.entries,
        unit: 'entries',
        note: 'beside it: an empty node downloading everything from the same peer',
      },
      { name: `${sc.name}.full.bytes`, value: kib(full), unit: 'KiB', note: 'frames both ways' },
      { name: `${sc.name}.full.ms`, value: full.ms, unit: 'ms', note: 'one session' },
    ]
  } finally {
    for (const n of nodes) {
      await n.sync.stop()
      await n.host.stop()
      await n.db.close()
    }
    await rm(dir, { recursive: true, force: true })
  }
}

const USAGE = `usage: node dist/bench/log.js [--only-converge] [--count N] [--store level|memory]
                          [--append-burst N] [--child-node-flags "FLAGS"] [--flag-children 1,2]
  --only-converge        only log.converge and log.converge.processes, side by side
  --count N              entries to converge (default 10000)
  --store level|memory   the children's log store (default level, as a daemon)
  --append-burst N       appends issued together between yields (default 64; 1 awaits each)
  --child-node-flags F   node flags for the child processes (split on spaces)
  --flag-children LIST   which children get them (default all; child 0 appends)
examples:
  node dist/bench/log.js
  node dist/bench/log.js --only-converge
  node dist/bench/log.js --only-converge --append-burst 1
  node dist/bench/log.js --only-converge --flag-children 1 \\
    --child-node-flags "--cpu-prof --cpu-prof-dir=/tmp/rmesh-prof"`

function parseCli(argv: string[]): BenchLogOptions {
  const o: BenchLogOptions = {}
  const p: ConvergeProcessOptions = {}
  const value = (i: number, name: string) => {
    const v = argv[i]
    if (v === undefined) throw new Error(`${name} needs a value (see --help)`)
    return v
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--help' || a === '-h') {
      console.log(USAGE)
      process.exit(0)
    } else if (a === '--only-converge') o.onlyConverge = true
    else if (a === '--count') {
      const n = Number(value(++i, a))
      if (!Number.isInteger(n) || n < 1 || n > 1_000_000)
        throw new Error('--count must be an integer in 1..1000000')
      o.convergeCount = n
    } else if (a === '--store') {
      const v = value(++i, a)
      if (v !== 'level' && v !== 'memory') throw new Error('--store must be level or memory')
      p.store = v
    } else if (a === '--append-burst') {
      const n = Number(value(++i, a))
      if (!Number.isInteger(n) || n < 1 || n > 1_000)
        throw new Error('--append-burst must be an integer in 1..1000')
      p.burst = n
    } else if (a === '--child-node-flags') p.nodeFlags = value(++i, a).split(' ').filter(Boolean)
    else if (a === '--flag-children') {
      const list = value(++i, a).split(',').map(Number)
      if (list.some((n) => !Number.isInteger(n) || n < 0))
        throw new Error('--flag-children must be child indexes, e.g. 1,2')
      p.flagged = list
    } else throw new Error(`unknown argument ${a} (see --help)`)
  }
  o.processes = p
  return o
}

if (isMain(import.meta.url)) {
  let cli: BenchLogOptions
  try {
    cli = parseCli(process.argv.slice(2))
  } catch (err) {
    console.error((err as Error).message)
    process.exit(2)
  }
  runStandalone(() => benchLog(cli))
}
