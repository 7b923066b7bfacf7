/**
 * Beyond one LAN: one 64 MiB transfer (the block exchange, as the daemon runs it) over a
 * relayed connection and over one that DCUtR upgraded, against a direct one, in network
 * namespaces it creates (test/helpers/netns.ts: two NAT'd sites and an office relay on a
 * shared "internet" bridge; nothing leaves the lab).
 *  - direct: site A fetches from the office (plain TCP out through A's NAT);
 *  - relayed: site A fetches from a site-B machine behind NAT through the office relay;
 *  - hole-punched: site A fetches from a site-B machine whose router forwards its port
 *    (it announces that public address): A reaches it first through the relay, then DCUtR
 *    replaces the relayed connection with a direct one.
 * Ratios are throughput / direct throughput. No rate bound here (the daemon bounds bulk
 * files over relays to --relayed-upload-mibps, 4 MiB/s by default): this is what a relay
 * can carry. Needs root, ip netns and iptables; says why and records nothing otherwise.
 *
 * Run: `npm run build && node dist/bench/wan.js [sizeMiB]`.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface, type Interface } from 'node:readline'
import { createWanLab, WAN_PUBLIC_SUBNET, wanUnavailableReason } from '../test/helpers/netns.js'
import { isMain, round, runStandalone } from './common.js'
import type { BenchResult } from './transfer.js'

const MiB = 1 << 20

interface Peer {
  proc: ChildProcess
  lines: Interface
  peerId: string
  addrs: string[]
  ask(cmd: Record<string, unknown>): Promise<Record<string, unknown>>
}

async function startPeer(ns: string, args: Record<string, unknown>): Promise<Peer> {
  const script = join(import.meta.dirname, 'wan-peer.js')
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, script, JSON.stringify(args)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const lines = createInterface({ input: proc.stdout! })
  const queue: ((l: string) => void)[] = []
  lines.on('line', (l) => queue.shift()?.(l))
  const next = () =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`peer in ${ns} did not answer`)), 120_000)
      queue.push((l) => {
        clearTimeout(t)
        resolve(JSON.parse(l))
      })
    })
  const hello = await next()
  return {
    proc,
    lines,
    peerId: hello.peerId as string,
    addrs: hello.addrs as string[],
    async ask(cmd) {
      const answer = next()
      proc.stdin!.write(`${JSON.stringify(cmd)}\n`)
      const a = await answer
      if (a.error) throw new Error(`${ns}: ${cmd.op}: ${a.error}`)
      return a
    },
  }
}

async function makeFile(path: string, size: number, seed: number): Promise<void> {
  const fh = await open(path, 'w')
  const buf = Buffer.alloc(MiB)
  for (let off = 0; off < size; off += MiB) {
    for (let i = 0; i < buf.length; i += 4)
      buf.writeUInt32LE((Math.imul(off + i, 2654435761) + seed) >>> 0, i)
    await fh.write(buf, 0, Math.min(MiB, size - off))
  }
  await fh.close()
}

export async function benchWan(
  options: { sizeMiB?: number; log?: (l: string) => void } = {},
): Promise<BenchResult[]> {
  const sizeMiB = options.sizeMiB ?? 64
  const log = options.log ?? (() => {})
  const reason = wanUnavailableReason()
  if (reason) {
    log(`wan bench skipped: ${reason}`)
    return []
  }
  const root = await mkdtemp(join(tmpdir(), 'rmesh-bench-wan-'))
  const lab = createWanLab(`rb${process.pid % 10000}`)
  const peers: Peer[] = []
  try {
    lab.forward(1, 0, 4777)
    const officeAddr = `/ip4/${lab.office.addr}/tcp/4777`
    const office = await startPeer(lab.office.ns, {
      dir: join(root, 'office'),
      listen: [officeAddr],
      relayService: 'on',
    })
    peers.push(office)
    const relay = `${officeAddr}/p2p/${office.peerId}`
    const a = await startPeer(lab.sites[0][0].ns, {
      dir: join(root, 'a'),
      listen: [`/ip4/${lab.sites[0][0].addr}/tcp/4777`],
    })
    const natted = await startPeer(lab.sites[1][1].ns, {
      dir: join(root, 'b'),
      listen: [`/ip4/${lab.sites[1][1].addr}/tcp/4777`, `${relay}/p2p-circuit`],
    })
    const forwarded = await startPeer(lab.sites[1][0].ns, {
      dir: join(root, 'c'),
      listen: [`/ip4/${lab.sites[1][0].addr}/tcp/4777`, `${relay}/p2p-circuit`],
      announce: [`/ip4/${WAN_PUBLIC_SUBNET}.2/tcp/4777`],
    })
    peers.push(a, natted, forwarded)
    const size = sizeMiB * MiB
    const fetchFrom = async (p: Peer, seed: number, via: string, bytes = size) => {
      const path = join(root, `src-${seed}.bin`)
      await makeFile(path, bytes, seed)
      const { manifest } = await p.ask({ op: 'import', path })
      await a.ask({ op: 'dial', addr: via })
      // DCUtR runs right after the relayed connection opens: let it finish first.
      if (via.includes('/p2p-circuit')) await new Promise((r) => setTimeout(r, 4_000))
      const r = await a.ask({ op: 'fetch', manifest, provider: p.peerId })
      const mibps = bytes / MiB / ((r.ms as number) / 1000)
      log(`wan: ${via} → ${round(mibps, 1)} MiB/s over ${JSON.stringify(r.kinds)}`)
      return { mibps, kinds: r.kinds as string[] }
    }
    // A first, small transfer warms up each side's code paths (JIT) before anything is timed.
    await fetchFrom(office, 9, relay, 8 * MiB)
    const direct = await fetchFrom(office, 1, relay)
    const relayed = await fetchFrom(natted, 2, `${relay}/p2p-circuit/p2p/${natted.peerId}`)
    const punched = await fetchFrom(forwarded, 3, `${relay}/p2p-circuit/p2p/${forwarded.peerId}`)
    const note = (k: { kinds: string[] }) => `connection: ${k.kinds.join(', ') || 'none'}`
    return [
      { name: 'wan.direct', value: round(direct.mibps, 1), unit: 'MiB/s', note: note(direct) },
      { name: 'wan.relay', value: round(relayed.mibps, 1), unit: 'MiB/s', note: note(relayed) },
      { name: 'wan.dcutr', value: round(punched.mibps, 1), unit: 'MiB/s', note: note(punched) },
      {
        name: 'wan.relay.ratio',
        value: round(relayed.mibps / direct.mibps, 2),
        unit: 'x direct',
        note: `${sizeMiB} MiB through the office relay`,
      },
      {
        name: 'wan.dcutr.ratio',
        value: round(punched.mibps / direct.mibps, 2),
        unit: 'x direct',
        note: `${sizeMiB} MiB after DCUtR upgraded the relayed connection`,
      },
    ]
  } finally {
    for (const p of peers) {
      p.proc.stdin?.end(`${JSON.stringify({ op: 'stop' })}\n`)
      p.proc.kill('SIGKILL')
    }
    lab.destroy()
    await rm(root, { recursive: true, force: true })
  }
}

if (isMain(import.meta.url))
  runStandalone(() => benchWan({ sizeMiB: Number(process.argv[2]) || undefined, log: console.log }))
