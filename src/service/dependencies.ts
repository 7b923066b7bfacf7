/**
 * From a scene's traced dependencies to its job's file tree, at submit: where each file
 * goes in the tree, which references the renderer must remap, what is missing; then the
 * files imported into the block store and the tree document stored as a file of its own.
 *
 * Layout (protocols/file-tree.md): a file under the project root keeps its path relative
 * to the root (so the scene's relative paths resolve on the renderer as they do here);
 * a file outside the root, or one reached through a symlink that climbs out of the root,
 * goes to `_external/<its absolute path>` and the reference is remapped there. Paths
 * outside the root are lexical (as Blender resolves them), so files next to an external
 * library stay next to it; an escaping symlink is followed to its real path.
 *
 * Invariants:
 *  - every tree path is valid (file-tree.ts) before anything is imported;
 *  - two different files never take the same tree path (refused with both names);
 *  - a file's blocks are stored once whatever the number of jobs using it (the block store
 *    skips blocks it holds), and the tree's bytes depend only on the project's content.
 */
import { realpath, stat } from 'node:fs/promises'
import { basename, dirname, relative, sep } from 'node:path'
import type { BlockStore } from '../blobs/block-store.js'
import {
  encodeFileTree,
  externalTreePath,
  type FileTree,
  insideRoot,
  treePathProblem,
} from '../blobs/file-tree.js'
import type { PlanFile, SubmitPlan } from '../api/types.js'
import type { DependencyRef, DependencyTrace } from '../engines/types.js'
import { InvalidInputError, RmeshError } from '../util/errors.js'

export interface PlannedFile {
  treePath: string
  /** The file read at submit, as Blender resolves it. */
  source: string
  size: number
  /** Outside the project root (or reached through a symlink that leaves it). */
  external: boolean
  /** Indexes of the references that use it. */
  refs: number[]
}

export interface MissingFile {
  kind: string
  name: string
  /** The library that names it, as the scene names that library; null: the scene. */
  owner: string | null
  /** The path as the scene names it. */
  path: string
  /** Where Blender looked. */
  lookedAt: string
}

export interface TreePlan {
  root: string
  /** Tree path of the scene. */
  scene: string
  files: PlannedFile[]
  remap: { from: string; to: string }[]
  missing: MissingFile[]
  refs: DependencyRef[]
}

const joinTree = (dir: string, name: string) => (dir === '' ? name : `${dir}/${name}`)

function checkTreePath(path: string, source: string): string {
  const problem = treePathProblem(path)
  if (problem)
    throw new InvalidInputError(
      `${source} cannot travel with the job: its path ${problem}; rename it or pack the scene`,
      { details: { path: source } },
    )
  return path
}

