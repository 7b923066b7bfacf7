/**
 * A job's file tree on a renderer: fetch the tree document and every file the node lacks
 * (only missing blocks travel, so files another job brought are not sent again), then lay
 * the tree out in the job's work folder from the block store: each file exported once into
 * a node-wide cache (`<workRoot>/.files/<manifest>`) and hard-linked into every job's tree
 * that uses it (copied where a link is refused).
 *
 * Invariants:
 *  - the tree document's size is checked before its blocks are fetched, and it is decoded
 *    and validated (file-tree.ts) before any path from it is used; every path is joined
 *    under the job's tree folder with safeJoin, so a hostile manifest writes nowhere else;
 *  - the tree must agree with the announce (same scene manifest, same file count);
 *  - the tree folder holds only folders and files this module made: no symlink from a peer;
 *  - cached files are read-only; `prune` drops the ones no job's tree links any more.
 */
import {
  chmod,
  copyFile,
  link,
  mkdir,
  readdir,
  rm,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { BlockStore } from '../blobs/block-store.js'
import { type BlockExchange, NoProvidersError } from '../blobs/exchange.js'
import { decodeFileTree, type FileTree, MAX_TREE_BYTES, safeJoin } from '../blobs/file-tree.js'
import type { ProviderIndex } from '../blobs/providers.js'
import type { AnnounceBody } from '../jobs/entries.js'
import { throwIfAborted } from '../util/abort.js'
import { InvalidInputError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'

export interface LaidOutTree {
  scenePath: string
  remapFile?: string
  allowMissing: boolean
}

export interface TreeComponents {
  blocks: BlockStore
  exchange: BlockExchange
  providers: ProviderIndex
  workRoot: string
  logger: Logger
}

/** Files fetched at once: each is its own swarm over the holders. */
const FETCH_CONCURRENCY = 4

export function createTreeLayout(c: TreeComponents) {
  const cacheDir = join(c.workRoot, '.files')
  const exporting = new Map<string, Promise<string>>()

  const known = (job: AnnounceBody, manifest: string) => [
    ...new Set([job.submitter, ...c.providers.providersOf(manifest)]),
  ]

  /** Fetch what this node lacks of a manifest: known holders first, then the DHT. */
  const ensure = async (job: AnnounceBody, manifest: string, signal: AbortSignal) => {
    if ((await c.blocks.missingBlocks(manifest).catch(() => ['?'])).length === 0) return
    const holders = known(job, manifest)
    try {
      await c.exchange.fetchManifest(manifest, { providers: holders, signal })
    } catch (err) {
      if (signal.aborted) throw err
      const more = await c.providers
        .findProviders(manifest, { known: holders, dht: 'always', signal, timeoutMs: 2_000 })
        .catch(() => holders)
      await c.exchange.fetchManifest(manifest, { providers: more, signal })
    }
  }

  /** Asks `peers` in turn for the manifest `cid` alone (no block); true once it is held. */
  const manifestFrom = async (peers: string[], cid: string, signal: AbortSignal) => {
    for (const peer of peers) {
      throwIfAborted(signal, 'tree fetch')
      const bytes = await c.exchange.requestOne(peer, cid, { signal }).catch(() => null)
      if (bytes && (await c.blocks.putManifest(bytes).catch(() => undefined)) === cid) return true
    }
    return false
  }

  /** The tree document, its size bounded before any of its blocks is fetched. */
  const readTree = async (job: AnnounceBody, signal: AbortSignal): Promise<FileTree> => {
    const cid = job.files!.tree
    if (!(await c.blocks.hasManifest(cid).catch(() => false))) {
      const holders = known(job, cid)
      const found =
        (await manifestFrom(holders, cid, signal)) ||
        (await manifestFrom(
          await c.providers
            .findProviders(cid, { known: holders, dht: 'always', signal, timeoutMs: 2_000 })
            .catch(() => []),
          cid,
          signal,
        ))
      // No holder reachable: the chunk waits (deferred), it is no fault of the job's.
      if (!found) throw new NoProvidersError(`the file tree ${cid}`)
    }
    if ((await c.blocks.getManifest(cid)).size > MAX_TREE_BYTES)
      throw new InvalidInputError(`the job's file tree is over ${MAX_TREE_BYTES} bytes`)
    await ensure(job, cid, signal)
    const m = await c.blocks.getManifest(cid)
    const parts: Uint8Array[] = []
    for (const b of m.blocks) parts.push(await c.blocks.getBlock(b))
    const tree = decodeFileTree(Buffer.concat(parts))
    const scene = tree.files.find((f) => f.path === tree.scene)
    if (tree.files.length !== job.files!.count || scene?.manifest !== job.scene.manifest)
      throw new InvalidInputError("the job's file tree does not match its announce")
    return tree
  }

  /** The file of a manifest in the node-wide cache, exported once. */
  const cached = (manifest: string, signal: AbortSignal): Promise<string> => {
    let p = exporting.get(manifest)
    if (!p) {
      p = (async () => {
        const path = join(cacheDir, manifest)
        if (
          await stat(path).then(
            (s) => s.isFile(),
            () => false,
          )
        )
          return path
        await mkdir(cacheDir, { recursive: true })
        await c.blocks.exportFile(manifest, path, { signal, scratch: true })
        // Read-only: every tree linking it shares these bytes.
        await chmod(path, 0o444)
        return path
      })()
      exporting.set(manifest, p)
      const entry = p
      p.then(
        () => exporting.get(manifest) === entry && exporting.delete(manifest),
        () => exporting.get(manifest) === entry && exporting.delete(manifest),
      )
    }
    return p
  }

  return {
    /**
     * Fetches and lays out the tree of `job` under `<workRoot>/<jobId>/tree`; the pins are
     * the caller's (taken before, so gc cannot race the fetch).
     */
    async layout(
      jobId: string,
      job: AnnounceBody,
      pin: (manifests: string[]) => Promise<void>,
      signal: AbortSignal,
    ): Promise<LaidOutTree> {
      const tree = await readTree(job, signal)
      await pin(tree.files.map((f) => f.manifest))
      let next = 0
      const fetchAll = async () => {
        while (next < tree.files.length) {
          const f = tree.files[next++]
          await ensure(job, f.manifest, signal)
        }
      }
      await Promise.all(Array.from({ length: FETCH_CONCURRENCY }, fetchAll))
      const jobDir = join(c.workRoot, jobId)
      const root = join(jobDir, 'tree')
      await rm(root, { recursive: true, force: true })
      await mkdir(root, { recursive: true })
      let linked = 0
      for (const f of tree.files) {
        throwIfAborted(signal, 'tree layout')
        const dest = safeJoin(root, f.path)
        await mkdir(dirname(dest), { recursive: true })
        const src = await cached(f.manifest, signal)
        try {
          await link(src, dest)
          linked++
        } catch {
          await copyFile(src, dest)
        }
      }
      let remapFile: string | undefined
      if (tree.remap.length > 0) {
        remapFile = join(jobDir, 'remap.json')
        const remap = Object.fromEntries(tree.remap.map((r) => [r.from, r.to]))
        await writeFile(remapFile, JSON.stringify({ root, remap }))
      }
      c.logger.debug('file tree laid out', {
        jobId,
        files: tree.files.length,
        linked,
        remapped: tree.remap.length,
      })
      return {
        scenePath: safeJoin(root, tree.scene),
        remapFile,
        allowMissing: (job.files?.missing ?? 0) > 0,
      }
    },

    /** Drops cached files that no tree links any more (after a job's folder is removed). */
    async prune(): Promise<void> {
      const names = await readdir(cacheDir).catch(() => [] as string[])
      for (const n of names) {
        if (exporting.has(n)) continue
        const st = await stat(join(cacheDir, n)).catch(() => undefined)
        if (st && st.nlink <= 1) await unlink(join(cacheDir, n)).catch(() => {})
      }
    },
  }
}
