// A job's file tree on a renderer (src/worker/tree.ts): laid out by hard links from the
// block store; a hostile tree document writes nothing, inside the work folder or outside.
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { type BlockStore, createBlockStore } from '../../../src/blobs/block-store.js'
import type { BlockExchange } from '../../../src/blobs/exchange.js'
import { encodeFileTree } from '../../../src/blobs/file-tree.js'
import { cidToBytes, encodeManifest } from '../../../src/blobs/manifest.js'
import { cidOf } from '../../../src/util/hash.js'
import type { ProviderIndex } from '../../../src/blobs/providers.js'
import type { AnnounceBody } from '../../../src/jobs/entries.js'
import { encode } from '../../../src/util/cbor.js'
import { isRmeshError } from '../../../src/util/errors.js'
import { silentLogger } from '../../../src/util/logger.js'
import { createTreeLayout } from '../../../src/worker/tree.js'
import { makeTempDir } from '../../helpers/daemons.js'
import { announceBody } from '../jobs/fixtures.js'

const never = () => new AbortController().signal

describe('file tree layout on a renderer', () => {
  let base = ''
  let blocks: BlockStore
  let workRoot = ''
  let asked = 0
  const exchange = {
    fetchManifest: async () => {
      asked++
      throw new Error('nothing to fetch in this test')
    },
    requestOne: async () => {
      asked++
      return null
    },
  } as unknown as BlockExchange
  const providers = {
    providersOf: () => [],
    findProviders: async () => [],
  } as unknown as ProviderIndex

  beforeEach(async () => {
    base = await makeTempDir('rmesh-tree-')
    blocks = createBlockStore(
      { root: join(base, 'blocks'), logger: silentLogger },
      { fsync: false },
    )
    workRoot = join(base, 'node', 'work')
    await mkdir(workRoot, { recursive: true })
    asked = 0
  })
  afterEach(async () => {
    await rm(base, { recursive: true, force: true })
  })

  const layout = () =>
    createTreeLayout({ blocks, exchange, providers, workRoot, logger: silentLogger })

  const jobWith = (tree: string, count: number, scene: string): AnnounceBody =>
    announceBody({
      engine: { name: 'blender' },
      scene: { manifest: scene, name: 'scene.blend', size: 1 },
      files: { tree, count, size: 1 },
    })

  it('lays out the tree by hard links, writes the remap, prunes the cache after', async () => {
    const scene = await blocks.importBytes('scene.blend', new TextEncoder().encode('BLENDER…'))
    const tex = await blocks.importBytes('a.png', new TextEncoder().encode('pixels'))
    const bytes = encodeFileTree({
      scene: 'shots/scene.blend',
      files: [
        { path: 'shots/scene.blend', manifest: scene.manifest, size: scene.size },
        { path: 'tex/a.png', manifest: tex.manifest, size: tex.size },
        { path: '_external/mnt/a.png', manifest: tex.manifest, size: tex.size },
      ],
      remap: [{ from: '/mnt/a.png', to: '_external/mnt/a.png' }],
      missing: [],
    })
    const tree = await blocks.importBytes('files.rmesh-tree', bytes)
    const pinned: string[][] = []
    const t = layout()
    const r = await t.layout(
      'abcdefgh',
      jobWith(tree.manifest, 3, scene.manifest),
      async (ms) => void pinned.push(ms),
      never(),
    )
    const root = join(workRoot, 'abcdefgh', 'tree')
    expect(r.scenePath).toBe(join(root, 'shots/scene.blend'))
    expect(r.allowMissing).toBe(false)
    expect(await readFile(join(root, 'tex/a.png'), 'utf8')).toBe('pixels')
    // One exported copy for both paths and any later job: hard links to the cache.
    expect((await stat(join(root, 'tex/a.png'))).nlink).toBe(3)
    expect(JSON.parse(await readFile(r.remapFile!, 'utf8'))).toEqual({
      root,
      remap: { '/mnt/a.png': '_external/mnt/a.png' },
    })
    expect(pinned[0]).toHaveLength(3)
    expect(asked).toBe(0)
    await rm(join(workRoot, 'abcdefgh'), { recursive: true })
    await t.prune()
    expect(await readdir(join(workRoot, '.files'))).toEqual([])
  })

  it('refuses a hostile tree document and writes nothing anywhere', async () => {
    const scene = await blocks.importBytes('scene.blend', new TextEncoder().encode('BLENDER'))
    const sc = cidToBytes(scene.manifest)
    const docs: { doc: unknown; count: number }[] = [
      {
        doc: {
          v: 1,
          scene: '../../../evil.blend',
          files: [['../../../evil.blend', sc, 7]],
          remap: [],
          missing: [],
        },
        count: 1,
      },
      {
        doc: {
          v: 1,
          scene: 'a.blend',
          files: [
            ['a.blend', sc, 7],
            ['/tmp/evil', sc, 7],
          ],
          remap: [],
          missing: [],
        },
        count: 2,
      },
      {
        doc: {
          v: 1,
          scene: 'a.blend',
          files: [
            ['a.blend', sc, 7],
            ['x/../../../../evil', sc, 7],
          ],
          remap: [],
          missing: [],
        },
        count: 2,
      },
      {
        doc: {
          v: 1,
          scene: 'a.blend',
          files: [['a.blend', sc, 7]],
          remap: [['/x', '../../evil']],
          missing: [],
        },
        count: 1,
      },
      // Valid documents that disagree with the announce.
      {
        doc: { v: 1, scene: 'a.blend', files: [['a.blend', sc, 7]], remap: [], missing: [] },
        count: 2,
      },
      {
        doc: {
          v: 1,
          scene: 'a.blend',
          files: [['a.blend', cidToBytes(scene.manifest.replace(/.$/, 'a')), 7]],
          remap: [],
          missing: [],
        },
        count: 1,
      },
      { doc: 'garbage', count: 1 },
    ]
    for (const [i, { doc, count }] of docs.entries()) {
      const tree = await blocks.importBytes('files.rmesh-tree', encode(doc))
      let caught: unknown
      try {
        await layout().layout(
          'abcdefgh',
          jobWith(tree.manifest, count, scene.manifest),
          async () => {},
          never(),
        )
      } catch (err) {
        caught = err
      }
      expect(isRmeshError(caught), `document ${i}: ${String(caught)}`).toBe(true)
    }
    expect(await readdir(join(base, 'node'))).toEqual(['work'])
    expect(await readdir(workRoot)).toEqual([])
    expect((await readdir(base)).sort()).toEqual(['blocks', 'node'])
  })

  it("a tree nobody serves defers the chunk; a peer's oversized tree is refused before its blocks", async () => {
    const scene = await blocks.importBytes('scene.blend', new TextEncoder().encode('BLENDER'))
    const missing = cidOf(new TextEncoder().encode('nobody has this'))
    await expect(
      layout().layout('abcdefgh', jobWith(missing, 1, scene.manifest), async () => {}, never()),
    ).rejects.toMatchObject({ code: 'ERR_NO_PROVIDERS' })
    // A manifest (only it, 9 blocks) announcing a 9 MiB tree, served by a peer.
    const big = encodeManifest({
      name: 'files.rmesh-tree',
      size: 9 << 20,
      blockSize: 1 << 20,
      blocks: Array.from({ length: 9 }, (_, i) => cidOf(new Uint8Array([i]))),
    })
    let fetched = 0
    const peerExchange = {
      requestOne: async () => big.bytes,
      fetchManifest: async () => {
        fetched++
      },
    } as unknown as BlockExchange
    const t = createTreeLayout({
      blocks,
      exchange: peerExchange,
      providers,
      workRoot,
      logger: silentLogger,
    })
    await expect(
      t.layout('abcdefgh', jobWith(big.cid, 1, scene.manifest), async () => {}, never()),
    ).rejects.toThrow(/over/)
    expect(fetched).toBe(0)
  })

  it('refuses a tree document over the size bound', async () => {
    const scene = await blocks.importBytes('scene.blend', new TextEncoder().encode('BLENDER'))
    const big = await blocks.importBytes('files.rmesh-tree', new Uint8Array((8 << 20) + 1))
    await expect(
      layout().layout(
        'abcdefgh',
        jobWith(big.manifest, 1, scene.manifest),
        async () => {},
        never(),
      ),
    ).rejects.toThrow(/over/)
  })
})
