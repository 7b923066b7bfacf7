/**
 * Log benchmarks: append+sign and verify+join throughput, fold time for 100,000 entries,
 * and the time for 10,000 entries appended on one node to converge on 5 nodes over
 * loopback (real libp2p, memory stores so the disk does not dominate).
 * Run on its own with `node dist/bench/log.js` after `npm run build`.
 */
import { isMain, runStandalone } from './common.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { signerFor } from '../src/auth/identity.js'
import { createEntry, entryVerificationCount, forgetVerifiedEntries } from '../src/log/entry.js'
import { createLogManager, type LogManager } from '../src/log/log.js'
import { createMemoryLogStore } from '../src/log/store.js'
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

  out.push(await converge(convergeCount, convergeNodes))
  return out
}

async function converge(count: number, nodes: number): Promise<BenchResult> {
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
    const verifiedBefore = entryVerificationCount()
    let last: LogEntry | undefined
    for (let i = 0; i < count; i++) {
      last = await peers[0].log.append(log, 'claim', { i })
      // A daemon appends from events, between network reads; on a memory store a tight
      // loop of awaits never yields, and nothing would go out until the last append.
      if (i % 64 === 63) await new Promise((r) => setImmediate(r))
    }
    const deadline = Date.now() + 120_000
    for (;;) {
      const done = await Promise.all(
        peers.map(async (p) => (await p.log.heads(log))[0] === last!.id),
      )
      if (done.every(Boolean)) break
      if (Date.now() > deadline) throw new Error('convergence bench did not converge in 120 s')
      await new Promise((r) => setTimeout(r, 20))
    }
    return {
      name: 'log.converge',
      value: Math.round(performance.now() - t),
      unit: 'ms',
      note: `${count} entries appended on one node until all ${nodes} nodes hold them (loopback, gossip + anti-entropy); ${entryVerificationCount() - verifiedBefore} signature checks`,
    }
  } finally {
    for (const p of peers) {
      await p.sync.stop()
      await p.host.stop()
    }
  }
}

if (isMain(import.meta.url)) runStandalone(() => benchLog())
