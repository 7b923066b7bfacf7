/**
 * File transfer benchmark, measured in one run on this machine:
 *  1. one N MiB transfer between two libp2p hosts (noise + yamux over TCP on 127.0.0.1,
 *     fsync per block) against a plain node:net copy of the same bytes into a file
 *     (ratio = rmesh throughput / TCP throughput; aim >= 0.25), with a profile: how long
 *     hashing and storing the same blocks take locally, without any network;
 *  2. 1 submitter -> 7 peers: the swarm (everyone fetches from everyone who has blocks)
 *     against the submitter sending to each in turn (ratio = swarm time / serial time;
 *     aim <= 0.4).
 *
 * All hosts share one machine, so in (2) every node's upload is capped at `uploadMiBps`
 * (a token bucket in the exchange): that models what a studio LAN has and one loopback
 * interface has not, one NIC per machine. Without the cap both sides are bound by the
 * same CPUs and the comparison says nothing about the submitter's uplink.
 *
 * The serial run is bound by the submitter's cap only if one transfer can go faster than
 * the cap on this machine: its "delivered" rate says whether it was (CPU and fsync latency
 * under load can hold it below the cap, which flatters the ratio).
 *
 * Run: `npm run build && node dist/bench/transfer.js [sizeMiB] [swarmMiB]`.
 */
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdtemp, open, rm } from 'node:fs/promises'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { isMain, runStandalone } from './common.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { type BlockStore, createBlockStore } from '../src/blobs/block-store.js'
import { type BlockExchange, createBlockExchange } from '../src/blobs/exchange.js'
import { createHost, type RmeshLibp2p } from '../src/net/host.js'
import { cidOf } from '../src/util/hash.js'
import { silentLogger } from '../src/util/logger.js'

export interface BenchResult {
  name: string
  value: number
  unit: string
  note?: string
}

export interface TransferBenchOptions {
  /** Size of the two-host transfer (default 256 MiB). */
  sizeMiB?: number
  /** Size of the swarm scene (default 256 MiB). */
  swarmMiB?: number
  peers?: number
  /** Per-node upload cap in the swarm comparison (default 25 MiB/s, ~ a 200 Mbit/s link). */
  uploadMiBps?: number
  log?: (line: string) => void
}

const MiB = 1 << 20

interface Node {
  host: RmeshLibp2p
  store: BlockStore
  exchange: BlockExchange
  id: string
}

async function makeNode(dir: string, uploadBytesPerSec?: number): Promise<Node> {
  const host = await createHost({
    privateKey: await generateKeyPair('Ed25519'),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    mdns: false,
  })
  const store = createBlockStore({ root: dir, logger: silentLogger })
  const exchange = createBlockExchange(
    { libp2p: host, store, logger: silentLogger },
    { uploadBytesPerSec, maxInboundStreams: 64 },
  )
  await exchange.start()
  return { host, store, exchange, id: host.peerId.toString() }
}

async function dialWithRetry(a: Node, b: Node): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await a.host.dial(b.host.getMultiaddrs()[0])
      return
    } catch (err) {
      if (attempt >= 5) throw err
      await new Promise((r) => setTimeout(r, 200 * attempt))
    }
  }
}

/** A file whose 1 MiB blocks all differ, written without holding it in memory. */
async function makeFile(path: string, size: number, seed: number): Promise<void> {
  const fh = await open(path, 'w')
  const buf = Buffer.alloc(MiB)
  for (let i = 0; i < buf.length; i += 4) buf.writeUInt32LE((i * 2654435761 + seed) >>> 0, i)
  try {
    for (let off = 0; off < size; off += MiB) {
      buf.writeUInt32LE(off / MiB, 0)
      buf.writeUInt32LE(seed, 4)
      await fh.write(buf, 0, Math.min(MiB, size - off))
    }
  } finally {
    await fh.close()
  }
}

