/**
 * One peer of the WAN bench (bench/wan.ts), run inside a network namespace: a libp2p host
 * as the daemon builds it (relay transport, DCUtR, AutoNAT), a block store and the block
 * exchange, driven by JSON lines on stdin; answers one JSON line per command on stdout.
 * Bench only: no admission (every peer is the bench's own).
 */
import { createInterface } from 'node:readline'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { createBlockStore } from '../src/blobs/block-store.js'
import { createBlockExchange } from '../src/blobs/exchange.js'
import { createHost } from '../src/net/host.js'
import { silentLogger } from '../src/util/logger.js'

interface PeerArgs {
  dir: string
  listen: string[]
  announce?: string[]
  relayService?: 'on' | 'off'
}

const args = JSON.parse(process.argv[2] ?? '{}') as PeerArgs
const host = await createHost({
  privateKey: await generateKeyPair('Ed25519'),
  listen: args.listen,
  announce: args.announce,
  mdns: false,
  relayService: args.relayService ?? 'off',
  relayReservations: 0,
})
const store = createBlockStore({ root: args.dir, logger: silentLogger })
const exchange = createBlockExchange(
  { libp2p: host, store, logger: silentLogger },
  { maxInboundStreams: 64 },
)
await exchange.start()
const say = (x: unknown) => process.stdout.write(`${JSON.stringify(x)}\n`)
say({ peerId: host.peerId.toString(), addrs: host.getMultiaddrs().map(String) })

const kinds = (peer: string) =>
  host
    .getConnections(peerIdFromString(peer))
    .map((c) => (c.remoteAddr.toString().includes('/p2p-circuit') ? 'relayed' : 'direct'))

for await (const line of createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line) as Record<string, string>
  try {
    if (cmd.op === 'import') say({ manifest: (await store.importFile(cmd.path)).manifest })
    else if (cmd.op === 'dial') {
      const c = await host.dial(multiaddr(cmd.addr), { signal: AbortSignal.timeout(15_000) })
      say({ remote: c.remoteAddr.toString() })
    } else if (cmd.op === 'kinds') say({ kinds: kinds(cmd.peer) })
    else if (cmd.op === 'addrs') say({ addrs: host.getMultiaddrs().map(String) })
    else if (cmd.op === 'fetch') {
      const t0 = performance.now()
      await exchange.fetchManifest(cmd.manifest, { providers: [cmd.provider] })
      say({ ms: performance.now() - t0, kinds: kinds(cmd.provider) })
    } else if (cmd.op === 'stop') break
  } catch (err) {
    say({ error: String(err) })
  }
}
await exchange.stop()
await host.stop()
process.exit(0)
