// From traced dependencies to a job's file tree (src/service/dependencies.ts): the layout
// under the project root, files outside it, symlinks that climb out, and what is remapped.
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createBlockStore } from '../../../src/blobs/block-store.js'
import type { DependencyRef } from '../../../src/engines/types.js'
import { describeMissing, importTree, planTree } from '../../../src/service/dependencies.js'
import { isRmeshError } from '../../../src/util/errors.js'
import { silentLogger } from '../../../src/util/logger.js'
import { makeTempDir } from '../../helpers/daemons.js'

let base = ''
const put = async (rel: string, text = rel) => {
  const p = join(base, rel)
  await mkdir(dirname(p), { recursive: true })
  await writeFile(p, text)
  return p
}
const ref = (o: Partial<DependencyRef> & Pick<DependencyRef, 'path' | 'absPath' | 'key'>) =>
  ({
    kind: 'image',
    name: o.path,
    owner: null,
    mode: 'file',
    files: [o.absPath],
    missing: [],
    ...o,
  }) as DependencyRef

describe('planTree', () => {
  beforeEach(async () => {
    base = await makeTempDir('rmesh-deps-')
  })
  afterEach(async () => {
    await rm(base, { recursive: true, force: true })
  })

  it('keeps files under the root in place and maps the rest under _external', async () => {
    const root = join(base, 'proj')
    const scene = await put('proj/shots/a.blend')
    await put('proj/tex/in.png')
    await put('outside/abs.png')
    await put('proj/seq/f_0001.png')
    await put('proj/seq/f_0002.png')
    await put('elsewhere/real.png')
    await mkdir(join(base, 'proj/tex'), { recursive: true })
    // A symlink that climbs out of the root, and one that stays inside it.
    await symlink('../../elsewhere/real.png', join(base, 'proj/tex/out.png'))
    await symlink('in.png', join(base, 'proj/tex/alias.png'))
    const refs: DependencyRef[] = [
      ref({ path: '//../tex/in.png', absPath: join(root, 'tex/in.png'), key: 'tex/in.png' }),
      ref({
        path: join(base, 'outside/abs.png'),
        absPath: join(base, 'outside/abs.png'),
        key: join(base, 'outside/abs.png'),
      }),
      ref({
        path: join(root, 'tex/in.png'),
        absPath: join(root, 'tex/in.png'),
        key: join(root, 'tex/in.png'),
      }),
      ref({
        path: '//../../outside/abs.png',
        absPath: join(base, 'outside/abs.png'),
        key: '../outside/abs.png',
      }),
      ref({ path: '//../tex/out.png', absPath: join(root, 'tex/out.png'), key: 'tex/out.png' }),
      ref({
        path: '//../tex/alias.png',
        absPath: join(root, 'tex/alias.png'),
        key: 'tex/alias.png',
      }),
      ref({
        path: '//../seq/f_0001.png',
        absPath: join(root, 'seq/f_0001.png'),
        key: 'seq/f_0001.png',
        mode: 'sequence',
        files: [join(root, 'seq/f_0001.png'), join(root, 'seq/f_0002.png')],
      }),
    ]
    const plan = await planTree({ scene, refs }, { scenePath: scene, root })
    const byTree = Object.fromEntries(plan.files.map((f) => [f.treePath, f]))
    expect(Object.keys(byTree).sort()).toEqual(
      [
        'shots/a.blend',
        'tex/in.png',
        'tex/alias.png',
        'seq/f_0001.png',
        'seq/f_0002.png',
        `_external${base}/outside/abs.png`,
        `_external${base}/elsewhere/real.png`,
      ].sort(),
    )
    expect(plan.scene).toBe('shots/a.blend')
    expect(byTree['tex/alias.png'].external).toBe(false)
    expect(byTree[`_external${base}/elsewhere/real.png`].external).toBe(true)
    expect(Object.fromEntries(plan.remap.map((r) => [r.from, r.to]))).toEqual({
      [join(base, 'outside/abs.png')]: `_external${base}/outside/abs.png`,
      [join(root, 'tex/in.png')]: 'tex/in.png',
      '../outside/abs.png': `_external${base}/outside/abs.png`,
      'tex/out.png': `_external${base}/elsewhere/real.png`,
    })

    // Imported once: the same content under two paths is one manifest's blocks.
    const blocks = createBlockStore(
      { root: join(base, 'store'), logger: silentLogger },
      { fsync: false },
    )
    const t = await importTree(plan, blocks)
    expect(t.tree.files).toHaveLength(7)
    const again = await importTree(plan, blocks)
    expect(again.treeManifest).toBe(t.treeManifest)
  })

  it('a resubmit takes unchanged files from the import cache; a changed file is read again', async () => {
    const root = join(base, 'proj')
    const scene = await put('proj/a.blend')
    const tex = await put('proj/t.png', 'v1')
    const refs = [ref({ path: '//t.png', absPath: tex, key: 't.png' })]
    const plan = await planTree({ scene, refs }, { scenePath: scene, root })
    const blocks = createBlockStore(
      { root: join(base, 'store'), logger: silentLogger },
      { fsync: false },
    )
    const map = new Map<string, string>()
    let hits = 0
    const cache = {
      get: async (k: string) => {
        const v = map.get(k)
        if (v) hits++
        return v
      },
      put: async (k: string, v: string) => void map.set(k, v),
    }
    const first = await importTree(plan, blocks, undefined, cache)
    expect(hits).toBe(0)
    const second = await importTree(plan, blocks, undefined, cache)
    expect(hits).toBe(2)
    expect(second.treeManifest).toBe(first.treeManifest)
    await writeFile(tex, 'v2, longer')
    const third = await importTree(
      await planTree({ scene, refs }, { scenePath: scene, root }),
      blocks,
      undefined,
      cache,
    )
    expect(hits).toBe(3)
    expect(third.treeManifest).not.toBe(first.treeManifest)
  })

  it('reports what is missing with where Blender looked, and refuses a scene outside the root', async () => {
    const root = join(base, 'proj')
    const scene = await put('proj/a.blend')
    const refs = [
      ref({
        path: '//gone.png',
        absPath: join(root, 'gone.png'),
        key: 'gone.png',
        files: [],
        missing: [join(root, 'gone.png')],
      }),
    ]
    const plan = await planTree({ scene, refs }, { scenePath: scene, root })
    expect(plan.missing).toEqual([
      {
        kind: 'image',
        name: '//gone.png',
        owner: null,
        path: '//gone.png',
        lookedAt: join(root, 'gone.png'),
      },
    ])
    expect(describeMissing(plan.missing)).toContain(`Blender looked at ${join(root, 'gone.png')}`)
    const other = await put('other/b.blend')
    await expect(planTree({ scene: other, refs: [] }, { scenePath: other, root })).rejects.toThrow(
      /not inside the project root/,
    )
  })

  it('refuses a file whose name cannot travel', async () => {
    const root = join(base, 'proj')
    const scene = await put('proj/a.blend')
    const weird = await put('outside/back\\slash.png')
    let caught: unknown
    try {
      await planTree(
        { scene, refs: [ref({ path: weird, absPath: weird, key: weird })] },
        { scenePath: scene, root },
      )
    } catch (err) {
      caught = err
    }
    expect(isRmeshError(caught, 'ERR_INVALID_INPUT')).toBe(true)
  })
})
