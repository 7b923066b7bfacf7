import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { lpStream } from '@libp2p/utils'
import { afterEach, describe, expect, it } from 'vitest'
import type { BlockStore } from '../../../src/blobs/block-store.js'
import { safeFileName } from '../../../src/blobs/safe-name.js'
import { BLOCKS_PROTOCOL } from '../../../src/blobs/wire.js'
import { isRmeshError } from '../../../src/util/errors.js'
import { Cluster, misbehave, patternBytes } from './helpers.js'

const BLOCK = 64 * 1024
const FILE = 3 * 1024 * 1024 + 12_345 // 49 blocks, the last one short

describe('block exchange over real libp2p hosts', () => {
  const cluster = new Cluster()
  afterEach(() => cluster.close())

  async function seeded(count: number, data = patternBytes(FILE)) {
    const seeds = []
    for (let i = 0; i < count; i++) {
      const n = await cluster.node({ store: { blockSize: BLOCK } })
      seeds.push(n)
    }
    const results = await Promise.all(seeds.map((s) => s.store.importBytes('scene.blend', data)))
    return { seeds, manifest: results[0].manifest, data }
  }

  async function exportBytes(node: { store: BlockStore }, manifest: string): Promise<Uint8Array> {
    const out = join(await cluster.tempDir(), 'out.bin')
    await node.store.exportFile(manifest, out)
    return new Uint8Array(await readFile(out))
  }

  it('fetches a file from two providers in parallel, each serving a share', async () => {
    const { seeds, manifest, data } = await seeded(2)
    const me = await cluster.node({ store: { blockSize: BLOCK } })
    const progress: number[] = []
    await me.exchange.fetchManifest(manifest, {
      providers: seeds.map((s) => s.id),
      onProgress: (p) => progress.push(p.blocksDone),
    })
    expect(await me.store.missingBlocks(manifest)).toEqual([])
    expect(await exportBytes(me, manifest)).toEqual(data)
    for (const s of seeds) expect(s.exchange.stats().servedBlocks).toBeGreaterThan(0)
    expect(progress.at(-1)).toBe(49)
    // A second fetch of what is held asks nobody for anything.
    await me.exchange.fetchManifest(manifest, { providers: seeds.map((s) => s.id) })
    expect(me.exchange.stats().fetchedBlocks).toBe(49)
  })

  it('drops a corrupted block, penalises its sender and completes from the honest peer', async () => {
    const { seeds, manifest, data } = await seeded(2)
    const [honest, bad] = seeds
    await bad.exchange.stop()
    await misbehave(bad.host, bad.store, (cid, block) => {
      if (!block) return [[cid, null]]
      const evil = new Uint8Array(block)
      evil[0] ^= 0xff
      return [[cid, evil]]
    })
    const me = await cluster.node({ store: { blockSize: BLOCK } })
    // The manifest comes from the honest peer: ask it first for that, then both for blocks.
    await me.store.putManifest(await honest.store.getManifestBytes(manifest))
    await me.exchange.fetchManifest(manifest, { providers: [bad.id, honest.id] })
    expect(await exportBytes(me, manifest)).toEqual(data)
    const st = me.exchange.stats()
    expect(st.badBlocks).toBeGreaterThanOrEqual(1)
    expect(st.fetchedFrom[bad.id] ?? 0).toBe(0)
    expect(st.fetchedFrom[honest.id]).toBe(49)
  })

  it('survives a provider that disconnects mid-transfer', async () => {
    const { seeds, manifest, data } = await seeded(2)
    const [honest, flaky] = seeds
    await flaky.exchange.stop()
    await misbehave(flaky.host, flaky.store, (cid, block, n) => (n < 3 ? [[cid, block]] : 'hangup'))
    const me = await cluster.node({ store: { blockSize: BLOCK } })
    await me.store.putManifest(await honest.store.getManifestBytes(manifest))
    await me.exchange.fetchManifest(manifest, { providers: [flaky.id, honest.id] })
    expect(await exportBytes(me, manifest)).toEqual(data)
  })

  it('penalises a provider that sends more than asked', async () => {
    const { seeds, manifest, data } = await seeded(2)
    const [honest, pushy] = seeds
    await pushy.exchange.stop()
    const m = await pushy.store.getManifest(manifest)
    await misbehave(pushy.host, pushy.store, (cid, block) => {
      // Answer, then push an unrequested (valid) block as well.
      const extra = m.blocks.find((b) => b !== cid)!
      return [
        [cid, block],
        [extra, null],
      ]
    })
    const me = await cluster.node({ store: { blockSize: BLOCK } })
    await me.store.putManifest(await honest.store.getManifestBytes(manifest))
    await me.exchange.fetchManifest(manifest, { providers: [pushy.id, honest.id] })
    expect(await exportBytes(me, manifest)).toEqual(data)
    expect(me.exchange.stats().fetchedFrom[pushy.id] ?? 0).toBeLessThanOrEqual(1)
  })

  it('never writes outside the folder the caller chose, whatever the manifest name', async () => {
    const seed = await cluster.node({ store: { blockSize: BLOCK } })
    const data = patternBytes(100_000, 7)
    const { manifest } = await seed.store.importBytes('../../../../tmp/evil\u0000.sh', data)
    const me = await cluster.node({ store: { blockSize: BLOCK } })
    await me.exchange.fetchManifest(manifest, { providers: [seed.id] })
    const outDir = await cluster.tempDir()
    const parent = join(outDir, '..')
    const before = await readdir(parent)
    const name = safeFileName((await me.store.getManifest(manifest)).name)
    expect(name).toBe('evil.sh')
    await me.store.exportFile(manifest, join(outDir, name))
    expect(await readdir(outDir)).toEqual(['evil.sh'])
    // Other processes share the parent (/tmp): only a new entry named after the file counts.
    const added = (await readdir(parent)).filter((n) => !before.includes(n))
    expect(added.filter((n) => n.includes('evil'))).toEqual([])
  })

  it('a full disk ends the fetch with ERR_DISK_FULL, keeps what was stored, and resumes later', async () => {
    const { seeds, manifest, data } = await seeded(1)
    let blocksWritten = 0
    let full = true
    const dir = await cluster.tempDir()
    const me = await cluster.node({
      dir,
      store: {
        blockSize: BLOCK,
        writeHook: ({ kind }) => {
          if (kind !== 'block') return
          if (full && blocksWritten >= 10) {
            throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' })
          }
          blocksWritten++
        },
      },
    })
    const err = await me.exchange
      .fetchManifest(manifest, { providers: [seeds[0].id] })
      .catch((e) => e)
    expect(isRmeshError(err, 'ERR_DISK_FULL')).toBe(true)
    const missing = await me.store.missingBlocks(manifest)
    expect(missing.length).toBe(49 - 10)
    // Stored blocks are whole and verified; no temp files are left behind.
    const held = (await me.store.getManifest(manifest)).blocks.filter((b) => !missing.includes(b))
    for (const b of held) await me.store.getBlock(b)
    expect(await readdir(join(dir, 'tmp'))).toEqual([])
    // The node is fine: once space is back, the fetch resumes and asks only for the rest.
    full = false
    const before = me.exchange.stats().fetchedBlocks
    await me.exchange.fetchManifest(manifest, { providers: [seeds[0].id] })
    expect(me.exchange.stats().fetchedBlocks - before).toBe(39)
    expect(await exportBytes(me, manifest)).toEqual(data)
  })

  it('resumes an interrupted fetch after a restart without refetching what is stored', async () => {
    const { seeds, manifest, data } = await seeded(2)
    const dir = await cluster.tempDir()
    const first = await cluster.node({ dir, store: { blockSize: BLOCK }, exchange: { window: 2 } })
    const ctl = new AbortController()
    const err = await first.exchange
      .fetchManifest(manifest, {
        providers: seeds.map((s) => s.id),
        signal: ctl.signal,
        onProgress: (p) => {
          if (p.blocksDone >= 20) ctl.abort()
        },
      })
      .catch((e) => e)
    expect(isRmeshError(err, 'ERR_ABORTED')).toBe(true)
    await cluster.stop(first)
    const held = 49 - (await first.store.missingBlocks(manifest)).length
    expect(held).toBeGreaterThanOrEqual(20)
    const second = await cluster.node({ dir, store: { blockSize: BLOCK } })
    await second.exchange.fetchManifest(manifest, { providers: seeds.map((s) => s.id) })
    expect(second.exchange.stats().fetchedBlocks).toBe(49 - held)
    expect(await exportBytes(second, manifest)).toEqual(data)
  })

  it('fails with ERR_NO_PROVIDERS when nobody has the blocks', async () => {
    const { seeds, manifest } = await seeded(1)
    const holder = seeds[0]
    const me = await cluster.node({
      store: { blockSize: BLOCK },
      exchange: { stallTimeoutMs: 500 },
    })
    // The holder has the manifest but lost a block.
    const m = await holder.store.getManifest(manifest)
    await holder.store.unpin('x').catch(() => undefined)
    const { rm } = await import('node:fs/promises')
    const victim = m.blocks[5]
    await rm(join(holder.dir, 'blocks', victim.slice(-2), victim))
    const err = await me.exchange
      .fetchManifest(manifest, { providers: [holder.id] })
      .catch((e) => e)
    expect(isRmeshError(err, 'ERR_NO_PROVIDERS')).toBe(true)
    expect(await me.store.missingBlocks(manifest)).toEqual([victim])
  })

  it('answers garbage with a closed stream and keeps serving', async () => {
    const { seeds, manifest } = await seeded(1)
    const me = await cluster.node({ store: { blockSize: BLOCK } })
    await cluster.connect(me, seeds[0])
    for (const garbage of [new Uint8Array([1, 2, 3]), new TextEncoder().encode('{"wants": 5}')]) {
      const stream = await me.host.dialProtocol(seeds[0].host.peerId, BLOCKS_PROTOCOL)
      const lp = lpStream(stream)
      await lp.write(garbage)
      await expect(lp.read({ signal: AbortSignal.timeout(5_000) })).rejects.toThrow()
    }
    // A frame length over the request limit is refused before it is read.
    const stream = await me.host.dialProtocol(seeds[0].host.peerId, BLOCKS_PROTOCOL)
    const lp = lpStream(stream)
    await lp.write(new Uint8Array(100_000))
    await expect(lp.read({ signal: AbortSignal.timeout(5_000) })).rejects.toThrow()
    await me.exchange.fetchManifest(manifest, { providers: [seeds[0].id] })
    expect(await me.store.missingBlocks(manifest)).toEqual([])
  })

  it('serves only admitted peers when isAdmitted is given', async () => {
    const { createBlockExchange } = await import('../../../src/blobs/exchange.js')
    const { silentLogger } = await import('../../../src/util/logger.js')
    const { seeds, manifest } = await seeded(1)
    await seeds[0].exchange.stop()
    const gated = createBlockExchange(
      {
        libp2p: seeds[0].host,
        store: seeds[0].store,
        logger: silentLogger,
        isAdmitted: () => false,
      },
      {},
    )
    await gated.start()
    const me = await cluster.node({ store: { blockSize: BLOCK } })
    const err = await me.exchange
      .fetchManifest(manifest, { providers: [seeds[0].id] })
      .catch((e) => e)
    expect(isRmeshError(err, 'ERR_NO_PROVIDERS')).toBe(true)
    expect(gated.stats().servedBlocks).toBe(0)
    await gated.stop()
  })
})
