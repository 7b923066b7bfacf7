import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { createBlockStore, removeStaleExports } from '../../../src/blobs/block-store.js'
import { encodeManifest } from '../../../src/blobs/manifest.js'
import { encode } from '../../../src/util/cbor.js'
import { isRmeshError } from '../../../src/util/errors.js'
import { cidOf } from '../../../src/util/hash.js'
import { silentLogger } from '../../../src/util/logger.js'

const BS = 4096
const dirs: string[] = []
async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'rmesh-store-'))
  dirs.push(d)
  return d
}
function bytes(n: number, seed = 3): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff
  return out
}
const err = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e) => e,
  )

afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})

describe('block store', () => {
  it('removes only the temporary files a killed export left behind', async () => {
    const dir = await tmp()
    const keep = ['0001.png', '.hidden', '.0002.png.rmesh-zz.tmp', 'notes.tmp']
    const stale = ['.0001.png.rmesh-0123456789ab.tmp', '.a b.exr.rmesh-ffffffffffff.tmp']
    for (const n of [...keep, ...stale]) await writeFile(join(dir, n), 'x')
    expect(await removeStaleExports(dir)).toBe(2)
    expect((await readdir(dir)).sort()).toEqual([...keep].sort())
    expect(await removeStaleExports(join(dir, 'missing'))).toBe(0)
  })

  it('imports a file in blocks and exports the same bytes', async () => {
    const root = await tmp()
    const store = createBlockStore({ root, logger: silentLogger }, { blockSize: BS })
    const data = bytes(BS * 5 + 17)
    const src = join(root, 'in.bin')
    await writeFile(src, data)
    const seen: number[] = []
    const r = await store.importFile(src, { onProgress: (p) => seen.push(p.bytes) })
    expect(r).toMatchObject({ size: data.byteLength, name: 'in.bin', blocks: 6 })
    expect(seen.at(-1)).toBe(data.byteLength)
    const m = await store.getManifest(r.manifest)
    expect(m.blocks).toHaveLength(6)
    expect(await store.missingBlocks(r.manifest)).toEqual([])
    const out = join(root, 'out.bin')
    await store.exportFile(r.manifest, out)
    expect(new Uint8Array(await readFile(out))).toEqual(data)
    // importBytes of the same content yields the same manifest id.
    expect((await store.importBytes('in.bin', data)).manifest).toBe(r.manifest)
  })

  it('hashFile gives the manifest importFile stores, writing nothing; pinMany pins at once', async () => {
    const root = await tmp()
    const store = createBlockStore({ root, logger: silentLogger }, { blockSize: BS })
    const src = join(root, 'tex.png')
    await writeFile(src, bytes(BS * 2 + 5))
    const h = await store.hashFile(src, { name: 'tex.png' })
    expect((await store.stats()).blocks).toBe(0)
    expect(await store.hasManifest(h.manifest)).toBe(false)
    const r = await store.importFile(src, { name: 'tex.png' })
    expect(h).toEqual({ manifest: r.manifest, size: r.size })
    const other = await store.importBytes('x', bytes(10, 9))
    await store.pinMany('job-files/abcdefgh', [r.manifest, other.manifest, r.manifest])
    expect((await store.pinsOf('job-files/abcdefgh')).sort()).toEqual(
      [r.manifest, other.manifest].sort(),
    )
    expect((await store.gc({ graceMs: 0 })).blocksRemoved).toBe(0)
    expect(() => store.pinMany('o', ['not-a-cid'])).toThrow(/not a CID/)
  })

  it('handles empty files and deduplicates equal blocks', async () => {
    const root = await tmp()
    const store = createBlockStore({ root, logger: silentLogger }, { blockSize: BS })
    const empty = await store.importBytes('empty', new Uint8Array(0))
    expect(empty.blocks).toBe(0)
    await store.exportFile(empty.manifest, join(root, 'e'))
    expect((await readFile(join(root, 'e'))).byteLength).toBe(0)
    const zeros = await store.importBytes('z', new Uint8Array(BS * 4))
    expect(zeros.blocks).toBe(4)
    expect((await store.stats()).blocks).toBe(1)
  })

  it('putBlock rejects bytes that do not match the CID', async () => {
    const store = createBlockStore({ root: await tmp(), logger: silentLogger }, { blockSize: BS })
    const good = bytes(100)
    const cid = cidOf(good)
    const e = await err(store.putBlock(cid, bytes(100, 9)))
    expect(isRmeshError(e, 'ERR_BLOCK_MISMATCH')).toBe(true)
    expect(await store.hasBlock(cid)).toBe(false)
    await store.putBlock(cid, good)
    expect(await store.getBlock(cid)).toEqual(good)
    expect(isRmeshError(await err(store.getBlock('not-a-cid')), 'ERR_INVALID_INPUT')).toBe(true)
    expect(isRmeshError(await err(store.getBlock(cidOf(bytes(5)))), 'ERR_NOT_FOUND')).toBe(true)
  })

  it('detects a block corrupted on disk, removes it and reports it missing', async () => {
    const root = await tmp()
    const store = createBlockStore({ root, logger: silentLogger }, { blockSize: BS })
    const r = await store.importBytes('f', bytes(BS * 2))
    const victim = (await store.getManifest(r.manifest)).blocks[1]
    await writeFile(join(root, 'blocks', victim.slice(-2), victim), bytes(BS, 42))
    expect(isRmeshError(await err(store.getBlock(victim)), 'ERR_BLOCK_CORRUPT')).toBe(true)
    expect(await store.missingBlocks(r.manifest)).toEqual([victim])
    const e = await err(store.exportFile(r.manifest, join(root, 'out')))
    expect(isRmeshError(e, 'ERR_NOT_FOUND')).toBe(true)
    expect((await readdir(root)).filter((f) => f.includes('out'))).toEqual([])
  })

  it('putManifest validates what it stores', async () => {
    const store = createBlockStore({ root: await tmp(), logger: silentLogger })
    const bad = [
      new Uint8Array([0xff, 0x00]),
      encode({ v: 2, name: 'x', size: 0, blockSize: BS, blocks: [] }),
      encode({ v: 1, name: 'x', size: 10, blockSize: BS, blocks: [] }),
      encode({ v: 1, name: 'x', size: 1, blockSize: BS, blocks: [new Uint8Array(36)] }),
      encode({ v: 1, name: 7, size: 0, blockSize: BS, blocks: [] }),
      encode({ v: 1, name: 'x', size: 0, blockSize: 1 << 24, blocks: [] }),
      encode([1, 2, 3]),
      new Uint8Array((1 << 20) + 1),
    ]
    for (const b of bad) {
      const e = await err(store.putManifest(b))
      expect(isRmeshError(e), String(e)).toBe(true)
    }
    const ok = encodeManifest({ name: 'n', size: 0, blockSize: BS, blocks: [] })
    expect(await store.putManifest(ok.bytes)).toBe(ok.cid)
  })

  it('turns ENOSPC into ERR_DISK_FULL and other write errors into ERR_STORE_WRITE', async () => {
    const root = await tmp()
    let code = 'ENOSPC'
    let fail = false
    const store = createBlockStore(
      { root, logger: silentLogger },
      {
        blockSize: BS,
        writeHook: () => {
          if (fail) throw Object.assign(new Error(code), { code })
        },
      },
    )
    const first = await store.importBytes('a', bytes(BS * 2, 1))
    fail = true
    expect(isRmeshError(await err(store.importBytes('b', bytes(BS * 2, 2))), 'ERR_DISK_FULL')).toBe(
      true,
    )
    code = 'EIO'
    expect(
      isRmeshError(await err(store.importBytes('b', bytes(BS * 2, 2))), 'ERR_STORE_WRITE'),
    ).toBe(true)
    code = 'ENOSPC'
    const e = await err(store.exportFile(first.manifest, join(root, 'out')))
    expect(isRmeshError(e, 'ERR_DISK_FULL')).toBe(true)
    expect(await readdir(join(root, 'tmp'))).toEqual([])
    fail = false
    expect(await store.missingBlocks(first.manifest)).toEqual([])
    expect((await store.stats()).manifests).toBe(1)
  })

  it('pins keep manifests and their blocks through gc; unpinned data goes', async () => {
    const store = createBlockStore({ root: await tmp(), logger: silentLogger }, { blockSize: BS })
    const a = await store.importBytes('a', bytes(BS * 3, 1))
    const b = await store.importBytes('b', bytes(BS * 3, 2))
    await store.pin('job-1', a.manifest)
    await store.pin('job-2', a.manifest)
    await store.pin('job-2', b.manifest)
    expect(await store.pinsOf('job-2')).toEqual([a.manifest, b.manifest].sort())
    expect((await store.pinnedByOwners('job-')).sort()).toEqual([a.manifest, b.manifest].sort())
    expect(await store.pinnedByOwners('job-1')).toEqual([a.manifest])
    expect(await store.pinnedByOwners('other/')).toEqual([])
    // Within the grace period nothing goes, pinned or not.
    await store.unpin('job-2')
    expect((await store.gc()).blocksRemoved).toBe(0)
    const r = await store.gc({ graceMs: -1000 })
    expect(r).toMatchObject({ blocksRemoved: 3, manifestsRemoved: 1 })
    expect(await store.missingBlocks(a.manifest)).toEqual([])
    expect(await store.hasManifest(b.manifest)).toBe(false)
    await store.unpin('job-1', a.manifest)
    await store.gc({ graceMs: -1000 })
    expect(await store.stats()).toEqual({ blocks: 0, blockBytes: 0, manifests: 0, pinOwners: 0 })
  })

  it('a stopped import leaves only complete blocks and no manifest', async () => {
    const root = await tmp()
    const store = createBlockStore({ root, logger: silentLogger }, { blockSize: BS })
    const src = join(root, 'in.bin')
    await writeFile(src, bytes(BS * 10))
    const ctl = new AbortController()
    const e = await err(
      store.importFile(src, {
        signal: ctl.signal,
        onProgress: (p) => p.bytes >= BS * 3 && ctl.abort(),
      }),
    )
    expect(isRmeshError(e, 'ERR_ABORTED')).toBe(true)
    expect(await store.stats()).toMatchObject({ blocks: 3, manifests: 0 })
  })
})
