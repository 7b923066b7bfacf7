/**
 * One node of the multi-process convergence bench (bench/log.ts convergeProcesses): a libp2p
 * host built as converge() builds it (127.0.0.1 tcp/0, mDNS off), a log manager on a store
 * of its own, and the log sync, in a process of its own, so that each node pays for its own
 * signature checks (the verified-id cache of src/log/entry.ts is per process).
 *
 *   node dist/bench/log-node.js [--store level|memory]
 *
 * Driven by JSON lines on stdin, one answer line on stdout per command (first line: hello):
 *   {"op":"addr"}                           → {"ok":true,"peerId":…,"addrs":[…]}
 *   {"op":"dial","addr":"/ip4/…","timeoutMs":5000} → {"ok":true,"remote":…}
 *   {"op":"append","log":"job/…","count":10000,"burst":64} → {"ok":true,"last":id,"ms":…}
 *     (burst: appends issued together, without awaiting each other, between two yields to
 *     the event loop, as a daemon's handlers of one network read do; 1 awaits each append;
 *     default 64)
 *   {"op":"heads","log":"job/…"}            → {"ok":true,"heads":[…],"verifications":n}
 *   {"op":"count","log":"job/…"}            → {"ok":true,"entries":n}
 *   {"op":"exit"}                           → {"ok":true}, then the process ends
 * A bad line is answered {"ok":false,"error":{code,message}} and the node stays up.
 *
 * Invariants: every command is validated before it runs (line size, JSON, op, field types
 * and bounds); every dial has a deadline; the node exits when stdin closes (its parent went
 * away), on SIGTERM, or on "exit", always after stopping the sync, the host and the store
 * and removing its temporary folder (a clean exit also lets --cpu-prof write its profile).
 * Bench only: no admission (every peer is the bench's own), as in converge().
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { Level } from 'level'
import { signerFor } from '../src/auth/identity.js'
import { entryVerificationCount, isLogId } from '../src/log/entry.js'
import { createLogManager } from '../src/log/log.js'
import { createLevelLogStore, createMemoryLogStore } from '../src/log/store.js'
import type { LogId } from '../src/log/types.js'
import { createHost } from '../src/net/host.js'
import { createLogSync } from '../src/sync/sync.js'
import { DEFAULT_TIMEOUTS, withDeadline } from '../src/util/abort.js'
import { systemClock } from '../src/util/clock.js'
import { InvalidInputError, isRmeshError, TooLargeError } from '../src/util/errors.js'
import { silentLogger } from '../src/util/logger.js'
import { appendBurst } from './append-burst.js'

/** Commands are short; anything longer is refused before it is parsed. */
const MAX_LINE = 4_096
const MAX_APPEND = 1_000_000
const MAX_DIAL_MS = 60_000
const MAX_BURST = 1_000

type Command =
  | { op: 'addr' | 'exit' }
  | { op: 'dial'; addr: string; timeoutMs: number }
  | { op: 'append'; log: LogId; count: number; burst: number }
  | { op: 'heads' | 'count'; log: LogId }

function parseCommand(line: string): Command {
  if (line.length > MAX_LINE) throw new TooLargeError('command line', line.length, MAX_LINE)
  let x: unknown
  try {
    x = JSON.parse(line)
  } catch {
    throw new InvalidInputError('a command must be one JSON object per line')
  }
  if (typeof x !== 'object' || x === null || Array.isArray(x))
    throw new InvalidInputError('a command must be a JSON object with an "op"')
  const c = x as Record<string, unknown>
  const log = (): LogId => {
    if (!isLogId(c.log))
      throw new InvalidInputError(`${String(c.op)}: "log" must be a log id (job/<id> or mesh)`)
    return c.log
  }
  switch (c.op) {
    case 'addr':
    case 'exit':
      return { op: c.op }
    case 'dial': {
      if (typeof c.addr !== 'string' || c.addr.length === 0)
        throw new InvalidInputError('dial: "addr" must be a multiaddr string')
      try {
        multiaddr(c.addr)
      } catch {
        throw new InvalidInputError(`dial: "addr" is not a multiaddr: ${c.addr.slice(0, 200)}`)
      }
      const t = c.timeoutMs ?? DEFAULT_TIMEOUTS.dial
      if (typeof t !== 'number' || !Number.isInteger(t) || t < 1 || t > MAX_DIAL_MS)
        throw new InvalidInputError(`dial: "timeoutMs" must be an integer in 1..${MAX_DIAL_MS}`)
      return { op: 'dial', addr: c.addr, timeoutMs: t }
    }
    case 'append': {
      const n = c.count
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_APPEND)
        throw new InvalidInputError(`append: "count" must be an integer in 1..${MAX_APPEND}`)
      const burst = c.burst ?? 64
      if (typeof burst !== 'number' || !Number.isInteger(burst) || burst < 1 || burst > MAX_BURST)
        throw new InvalidInputError(`append: "burst" must be an integer in 1..${MAX_BURST}`)
      return { op: 'append', log: log(), count: n, burst }
    }
    case 'heads':
    case 'count':
      return { op: c.op, log: log() }
    default:
      throw new InvalidInputError(
        `unknown op ${JSON.stringify(c.op)}: use addr, dial, append, heads, count or exit`,
      )
  }
}

