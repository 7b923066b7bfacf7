import { lpStream } from '@libp2p/utils'
import { afterEach, describe, expect, it } from 'vitest'
import { bitfieldHas } from '../../../src/blobs/selection.js'
import { HAVE_PROTOCOL, decodeHaveBits, encodeHaveSubscribe } from '../../../src/blobs/wire.js'
import { Cluster, patternBytes } from './helpers.js'

const BLOCK = 64 * 1024
const BLOCKS = 64
const FILE = BLOCKS * BLOCK
// Every node's upload is capped, as one NIC per machine would cap it: without the cap all
// nodes share one event loop and the origin is no slower to ask than anyone else.
const UPLOAD = 4 * 1024 * 1024

describe('swarm: peers serve each other while they fetch', () => {
  const cluster = new Cluster()
  afterEach(() => cluster.close())

  it('4 peers fetch one file; the origin serves well under 4 copies of it', async () => {
    const opts = { store: { blockSize: BLOCK }, exchange: { uploadBytesPerSec: UPLOAD } }
    const origin = await cluster.node(opts)
    const data = patternBytes(FILE, 7)
    const { manifest } = await origin.store.importBytes('scene.blend', data)
    const peers = []
    for (let i = 0; i < 4; i++) peers.push(await cluster.node(opts))
    const everyone = [origin, ...peers].map((n) => n.id)
    await Promise.all(peers.map((p) => p.exchange.fetchManifest(manifest, { providers: everyone })))
    for (const p of peers) expect(await p.store.missingBlocks(manifest)).toEqual([])
    const servedByOrigin = origin.exchange.stats().servedBytes
    const servedByPeers = peers.reduce((a, p) => a + p.exchange.stats().servedBytes, 0)
    // Without swarming the origin sends 4 copies; with it, peers send much of it instead.
    // (Served bytes also count the small manifest, fetched once by each peer.)
    expect(servedByOrigin + servedByPeers).toBeGreaterThanOrEqual(4 * FILE)
    expect(servedByOrigin + servedByPeers).toBeLessThan(4 * FILE + 4 * BLOCK)
    console.log(`origin served ${(servedByOrigin / FILE).toFixed(2)} copies`)
    expect(servedByOrigin).toBeLessThan(2.5 * FILE)
    expect(servedByPeers).toBeGreaterThan(1.5 * FILE)
  })

  it('pushes a have-bitfield that grows as the holder stores blocks', async () => {
    const origin = await cluster.node({ store: { blockSize: BLOCK } })
    const { manifest } = await origin.store.importBytes('scene.blend', patternBytes(FILE, 9))
    const fetcher = await cluster.node({ store: { blockSize: BLOCK } })
    const watcher = await cluster.node({ store: { blockSize: BLOCK } })
    const stream = await watcher.host.dialProtocol(fetcher.host.peerId, HAVE_PROTOCOL)
    const lp = lpStream(stream)
    await lp.write(encodeHaveSubscribe(manifest))
    const read = async () =>
      decodeHaveBits((await lp.read({ signal: AbortSignal.timeout(10_000) })).subarray())
    // Not held yet: an empty bitfield, then the full one once the fetch has stored it all.
    expect((await read()).length).toBe(0)
    await fetcher.exchange.fetchManifest(manifest, { providers: [origin.id] })
    let bits = await read()
    while (!Array.from({ length: BLOCKS }, (_, i) => i).every((i) => bitfieldHas(bits, i))) {
      bits = await read()
    }
    expect(bits.length).toBe(BLOCKS / 8)
    await stream.close()
  })
})