/** Where every dependency goes in the tree, and what the renderer remaps. */
export async function planTree(
  trace: DependencyTrace,
  o: { scenePath: string; root: string },
): Promise<TreePlan> {
  const root = o.root
  const rootReal = await realpath(root)
  const realOf = (p: string) => realpath(p).catch(() => p)
  const underRealRoot = (r: string) => r === rootReal || insideRoot(rootReal, r) !== undefined

  const placeFile = async (f: string): Promise<{ tree: string; external: boolean }> => {
    const lexical = insideRoot(root, f)
    if (lexical === undefined) return { tree: externalTreePath(f), external: true }
    const real = await realOf(f)
    return underRealRoot(real)
      ? { tree: lexical, external: false }
      : { tree: externalTreePath(real), external: true }
  }
  const placeDir = async (d: string): Promise<{ tree: string; external: boolean }> => {
    const lexical = d === root ? '' : insideRoot(root, d)
    if (lexical === undefined) return { tree: externalTreePath(d), external: true }
    const real = await realOf(d)
    return underRealRoot(real)
      ? { tree: lexical, external: false }
      : { tree: externalTreePath(real), external: true }
  }

  const files = new Map<string, PlannedFile & { real: string }>()
  const addFile = async (treePath: string, source: string, external: boolean, ref: number) => {
    checkTreePath(treePath, source)
    const real = await realOf(source)
    const prev = files.get(treePath)
    if (prev) {
      if (prev.real !== real)
        throw new InvalidInputError(
          `${prev.source} and ${source} would both be ${treePath} in the job's files; rename one`,
        )
      if (!prev.refs.includes(ref)) prev.refs.push(ref)
      return
    }
    let size: number
    try {
      size = (await stat(source)).size
    } catch (err) {
      throw new RmeshError('ERR_SCENE_MISSING_ASSET', `${source} vanished while submitting`, {
        cause: err,
      })
    }
    files.set(treePath, { treePath, source, size, external, refs: [ref], real })
  }

  const sceneTree = insideRoot(root, o.scenePath)
  if (sceneTree === undefined)
    throw new InvalidInputError(
      `the scene ${o.scenePath} is not inside the project root ${root}; choose a --project-root that holds it`,
      { field: 'projectRoot' },
    )
  await addFile(sceneTree, o.scenePath, false, -1)

  const remap = new Map<string, string>()
  const missing: MissingFile[] = []
  for (const [i, ref] of trace.refs.entries()) {
    for (const m of ref.missing)
      missing.push({
        kind: ref.kind,
        name: ref.name,
        owner: ref.owner,
        path: ref.path,
        lookedAt: m,
      })
    let target: string | undefined
    if (ref.mode === 'file') {
      for (const f of ref.files) {
        const p = await placeFile(f)
        await addFile(p.tree, f, p.external, i)
        target = p.tree
      }
    } else if (ref.mode === 'dir') {
      const d = await placeDir(ref.absPath)
      target = d.tree
      for (const f of ref.files) {
        const rel = relative(ref.absPath, f).split(sep).join('/')
        await addFile(joinTree(d.tree, rel), f, d.external, i)
      }
    } else {
      // Sequences, UDIM tiles, a strip's files: one folder, names kept (Blender finds the
      // other frames or tiles from the one name it stores).
      for (const f of ref.files) {
        const d = await placeDir(dirname(f))
        await addFile(joinTree(d.tree, basename(f)), f, d.external, i)
      }
      const base =
        ref.mode === 'files' ? await placeDir(ref.absPath) : await placeDir(dirname(ref.absPath))
      target = ref.mode === 'files' ? base.tree : joinTree(base.tree, basename(ref.absPath))
    }
    // Without a remap the renderer looks at `key` in the tree; remap only where that differs.
    if (target === undefined || target === '' || target === ref.key) continue
    if (!remap.has(ref.key)) remap.set(ref.key, checkTreePath(target, ref.absPath))
  }
  return {
    root,
    scene: sceneTree,
    files: [...files.values()]
      .map(({ real: _real, ...f }) => f)
      .sort((a, b) => (a.treePath < b.treePath ? -1 : 1)),
    remap: [...remap].map(([from, to]) => ({ from, to })),
    missing,
    refs: trace.refs,
  }
}

/** How a list of missing files reads in an error: each, where Blender looked, who names it. */
export function describeMissing(missing: readonly MissingFile[], max = 20): string {
  const lines = missing
    .slice(0, max)
    .map(
      (m) =>
        `  ${m.path} (${m.kind} ${JSON.stringify(m.name)}${m.owner ? ` in ${m.owner}` : ''}): Blender looked at ${m.lookedAt}`,
    )
  if (missing.length > max) lines.push(`  … and ${missing.length - max} more`)
  return lines.join('\n')
}

/**
 * What a file's manifest was when it was last read, by its identity on disk (device, inode,
 * size, modification and change times in nanoseconds, the name it is stored under): a
 * resubmit reuses it instead of reading and hashing the file again, as git's index does.
 * A hit counts only while the store still holds that manifest whole.
 */
export interface ImportCache {
  get(key: string): Promise<string | undefined>
  put(key: string, manifest: string): Promise<void>
}

async function cacheKey(path: string, name: string, blockSize: number): Promise<string> {
  const st = await stat(path, { bigint: true })
  return [st.dev, st.ino, st.size, st.mtimeNs, st.ctimeNs, blockSize, name].join(':')
}

