/**
 * The content-addressed block store: files cut into SHA-256 blocks, one manifest per file.
 *
 * Layout under `root`: blocks/<shard>/<cid>, manifests/<shard>/<cid>, pins/<sha256(owner)>,
 * tmp/ (same filesystem, so rename is atomic). The shard is the CID's last two characters:
 * base32 CIDv1 strings all start with the same prefix ("bafkrei"), their tail is uniform.
 *
 * Invariants:
 *  - a file under blocks/ or manifests/ is complete: it is written to tmp/, fsynced, then
 *    renamed into place; a failed write (ENOSPC, EIO...) removes its temp file and surfaces
 *    as DiskFullError / StoreWriteError, and leaves every stored file as it was;
 *  - every block is verified against its CID on the way in (putBlock) and on the way out
 *    (getBlock, exportFile); a stored block that fails verification is removed so it can
 *    be fetched again, never served;
 *  - import and export stream one block at a time: memory does not grow with file size;
 *  - manifest names are display only: export writes only where the local caller says;
 *  - gc keeps what a pin references and anything touched within the grace period (work in
 *    progress: an import or fetch pins its manifest only when it is complete).
 */
import { randomBytes } from 'node:crypto'
import type { FileHandle } from 'node:fs/promises'
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, utimes } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { encode, decodeBounded } from '../util/cbor.js'
import { type Clock, systemClock } from '../util/clock.js'
import { InvalidInputError, NotFoundError, RmeshError, TooLargeError } from '../util/errors.js'
import { throwIfAborted } from '../util/abort.js'
import { toHex } from '../util/bytes.js'
import { cidOf, parseCid, sha256 } from '../util/hash.js'
import type { Logger } from '../util/logger.js'
import { KeyedQueue } from '../util/queue.js'
import {
  DEFAULT_BLOCK_SIZE,
  MAX_BLOCK_SIZE,
  MAX_MANIFEST_BYTES,
  type Manifest,
  blockLength,
  decodeManifest,
  encodeManifest,
  matchesCid,
  validateBlockSize,
  verifyBlock,
} from './manifest.js'

/** The disk is full (ENOSPC/EDQUOT): free space, then retry. */
export class DiskFullError extends RmeshError {
  constructor(path: string, cause?: unknown) {
    super('ERR_DISK_FULL', `no space left to write ${path}; free disk space and retry`, {
      cause,
      details: { path },
    })
    this.name = 'DiskFullError'
  }
}

/** Any other failed write into the store (permissions, I/O error). */
export class StoreWriteError extends RmeshError {
  constructor(path: string, cause?: unknown) {
    const code = (cause as NodeJS.ErrnoException | undefined)?.code
    super('ERR_STORE_WRITE', `cannot write ${path}${code ? ` (${code})` : ''}`, {
      cause,
      details: { path, errno: code },
    })
    this.name = 'StoreWriteError'
  }
}

/** A stored block or manifest whose bytes no longer match its CID (disk corruption). */
export class BlockCorruptError extends RmeshError {
  constructor(cid: string) {
    super('ERR_BLOCK_CORRUPT', `stored ${cid} is corrupt and was removed; fetch it again`, {
      details: { cid },
    })
    this.name = 'BlockCorruptError'
  }
}

export type WriteKind = 'block' | 'manifest' | 'pin' | 'export'

/**
 * exportFile writes `.NAME.rmesh-HEX.tmp` next to its destination and renames it into place
 * only when whole, so a destination is never half written; a process killed mid-export
 * leaves that temporary file, which removeStaleExports clears.
 */
const EXPORT_TEMP = /^\..+\.rmesh-[0-9a-f]{12}\.tmp$/

function exportTempName(destPath: string): string {
  return `.${basename(destPath).slice(0, 80)}.rmesh-${randomBytes(6).toString('hex')}.tmp`
}

