// The file tree document (protocols/file-tree.md): vectors, validation, hostile documents.
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  decodeFileTree,
  encodeFileTree,
  externalTreePath,
  type FileTree,
  MAX_TREE_BYTES,
  MAX_TREE_FILES,
  safeJoin,
  treePathProblem,
} from '../../../src/blobs/file-tree.js'
import { cidToBytes } from '../../../src/blobs/manifest.js'
import { fromHex, toHex } from '../../../src/util/bytes.js'
import { encode } from '../../../src/util/cbor.js'
import { isRmeshError } from '../../../src/util/errors.js'
import { cidOf } from '../../../src/util/hash.js'

const VECTORS = join(import.meta.dirname, '../../../protocols/vectors/blocks/file-tree.json')
const m = (s: string) => cidOf(new TextEncoder().encode(s))

function sampleTree(): FileTree {
  return {
    scene: 'shots/sh010.blend',
    files: [
      { path: 'tex/wood.1001.png', manifest: m('wood'), size: 1000 },
      { path: 'shots/sh010.blend', manifest: m('scene'), size: 5000 },
      { path: '_external/mnt/lib/rock.png', manifest: m('rock'), size: 300 },
    ],
    remap: [{ from: '/mnt/lib/rock.png', to: '_external/mnt/lib/rock.png' }],
    missing: [],
  }
}

/** A tree document as a peer could send it: any shape, not checked by encodeFileTree. */
function rawTree(over: Record<string, unknown>): Uint8Array {
  return encode({
    v: 1,
    scene: 'a.blend',
    files: [['a.blend', cidToBytes(m('a')), 1]],
    remap: [],
    missing: [],
    ...over,
  })
}

describe('file tree', () => {
  it('matches the recorded vector in protocols/vectors/blocks/file-tree.json', async () => {
    const bytes = encodeFileTree(sampleTree())
    const computed = {
      description:
        'A tree of 3 files (scene, a UDIM tile, an external texture) and one remap; see protocols/file-tree.md',
      tree: decodeFileTree(bytes),
      treeHex: toHex(bytes),
      treeCid: cidOf(bytes),
    }
    if (process.env.RMESH_WRITE_VECTORS === '1')
      await writeFile(VECTORS, `${JSON.stringify(computed, null, 2)}\n`)
    const recorded = JSON.parse(await readFile(VECTORS, 'utf8'))
    expect(computed).toEqual(recorded)
    expect(decodeFileTree(fromHex(recorded.treeHex))).toEqual(recorded.tree)
    // Canonical: the same tree in another order encodes to the same bytes.
    const t = sampleTree()
    t.files.reverse()
    expect(toHex(encodeFileTree(t))).toBe(recorded.treeHex)
  })

  it('accepts safe paths and names the problem of unsafe ones', () => {
    for (const ok of ['a', 'a/b.png', 'tex/wood.<UDIM>.png', '_external/mnt/x y/é.exr', 'a..b/c'])
      expect(treePathProblem(ok), ok).toBeUndefined()
    for (const bad of [
      '',
      '/etc/passwd',
      '../x',
      'a/../../x',
      'a/./b',
      'a//b',
      'a/',
      '.',
      '..',
      'a\\..\\b',
      'a\u0000b',
      'a\nb',
      'x'.repeat(256),
      `${'d/'.repeat(64)}f`,
      `${'abcdefgh/'.repeat(120)}f`,
      5,
      null,
    ])
      expect(treePathProblem(bad), JSON.stringify(bad)).toBeDefined()
    expect(externalTreePath('/mnt/lib/../x.png')).toBe('_external/mnt/x.png')
    expect(() => externalTreePath('rel/x.png')).toThrow()
    expect(safeJoin('/w/tree', 'a/b.png')).toBe('/w/tree/a/b.png')
    expect(() => safeJoin('/w/tree', '../b.png')).toThrow()
    expect(() => safeJoin('/w/tree', '/etc/passwd')).toThrow()
  })

  it('refuses hostile and garbage documents with typed errors, before any path is used', () => {
    const cid = cidToBytes(m('x'))
    const hostile: Uint8Array[] = [
      rawTree({ files: [['../../etc/cron.d/x', cid, 1]], scene: '../../etc/cron.d/x' }),
      rawTree({
        files: [
          ['a.blend', cid, 1],
          ['/etc/passwd', cid, 1],
        ],
      }),
      rawTree({
        files: [
          ['a.blend', cid, 1],
          ['x/../../../y', cid, 1],
        ],
      }),
      rawTree({
        files: [
          ['a.blend', cid, 1],
          ['x\u0000y', cid, 1],
        ],
      }),
      rawTree({
        files: [
          ['a.blend', cid, 1],
          ['x\\..\\y', cid, 1],
        ],
      }),
      rawTree({
        files: [
          ['a.blend', cid, 1],
          ['a.blend', cid, 2],
        ],
      }),
      rawTree({
        files: [
          ['a.blend', cid, 1],
          ['d', cid, 1],
          ['d/e', cid, 1],
        ],
      }),
      rawTree({ files: [['a.blend', cid, -1]] }),
      rawTree({ files: [['a.blend', new Uint8Array(36), 1]] }),
      rawTree({ files: [['a.blend', cid]] }),
      rawTree({ files: [] }),
      rawTree({ scene: 'other.blend' }),
      rawTree({ remap: [['/x', '../escape']] }),
      rawTree({ remap: [['/x', '/abs']] }),
      rawTree({
        remap: [
          ['/x', 'a'],
          ['/x', 'b'],
        ],
      }),
      rawTree({ remap: [['', 'a']] }),
      rawTree({ remap: [['x'.repeat(5000), 'a']] }),
      rawTree({ missing: [7] }),
      rawTree({ missing: 'x' }),
      rawTree({ v: 2 }),
      rawTree({ files: 'a.blend' }),
      rawTree({ files: new Array(MAX_TREE_FILES + 1).fill(['a', cid, 1]) }),
      encode([1, 2, 3]),
      encode(null),
      new Uint8Array([0xff, 0x00]),
      new Uint8Array(MAX_TREE_BYTES + 1),
    ]
    for (const [i, bytes] of hostile.entries()) {
      let caught: unknown
      try {
        decodeFileTree(bytes)
      } catch (err) {
        caught = err
      }
      expect(isRmeshError(caught), `document ${i}: ${String(caught)}`).toBe(true)
    }
  })

  it('encodes only valid trees', () => {
    const t = sampleTree()
    expect(() => encodeFileTree({ ...t, scene: 'nope.blend' })).toThrow()
    expect(() =>
      encodeFileTree({ ...t, files: [...t.files, { path: '../x', manifest: m('x'), size: 1 }] }),
    ).toThrow()
  })
})