/** The manifest of `path` from the cache, if it still describes the file and is held whole. */
async function cachedManifest(
  cache: ImportCache | undefined,
  blocks: BlockStore,
  key: string,
): Promise<{ manifest: string; size: number } | undefined> {
  const manifest = await cache?.get(key).catch(() => undefined)
  if (!manifest) return undefined
  try {
    if ((await blocks.missingBlocks(manifest)).length > 0) return undefined
    return { manifest, size: (await blocks.getManifest(manifest)).size }
  } catch {
    return undefined
  }
}

export interface ImportedTree {
  tree: FileTree
  /** Manifest of the tree document. */
  treeManifest: string
  /** Manifest of every file, the scene's included. */
  manifests: string[]
  sceneManifest: string
  sceneSize: number
  size: number
}

/** Imports every planned file (blocks already held are not written again) and the tree. */
export async function importTree(
  plan: TreePlan,
  blocks: BlockStore,
  signal?: AbortSignal,
  cache?: ImportCache,
): Promise<ImportedTree> {
  const entries: FileTree['files'] = new Array(plan.files.length)
  let next = 0
  const worker = async () => {
    while (next < plan.files.length) {
      const i = next++
      const f = plan.files[i]
      const name = basename(f.treePath)
      const key = await cacheKey(f.source, name, blocks.blockSize)
      const hit = await cachedManifest(cache, blocks, key)
      if (hit) {
        entries[i] = { path: f.treePath, manifest: hit.manifest, size: hit.size }
        continue
      }
      const r = await blocks.importFile(f.source, { name, signal })
      // Keyed by the identity read before the import: a file changed meanwhile misses next time.
      await cache?.put(key, r.manifest).catch(() => {})
      entries[i] = { path: f.treePath, manifest: r.manifest, size: r.size }
    }
  }
  await Promise.all([worker(), worker()])
  const tree: FileTree = {
    scene: plan.scene,
    files: entries,
    remap: plan.remap,
    missing: [...new Set(plan.missing.map((m) => m.path))].slice(0, 1_000),
  }
  const bytes = encodeFileTree(tree)
  const stored = await blocks.importBytes('files.rmesh-tree', bytes)
  const scene = entries.find((e) => e.path === plan.scene)!
  return {
    tree,
    treeManifest: stored.manifest,
    manifests: entries.map((e) => e.manifest),
    sceneManifest: scene.manifest,
    sceneSize: scene.size,
    size: entries.reduce((n, e) => n + e.size, 0),
  }
}

/** `submit --dry-run`: each file with its size, whether it is stored here, who else holds it. */
export async function describePlan(
  plan: TreePlan,
  o: {
    blocks: BlockStore
    /** Other peers known to hold a manifest. */
    holders(manifest: string): number
    scenePath: string
    allowMissing: boolean
    signal?: AbortSignal
    cache?: ImportCache
  },
): Promise<SubmitPlan> {
  const files: PlanFile[] = []
  const totals = { files: 0, bytes: 0, newBytes: 0, unsharedBytes: 0 }
  for (const f of plan.files) {
    const name = basename(f.treePath)
    const key = await cacheKey(f.source, name, o.blocks.blockSize)
    const { manifest, size } =
      (await cachedManifest(o.cache, o.blocks, key)) ??
      (await o.blocks.hashFile(f.source, { name, signal: o.signal }))
    const stored =
      (await o.blocks.hasManifest(manifest)) &&
      (await o.blocks.missingBlocks(manifest)).length === 0
    const holders = o.holders(manifest)
    const ref = plan.refs[f.refs[0]]
    files.push({
      path: ref?.path ?? basename(o.scenePath),
      kind: ref?.kind ?? 'scene',
      treePath: f.treePath,
      source: f.source,
      size,
      external: f.external,
      stored,
      holders,
    })
    totals.files++
    totals.bytes += size
    if (!stored) totals.newBytes += size
    if (holders === 0) totals.unsharedBytes += size
  }
  return {
    scenePath: o.scenePath,
    projectRoot: plan.root,
    files,
    missing: plan.missing,
    remapped: plan.remap.length,
    totals,
    allowMissing: o.allowMissing,
  }
}