/** Removes exports left half-written in `dir` by a killed process; returns how many. */
export async function removeStaleExports(dir: string): Promise<number> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch {
    return 0
  }
  const stale = names.filter((n) => EXPORT_TEMP.test(n))
  await Promise.all(stale.map((n) => rm(join(dir, n), { force: true })))
  return stale.length
}

/**
 * Called before every write into the store or an export; tests throw from it (for example
 * an error with code 'ENOSPC') to inject a full disk.
 */
export type WriteHook = (op: {
  kind: WriteKind
  path: string
  bytes: number
}) => void | Promise<void>

export interface BlockStoreComponents {
  root: string
  logger: Logger
  clock?: Clock
}

export interface BlockStoreOptions {
  /** Block size for new imports (default 1 MiB, at most 1 MiB). */
  blockSize?: number
  /** fsync every block before rename (default true). */
  fsync?: boolean
  writeHook?: WriteHook
  /** gc never removes files modified within this many ms (default 1 hour). */
  gcGraceMs?: number
}

export interface ImportResult {
  manifest: string
  size: number
  name: string
  blocks: number
}

export interface Progress {
  bytes: number
  total: number
}

export interface GcResult {
  blocksRemoved: number
  manifestsRemoved: number
  bytesFreed: number
}

export interface StoreStats {
  blocks: number
  blockBytes: number
  manifests: number
  pinOwners: number
}

export interface BlockStore {
  readonly root: string
  readonly blockSize: number
  importFile(
    path: string,
    options?: { name?: string; signal?: AbortSignal; onProgress?: (p: Progress) => void },
  ): Promise<ImportResult>
  importBytes(name: string, bytes: Uint8Array): Promise<ImportResult>
  /**
   * Write the file to `destPath` (temp file, renamed into place when whole). `scratch`: a
   * working copy that nothing relies on after a crash (a render's scene), so no fsync;
   * under load an fsync can take most of a second, and the first frame waits for it.
   */
  exportFile(
    manifestCid: string,
    destPath: string,
    options?: { signal?: AbortSignal; onProgress?: (p: Progress) => void; scratch?: boolean },
  ): Promise<{ size: number }>
  hasBlock(cid: string): Promise<boolean>
  getBlock(cid: string): Promise<Uint8Array>
  putBlock(cid: string, bytes: Uint8Array): Promise<void>
  hasManifest(cid: string): Promise<boolean>
  getManifest(cid: string): Promise<Manifest>
  getManifestBytes(cid: string): Promise<Uint8Array>
  putManifest(bytes: Uint8Array): Promise<string>
  listManifests(): Promise<string[]>
  missingBlocks(manifestCid: string): Promise<string[]>
  pin(owner: string, manifestCid: string): Promise<void>
  /** Pins several manifests under `owner` with one write (a job's file tree). */
  pinMany(owner: string, manifestCids: readonly string[]): Promise<void>
  /**
   * The manifest `importFile` would store for `path`, computed without writing anything
   * (what a dry run compares with what is held).
   */
  hashFile(
    path: string,
    options?: { name?: string; signal?: AbortSignal },
  ): Promise<{ manifest: string; size: number }>
  /** Remove one pin of `owner`, or all its pins when no manifest is given. */
  unpin(owner: string, manifestCid?: string): Promise<void>
  pinsOf(owner: string): Promise<string[]>
  /** Manifests pinned by any owner whose name starts with `ownerPrefix`, each once. */
  pinnedByOwners(ownerPrefix: string): Promise<string[]>
  gc(options?: { graceMs?: number }): Promise<GcResult>
  stats(): Promise<StoreStats>
}

const MAX_OWNER_BYTES = 1024
const MAX_PIN_FILE_BYTES = 64 << 20