async function tcpCopy(src: string, dest: string): Promise<number> {
  const server = createServer((sock) => {
    pipeline(createReadStream(src, { highWaterMark: MiB }), sock).catch(() => undefined)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as { port: number }).port
  const t0 = performance.now()
  const out = createWriteStream(dest)
  await pipeline(connect(port, '127.0.0.1'), out)
  const fh = await open(dest, 'r+')
  await fh.sync()
  await fh.close()
  const ms = performance.now() - t0
  server.close()
  return ms
}

export async function benchTransfer(opts: TransferBenchOptions = {}): Promise<BenchResult[]> {
  const sizeMiB = opts.sizeMiB ?? 256
  const swarmMiB = opts.swarmMiB ?? 256
  const peerCount = opts.peers ?? 7
  const uploadMiBps = opts.uploadMiBps ?? 25
  const log = opts.log ?? (() => undefined)
  const root = await mkdtemp(join(tmpdir(), 'rmesh-bench-transfer-'))
  const results: BenchResult[] = []
  const nodes: Node[] = []
  try {
    // 1. Two hosts vs plain TCP.
    const src = join(root, 'scene.bin')
    await makeFile(src, sizeMiB * MiB, 1)
    const a = await makeNode(join(root, 'a'))
    const b = await makeNode(join(root, 'b'))
    nodes.push(a, b)
    await b.host.dial(a.host.getMultiaddrs()[0])
    const { manifest } = await a.store.importFile(src)
    let t0 = performance.now()
    await b.exchange.fetchManifest(manifest, { providers: [a.id] })
    const rmeshMs = performance.now() - t0
    const tcpMs = await tcpCopy(src, join(root, 'tcp-copy.bin'))
    const rmeshMBps = sizeMiB / (rmeshMs / 1000)
    const tcpMBps = sizeMiB / (tcpMs / 1000)
    log(
      `transfer ${sizeMiB} MiB: rmesh ${rmeshMBps.toFixed(0)} MiB/s, tcp ${tcpMBps.toFixed(0)} MiB/s`,
    )
    results.push(
      {
        name: 'transfer.rmesh',
        value: round(rmeshMBps),
        unit: 'MiB/s',
        note: `${sizeMiB} MiB, 2 hosts`,
      },
      {
        name: 'transfer.tcp',
        value: round(tcpMBps),
        unit: 'MiB/s',
        note: 'node:net copy into a file',
      },
      {
        name: 'transfer.ratio',
        value: round(rmeshMBps / tcpMBps, 3),
        unit: 'x',
        note: 'rmesh / plain TCP throughput (aim >= 0.25)',
      },
    )
    // Profile: what the same blocks cost with no network at all.
    const blocks = (await a.store.getManifest(manifest)).blocks
    t0 = performance.now()
    for (const cid of blocks) cidOf(await a.store.getBlock(cid))
    const readHashMs = performance.now() - t0
    const c = createBlockStore({ root: join(root, 'c'), logger: silentLogger })
    t0 = performance.now()
    for (const cid of blocks) await c.putBlock(cid, await a.store.getBlock(cid))
    const localMs = performance.now() - t0
    results.push(
      {
        name: 'transfer.profile.read_verify',
        value: round(sizeMiB / (readHashMs / 1000)),
        unit: 'MiB/s',
        note: 'serve side: read + SHA-256 verify',
      },
      {
        name: 'transfer.profile.local_copy',
        value: round(sizeMiB / (localMs / 1000)),
        unit: 'MiB/s',
        note: 'read + verify + verify + fsync write, no network: the rest is noise + yamux',
      },
    )
    await rm(join(root, 'c'), { recursive: true, force: true })
    await rm(join(root, 'tcp-copy.bin'), { force: true })
    for (const n of nodes.splice(0)) {
      await n.exchange.stop()
      await n.host.stop()
    }
    await rm(join(root, 'a'), { recursive: true, force: true })
    await rm(join(root, 'b'), { recursive: true, force: true })

    // 2. Swarm vs serial, every node's upload capped.
    const rate = uploadMiBps * MiB
    const swarmSrc = join(root, 'swarm.bin')
    await makeFile(swarmSrc, swarmMiB * MiB, 2)
    const runDistribution = async (mode: 'serial' | 'swarm'): Promise<number> => {
      const submitter = await makeNode(join(root, `${mode}-s`), rate)
      const peers: Node[] = []
      for (let i = 0; i < peerCount; i++)
        peers.push(await makeNode(join(root, `${mode}-${i}`), rate))
      const all = [submitter, ...peers]
      nodes.push(...all)
      for (let i = 0; i < all.length; i++) {
        for (let j = i + 1; j < all.length; j++) await dialWithRetry(all[i], all[j])
      }
      const { manifest: m } = await submitter.store.importFile(swarmSrc)
      const cpu0 = process.cpuUsage()
      const start = performance.now()
      if (mode === 'serial') {
        for (const p of peers) await p.exchange.fetchManifest(m, { providers: [submitter.id] })
      } else {
        await Promise.all(
          peers.map((p) => p.exchange.fetchManifest(m, { providers: all.map((n) => n.id) })),
        )
      }
      const ms = performance.now() - start
      const cpu = process.cpuUsage(cpu0)
      const cpuS = (cpu.user + cpu.system) / 1e6
      const fromSubmitter = submitter.exchange.stats().servedBytes / MiB
      log(
        `${mode}: ${(ms / 1000).toFixed(2)} s, submitter uploaded ${fromSubmitter.toFixed(0)} MiB`,
      )
      results.push({
        name: `swarm.${mode}.submitter_upload`,
        value: round(fromSubmitter),
        unit: 'MiB',
        note: `${round(fromSubmitter / swarmMiB, 2)} copies of the scene; ${round((peerCount * swarmMiB) / (ms / 1000))} MiB/s delivered in total (cap ${uploadMiBps} MiB/s per node)`,
      })
      // All nodes share this process: CPU-s per wall-s below ~1 means the machine's other
      // load starved it, and the time measures the machine more than the transfer.
      results.push({
        name: `swarm.${mode}.cpu`,
        value: round(cpuS, 1),
        unit: 'CPU-s',
        note: `${round(cpuS / (ms / 1000), 2)} CPU-s per wall-s (main thread + libuv pool)`,
      })
      for (const n of nodes.splice(0)) {
        await n.exchange.stop()
        await n.host.stop()
      }
      await Promise.all(
        ['s', ...peers.map((_, i) => String(i))].map((x) =>
          rm(join(root, `${mode}-${x}`), { recursive: true, force: true }),
        ),
      )
      return ms
    }
    const serialMs = await runDistribution('serial')
    const swarmMs = await runDistribution('swarm')
    results.push(
      {
        name: 'swarm.serial',
        value: round(serialMs / 1000, 2),
        unit: 's',
        note: `${swarmMiB} MiB to ${peerCount} peers one after another, uploads capped at ${uploadMiBps} MiB/s`,
      },
      {
        name: 'swarm.swarm',
        value: round(swarmMs / 1000, 2),
        unit: 's',
        note: 'everyone fetches from everyone',
      },
      {
        name: 'swarm.ratio',
        value: round(swarmMs / serialMs, 3),
        unit: 'x',
        note: 'swarm time / serial time (aim <= 0.4)',
      },
    )
    return results
  } finally {
    for (const n of nodes) {
      await n.exchange.stop().catch(() => undefined)
      await Promise.resolve(n.host.stop()).catch(() => undefined)
    }
    await rm(root, { recursive: true, force: true })
  }
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

if (isMain(import.meta.url)) {
  const [size, swarm] = process.argv.slice(2).map(Number)
  runStandalone(() =>
    benchTransfer({
      sizeMiB: size || undefined,
      swarmMiB: swarm || undefined,
      log: (l) => console.error(l),
    }),
  )
}
