/** Real libp2p hosts on loopback with a block store and exchange each, in temp dirs. */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import {
  type BlockStore,
  type BlockStoreOptions,
  createBlockStore,
} from '../../../src/blobs/block-store.js'
import {
  type BlockExchange,
  type BlockExchangeOptions,
  createBlockExchange,
} from '../../../src/blobs/exchange.js'
import { BLOCKS_PROTOCOL, decodeRequest, encodeResponseParts } from '../../../src/blobs/wire.js'
import { createHost, type RmeshLibp2p } from '../../../src/net/host.js'
import { silentLogger } from '../../../src/util/logger.js'

export interface TestNode {
  dir: string
  host: RmeshLibp2p
  store: BlockStore
  exchange: BlockExchange
  id: string
}

export class Cluster {
  nodes: TestNode[] = []
  dirs: string[] = []

  async tempDir(): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), 'rmesh-blobs-'))
    this.dirs.push(d)
    return d
  }

  async node(
    opts: {
      store?: BlockStoreOptions
      exchange?: BlockExchangeOptions
      dir?: string
      serve?: boolean
    } = {},
  ): Promise<TestNode> {
    const dir = opts.dir ?? (await this.tempDir())
    const host = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      mdns: false,
    })
    const store = createBlockStore(
      { root: dir, logger: silentLogger },
      { fsync: false, ...opts.store },
    )
    const exchange = createBlockExchange(
      { libp2p: host, store, logger: silentLogger },
      opts.exchange,
    )
    if (opts.serve !== false) await exchange.start()
    const node = { dir, host, store, exchange, id: host.peerId.toString() }
    // Full mesh, as the daemon's dialer would make it: providers are named by peer id only.
    for (const other of this.nodes) await this.connect(node, other)
    this.nodes.push(node)
    return node
  }

  async connect(a: TestNode, b: TestNode): Promise<void> {
    await a.host.dial(b.host.getMultiaddrs()[0])
  }

  async stop(node: TestNode): Promise<void> {
    await node.exchange.stop().catch(() => undefined)
    await Promise.resolve(node.host.stop()).catch(() => undefined)
    this.nodes = this.nodes.filter((n) => n !== node)
  }

  async close(): Promise<void> {
    await Promise.all(
      this.nodes.splice(0).map(async (n) => {
        await n.exchange.stop().catch(() => undefined)
        await Promise.resolve(n.host.stop()).catch(() => undefined)
      }),
    )
    await Promise.all(this.dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
  }
}

/** Deterministic pseudo-random bytes (xorshift), so every block differs. */
export function patternBytes(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size)
  let x = seed >>> 0 || 1
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
    if (i + 1 < size) out[i + 1] = (x >>> 8) & 0xff
    if (i + 2 < size) out[i + 2] = (x >>> 16) & 0xff
    if (i + 3 < size) out[i + 3] = (x >>> 24) & 0xff
  }
  return out
}

/**
 * A misbehaving server on `host`, speaking the real framing. `answer` decides, for each
 * want, what to send: a list of frames (cid + bytes, or null for not-have), or 'hangup'.
 */
export async function misbehave(
  host: RmeshLibp2p,
  store: BlockStore,
  answer: (
    cid: string,
    block: Uint8Array | null,
    n: number,
  ) => Array<[string, Uint8Array | null]> | 'hangup',
): Promise<void> {
  let n = 0
  await host.handle(
    BLOCKS_PROTOCOL,
    async (stream: Stream, connection: Connection) => {
      const lp = lpStream(stream)
      try {
        while (true) {
          const wants = decodeRequest((await lp.read()).subarray())
          for (const cid of wants) {
            const block = await store
              .getBlock(cid)
              .catch(() => store.getManifestBytes(cid).catch(() => null))
            const out = answer(cid, block, n++)
            if (out === 'hangup') {
              await connection.close().catch(() => undefined)
              return
            }
            for (const [c, b] of out)
              await lp.write(new Uint8ArrayList(...encodeResponseParts(c, b)))
          }
        }
      } catch {
        stream.abort(new Error('done'))
      }
    },
    { force: true },
  )
}