export function createBlockStore(
  components: BlockStoreComponents,
  options: BlockStoreOptions = {},
): BlockStore {
  const { root } = components
  const log = components.logger.child('blocks')
  const clock = components.clock ?? systemClock
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE
  validateBlockSize(blockSize)
  const doFsync = options.fsync ?? true
  const gcGraceMs = options.gcGraceMs ?? 60 * 60 * 1000
  const dirs = {
    blocks: join(root, 'blocks'),
    manifests: join(root, 'manifests'),
    pins: join(root, 'pins'),
    tmp: join(root, 'tmp'),
  }
  const queue = new KeyedQueue()
  const madeDirs = new Set<string>()

  let readyPromise: Promise<void> | undefined
  const ready = () => {
    readyPromise ??= (async () => {
      for (const d of Object.values(dirs)) await mkdir(d, { recursive: true })
    })().catch((err) => {
      readyPromise = undefined
      throw mapWriteError(err, root)
    })
    return readyPromise
  }

  const blockPath = (cid: string) => join(dirs.blocks, cid.slice(-2), cid)
  const manifestPath = (cid: string) => join(dirs.manifests, cid.slice(-2), cid)
  const pinPath = (owner: string) => join(dirs.pins, toHex(sha256(Buffer.from(owner))))

  function checkCid(cid: string): void {
    // parseCid throws InvalidInputError; a CID string is also a path component here.
    parseCid(cid)
    if (!/^[a-z0-9]+$/.test(cid)) throw new InvalidInputError('CID must be lowercase base32')
  }

  async function ensureDir(dir: string): Promise<void> {
    if (madeDirs.has(dir)) return
    await mkdir(dir, { recursive: true })
    madeDirs.add(dir)
  }

  async function callHook(kind: WriteKind, path: string, bytes: number): Promise<void> {
    if (options.writeHook) await options.writeHook({ kind, path, bytes })
  }

  /** tmp + fsync + rename; nothing half-written is ever visible under `path`. */
  async function atomicWrite(kind: WriteKind, path: string, bytes: Uint8Array): Promise<void> {
    await ready()
    const tmp = join(dirs.tmp, `${basename(path).slice(0, 80)}.${randomBytes(6).toString('hex')}`)
    let fh: FileHandle | undefined
    try {
      await ensureDir(dirname(path))
      await callHook(kind, path, bytes.byteLength)
      fh = await open(tmp, 'wx', 0o644)
      await writeAll(fh, bytes)
      if (doFsync) await fh.sync()
      await fh.close()
      fh = undefined
      await rename(tmp, path)
    } catch (err) {
      await fh?.close().catch(() => undefined)
      await unlink(tmp).catch(() => undefined)
      throw mapWriteError(err, path)
    }
  }

  async function exists(path: string): Promise<boolean> {
    try {
      await stat(path)
      return true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw err
    }
  }

  /** Refresh mtime so gc's grace period covers a block a running import or fetch reuses. */
  async function touch(path: string): Promise<void> {
    const now = new Date(clock.wall())
    await utimes(path, now, now).catch(() => undefined)
  }

  async function putVerifiedBlock(cid: string, bytes: Uint8Array): Promise<void> {
    const path = blockPath(cid)
    if (await exists(path)) return touch(path)
    await atomicWrite('block', path, bytes)
  }

  async function readVerified(cid: string, path: string, what: string): Promise<Uint8Array> {
    checkCid(cid)
    let bytes: Uint8Array
    try {
      const buf = await readFile(path)
      bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(what, { cid })
      throw err
    }
    if (!matchesCid(cid, bytes)) {
      log.warn('stored data does not match its CID; removing it', { cid, path })
      await unlink(path).catch(() => undefined)
      throw new BlockCorruptError(cid)
    }
    return bytes
  }

  const store: BlockStore = {
    root,
    blockSize,

    async importFile(path, opts = {}) {
      await ready()
      const fh = await open(path, 'r').catch((err) => {
        if (err.code === 'ENOENT') throw new NotFoundError(`file ${path}`)
        throw new InvalidInputError(`cannot read ${path}: ${err.code ?? err}`)
      })
      try {
        const total = (await fh.stat()).size
        const maxBlocks = Math.floor((MAX_MANIFEST_BYTES - 1024) / 38)
        if (Math.ceil(total / blockSize) > maxBlocks) {
          throw new TooLargeError(`file ${path}`, total, maxBlocks * blockSize)
        }
        // One reused buffer: memory stays at one block whatever the file size.
        const buf = Buffer.allocUnsafe(blockSize)
        const blocks: string[] = []
        let size = 0
        while (true) {
          throwIfAborted(opts.signal, 'import')
          const n = await readFull(fh, buf)
          if (n === 0) break
          const chunk = buf.subarray(0, n)
          const cid = cidOf(chunk)
          await putVerifiedBlock(cid, chunk)
          blocks.push(cid)
          size += n
          opts.onProgress?.({ bytes: size, total: Math.max(total, size) })
          if (n < blockSize) break
        }
        const name = opts.name ?? basename(path)
        const { bytes } = encodeManifest({ name, size, blockSize, blocks })
        const manifest = await store.putManifest(bytes)
        log.debug('imported', { manifest, size, blocks: blocks.length })
        return { manifest, size, name, blocks: blocks.length }
      } finally {
        await fh.close().catch(() => undefined)
      }
    },

    async importBytes(name, bytes) {
      await ready()
      const blocks: string[] = []
      for (let off = 0; off < bytes.byteLength; off += blockSize) {
        const chunk = bytes.subarray(off, Math.min(off + blockSize, bytes.byteLength))
        const cid = cidOf(chunk)
        await putVerifiedBlock(cid, chunk)
        blocks.push(cid)
      }
      const { bytes: mbytes } = encodeManifest({ name, size: bytes.byteLength, blockSize, blocks })
      const manifest = await store.putManifest(mbytes)
      return { manifest, size: bytes.byteLength, name, blocks: blocks.length }
    },

    async exportFile(manifestCid, destPath, opts = {}) {
      const m = await store.getManifest(manifestCid)
      const tmp = join(dirname(destPath), exportTempName(destPath))
      let fh: FileHandle | undefined
      try {
        await callHook('export', destPath, m.size)
        fh = await open(tmp, 'wx', 0o644)
        let written = 0
        for (let i = 0; i < m.blocks.length; i++) {
          throwIfAborted(opts.signal, 'export')
          const bytes = await store.getBlock(m.blocks[i])
          if (bytes.byteLength !== blockLength(m, i)) {
            throw new InvalidInputError('block length does not match its manifest', {
              cid: m.blocks[i],
            })
          }
          await writeAll(fh, bytes)
          written += bytes.byteLength
          opts.onProgress?.({ bytes: written, total: m.size })
        }
        if (doFsync && !opts.scratch) await fh.sync()
        await fh.close()
        fh = undefined
        await rename(tmp, destPath)
        return { size: m.size }
      } catch (err) {
        await fh?.close().catch(() => undefined)
        await unlink(tmp).catch(() => undefined)
        if (err instanceof RmeshError) throw err
        throw mapWriteError(err, destPath)
      }
    },

    async hasBlock(cid) {
      checkCid(cid)
      return exists(blockPath(cid))
    },

    getBlock(cid) {
      return readVerified(cid, blockPath(cid), 'block')
    },

    async putBlock(cid, bytes) {
      checkCid(cid)
      if (bytes.byteLength > MAX_BLOCK_SIZE)
        throw new TooLargeError('block', bytes.byteLength, MAX_BLOCK_SIZE)
      verifyBlock(cid, bytes)
      await putVerifiedBlock(cid, bytes)
    },

    async hasManifest(cid) {
      checkCid(cid)
      return exists(manifestPath(cid))
    },

    async getManifest(cid) {
      return decodeManifest(await store.getManifestBytes(cid))
    },

    getManifestBytes(cid) {
      return readVerified(cid, manifestPath(cid), 'manifest')
    },

    async putManifest(bytes) {
      decodeManifest(bytes)
      const cid = cidOf(bytes)
      const path = manifestPath(cid)
      if (await exists(path)) await touch(path)
      else await atomicWrite('manifest', path, bytes)
      return cid
    },

    async listManifests() {
      await ready()
      return (await walk(dirs.manifests)).map((f) => f.name)
    },

    async missingBlocks(manifestCid) {
      const m = await store.getManifest(manifestCid)
      const unique = [...new Set(m.blocks)]
      const present = await mapLimit(unique, 32, (cid) => exists(blockPath(cid)))
      return unique.filter((_, i) => !present[i])
    },

    pin(owner, manifestCid) {
      checkOwner(owner)
      checkCid(manifestCid)
      return queue.run('pins', async () => {
        const set = new Set(await readPins(owner))
        if (set.has(manifestCid)) return
        set.add(manifestCid)
        await writePins(owner, [...set])
      })
    },

    pinMany(owner, manifestCids) {
      checkOwner(owner)
      for (const cid of manifestCids) checkCid(cid)
      return queue.run('pins', async () => {
        const set = new Set(await readPins(owner))
        const before = set.size
        for (const cid of manifestCids) set.add(cid)
        if (set.size !== before) await writePins(owner, [...set])
      })
    },

    async hashFile(path, opts = {}) {
      const fh = await open(path, 'r').catch((err) => {
        if (err.code === 'ENOENT') throw new NotFoundError(`file ${path}`)
        throw new InvalidInputError(`cannot read ${path}: ${err.code ?? err}`)
      })
      try {
        const buf = Buffer.allocUnsafe(blockSize)
        const blocks: string[] = []
        let size = 0
        while (true) {
          throwIfAborted(opts.signal, 'hash')
          const n = await readFull(fh, buf)
          if (n === 0) break
          blocks.push(cidOf(buf.subarray(0, n)))
          size += n
          if (n < blockSize) break
        }
        const name = opts.name ?? basename(path)
        const { cid } = encodeManifest({ name, size, blockSize, blocks })
        return { manifest: cid, size }
      } finally {
        await fh.close().catch(() => undefined)
      }
    },

    unpin(owner, manifestCid) {
      checkOwner(owner)
      return queue.run('pins', async () => {
        const current = await readPins(owner)
        const next = manifestCid === undefined ? [] : current.filter((c) => c !== manifestCid)
        if (next.length === current.length && manifestCid !== undefined) return
        if (next.length === 0) await rm(pinPath(owner), { force: true })
        else await writePins(owner, next)
      })
    },

    pinsOf(owner) {
      checkOwner(owner)
      return readPins(owner)
    },

    async pinnedByOwners(ownerPrefix) {
      await ready()
      const out = new Set<string>()
      for (const f of await walk(dirs.pins, false)) {
        const doc = await readPinDoc(f.path).catch(() => undefined)
        if (!doc?.owner.startsWith(ownerPrefix)) continue
        for (const cid of doc.manifests) out.add(cid)
      }
      return [...out]
    },

    gc(gcOptions = {}) {
      const graceMs = gcOptions.graceMs ?? gcGraceMs
      return queue.run('pins', async () => {
        await ready()
        const cutoff = clock.wall() - graceMs
        const pinned = new Set<string>()
        for (const f of await walk(dirs.pins, false)) {
          for (const cid of await readPinFile(f.path)) pinned.add(cid)
        }
        const live = new Set<string>()
        for (const cid of pinned) {
          try {
            for (const b of (await store.getManifest(cid)).blocks) live.add(b)
          } catch (err) {
            // A pinned manifest not (yet) held protects nothing; a fetch will bring it.
            if (!(err instanceof NotFoundError)) throw err
          }
        }
        const result: GcResult = { blocksRemoved: 0, manifestsRemoved: 0, bytesFreed: 0 }
        for (const f of await walk(dirs.manifests)) {
          if (pinned.has(f.name) || f.mtimeMs > cutoff) continue
          await unlink(f.path).catch(() => undefined)
          result.manifestsRemoved++
          result.bytesFreed += f.size
        }
        for (const f of await walk(dirs.blocks)) {
          if (live.has(f.name) || f.mtimeMs > cutoff) continue
          await unlink(f.path).catch(() => undefined)
          result.blocksRemoved++
          result.bytesFreed += f.size
        }
        // Temp files of writes that a crash interrupted.
        for (const f of await walk(dirs.tmp, false)) {
          if (f.mtimeMs <= cutoff) await unlink(f.path).catch(() => undefined)
        }
        log.info('gc done', { ...result })
        return result
      })
    },

    async stats() {
      await ready()
      const blocks = await walk(dirs.blocks)
      return {
        blocks: blocks.length,
        blockBytes: blocks.reduce((a, f) => a + f.size, 0),
        manifests: (await walk(dirs.manifests)).length,
        pinOwners: (await walk(dirs.pins, false)).length,
      }
    },
  }

  function checkOwner(owner: string): void {
    if (
      typeof owner !== 'string' ||
      owner.length === 0 ||
      Buffer.byteLength(owner) > MAX_OWNER_BYTES
    ) {
      throw new InvalidInputError('pin owner must be a non-empty string of at most 1024 bytes')
    }
  }

  async function readPins(owner: string): Promise<string[]> {
    await ready()
    return readPinFile(pinPath(owner))
  }

  async function readPinFile(path: string): Promise<string[]> {
    return (await readPinDoc(path))?.manifests ?? []
  }

  /** A pin file's owner and manifests; undefined when it is gone (unpinned meanwhile). */
  async function readPinDoc(
    path: string,
  ): Promise<{ owner: string; manifests: string[] } | undefined> {
    let bytes: Uint8Array
    try {
      bytes = await readFile(path)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
    const doc = decodeBounded(bytes, MAX_PIN_FILE_BYTES, 'pin file') as {
      owner?: unknown
      manifests?: unknown
    }
    const list = Array.isArray(doc?.manifests) ? doc.manifests : []
    return {
      owner: typeof doc?.owner === 'string' ? doc.owner : '',
      manifests: list.filter((c): c is string => typeof c === 'string'),
    }
  }

  async function writePins(owner: string, manifests: string[]): Promise<void> {
    await atomicWrite('pin', pinPath(owner), encode({ owner, manifests: manifests.sort() }))
  }

  return store
}

export function mapWriteError(err: unknown, path: string): RmeshError {
  if (err instanceof RmeshError) return err
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if (code === 'ENOSPC' || code === 'EDQUOT') return new DiskFullError(path, err)
  return new StoreWriteError(path, err)
}

async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  let off = 0
  while (off < bytes.byteLength) {
    const { bytesWritten } = await fh.write(bytes, off, bytes.byteLength - off)
    off += bytesWritten
  }
}

/** Fill `buf` from the file's current position; returns bytes read (short only at EOF). */
async function readFull(fh: FileHandle, buf: Buffer): Promise<number> {
  let n = 0
  while (n < buf.byteLength) {
    const { bytesRead } = await fh.read(buf, n, buf.byteLength - n, null)
    if (bytesRead === 0) break
    n += bytesRead
  }
  return n
}

interface FileEntry {
  name: string
  path: string
  size: number
  mtimeMs: number
}

/** Files under `dir` (one level of shard directories when `sharded`). */
async function walk(dir: string, sharded = true): Promise<FileEntry[]> {
  const out: FileEntry[] = []
  const dirsToRead = sharded ? (await readdirSafe(dir)).map((d) => join(dir, d)) : [dir]
  for (const d of dirsToRead) {
    for (const name of await readdirSafe(d)) {
      const path = join(d, name)
      try {
        const st = await stat(path)
        if (st.isFile()) out.push({ name, path, size: st.size, mtimeMs: st.mtimeMs })
      } catch {
        // Removed while we walked: nothing to report.
      }
    }
  }
  return out
}

async function readdirSafe(dir: string): Promise<string[]> {
  try {
    return await readdir(dir)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return []
    throw err
  }
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i])
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}