function parseArgs(argv: string[]): { store: 'level' | 'memory' } {
  let store: 'level' | 'memory' = 'level'
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const v = a === '--store' ? argv[++i] : a.startsWith('--store=') ? a.slice(8) : undefined
    if (v === 'level' || v === 'memory') store = v
    else if (a === '--help' || a === '-h') {
      process.stdout.write(
        'usage: node dist/bench/log-node.js [--store level|memory]\n' +
          'Driven by JSON lines on stdin (see the header of bench/log-node.ts), e.g.\n' +
          '  {"op":"addr"}  {"op":"append","log":"job/bench","count":100}  {"op":"exit"}\n',
      )
      process.exit(0)
    } else throw new InvalidInputError(`unknown argument ${a} (see --help)`)
  }
  return { store }
}

const say = (x: unknown) => process.stdout.write(`${JSON.stringify(x)}\n`)

const args = parseArgs(process.argv.slice(2))
const dir = await mkdtemp(join(tmpdir(), 'rmesh-bench-log-node-'))
const db = args.store === 'level' ? new Level(join(dir, 'db')) : undefined
await db?.open()
const key = await generateKeyPair('Ed25519')
const host = await createHost({ privateKey: key, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
const log = createLogManager({
  store: db ? createLevelLogStore(db) : createMemoryLogStore(),
  signer: signerFor(key),
  clock: systemClock,
  logger: silentLogger,
  tokenId: () => '',
})
const sync = createLogSync(
  { libp2p: host, log, logger: silentLogger, clock: systemClock },
  { intervalMs: 1_000 },
)
await sync.start()

let stopping: Promise<never> | undefined
function shutdown(code: number): Promise<never> {
  stopping ??= (async () => {
    try {
      await sync.stop()
      await host.stop()
      await db?.close()
      await rm(dir, { recursive: true, force: true })
    } finally {
      process.exit(code)
    }
  })()
  return stopping
}
process.on('SIGTERM', () => void shutdown(0))
process.on('SIGINT', () => void shutdown(0))

async function run(c: Command): Promise<Record<string, unknown>> {
  switch (c.op) {
    case 'addr':
      return { peerId: host.peerId.toString(), addrs: host.getMultiaddrs().map(String) }
    case 'dial': {
      const conn = await withDeadline(c.timeoutMs, undefined, (signal) =>
        host.dial(multiaddr(c.addr), { signal }),
      )
      return { remote: conn.remoteAddr.toString() }
    }
    case 'append': {
      const t = performance.now()
      const last = await appendBurst(c.count, c.burst, (i) => log.append(c.log, 'claim', { i }))
      return { last: last.id, ms: Math.round(performance.now() - t) }
    }
    case 'heads':
      return { heads: await log.heads(c.log), verifications: entryVerificationCount() }
    case 'count':
      return { entries: (await log.entries(c.log)).length }
    case 'exit':
      return {}
  }
}

say({
  ok: true,
  hello: true,
  peerId: host.peerId.toString(),
  addrs: host.getMultiaddrs().map(String),
})
// Commands run one at a time, in order: each answer line matches the command before it.
for await (const line of createInterface({
  input: process.stdin,
  crlfDelay: Number.POSITIVE_INFINITY,
})) {
  if (line.trim() === '') continue
  try {
    const c = parseCommand(line)
    say({ ok: true, ...(await run(c)) })
    if (c.op === 'exit') break
  } catch (err) {
    say({
      ok: false,
      error: isRmeshError(err)
        ? { code: err.code, message: err.message }
        : { code: 'ERR_COMMAND', message: String(err) },
    })
  }
}
await shutdown(0)
