/**
 * The file tree of a job (protocols/file-tree.md): every file a scene needs, by its path
 * relative to the project root, each a manifest in the block store; and how the scene's
 * references to files outside that root are remapped into it on the renderer.
 *
 * Invariants:
 *  - a tree document is decoded only within MAX_TREE_BYTES (checked before decoding), and
 *    only a fully valid one is returned: every path relative, normalized (no empty, `.` or
 *    `..` segment), without NUL, backslash or control characters, within the length and
 *    depth bounds; paths unique, none a folder of another; the scene one of the files;
 *  - so `join(root, path)` of a valid path never leaves `root` (safeJoin checks it again);
 *  - encoding is deterministic: files sorted by path, remaps by key, fields in fixed order,
 *    so the same project gives the same bytes and the same CID.
 */
import { isAbsolute, normalize, relative, resolve, sep } from 'node:path'
import { decodeBounded, encode } from '../util/cbor.js'
import { DecodeError, InvalidInputError } from '../util/errors.js'
import { cidFromBytes, cidToBytes } from './manifest.js'

export const FILE_TREE_VERSION = 1
export const MAX_TREE_BYTES = 8 << 20
export const MAX_TREE_FILES = 100_000
export const MAX_TREE_REMAPS = 10_000
export const MAX_TREE_MISSING = 1_000
export const MAX_TREE_PATH_BYTES = 1_024
export const MAX_TREE_SEGMENT_BYTES = 255
export const MAX_TREE_DEPTH = 64
/** A remap key: a path as the scene names it, normalized (absolute or `../`-relative). */
export const MAX_REMAP_KEY_BYTES = 4_096
/** Files outside the project root live under this folder, at their absolute path. */
export const EXTERNAL_DIR = '_external'

export interface TreeFile {
  /** Relative to the project root, `/`-separated. */
  path: string
  manifest: string
  size: number
}

export interface FileTree {
  /** Tree path of the .blend to render. */
  scene: string
  /** Sorted by path, unique. */
  files: TreeFile[]
  /**
   * Reference key → tree path (file, folder or pattern such as `tex/wood.<UDIM>.png`):
   * the renderer points the scene's reference there. Keys: an absolute path as the scene
   * names it, or a path relative to the project root that climbs out of it or through a
   * symlink that does (see protocols/file-tree.md for how each side computes them).
   */
  remap: { from: string; to: string }[]
  /** Paths the scene names that were missing at submit (submitted with allowMissing). */
  missing: string[]
}

const utf8Bytes = (s: string) => Buffer.byteLength(s, 'utf8')

/** Why `p` is not a safe tree path, or undefined when it is. */
export function treePathProblem(p: unknown): string | undefined {
  if (typeof p !== 'string' || p.length === 0) return 'not a non-empty string'
  if (utf8Bytes(p) > MAX_TREE_PATH_BYTES) return `longer than ${MAX_TREE_PATH_BYTES} bytes`
  if (/[\u0000-\u001f\u007f\\]/.test(p)) return 'holds a control character or a backslash'
  if (p.startsWith('/')) return 'absolute'
  const segments = p.split('/')
  if (segments.length > MAX_TREE_DEPTH) return `deeper than ${MAX_TREE_DEPTH} folders`
  for (const s of segments) {
    if (s === '' || s === '.' || s === '..') return 'not normalized (empty, . or .. segment)'
    if (utf8Bytes(s) > MAX_TREE_SEGMENT_BYTES)
      return `a name is longer than ${MAX_TREE_SEGMENT_BYTES} bytes`
  }
  return undefined
}

export const isSafeTreePath = (p: unknown): p is string => treePathProblem(p) === undefined

/** `root/path` for a valid tree path; throws if it would resolve outside `root` anyway. */
export function safeJoin(root: string, path: string): string {
  const problem = treePathProblem(path)
  if (problem)
    throw new InvalidInputError(`tree path ${JSON.stringify(path.slice(0, 80))}: ${problem}`)
  const base = resolve(root)
  const full = resolve(base, path)
  if (!full.startsWith(base + sep)) throw new InvalidInputError('tree path leaves its root')
  return full
}

/** Where a file outside the project root goes in the tree: `_external/<absolute path>`. */
export function externalTreePath(absPath: string): string {
  if (!isAbsolute(absPath)) throw new InvalidInputError(`${absPath} is not absolute`)
  return `${EXTERNAL_DIR}/${normalize(absPath).replace(/^\/+/, '')}`
}

/** `path` relative to `root` with `/` separators when inside it, else undefined. */
export function insideRoot(root: string, path: string): string | undefined {
  const rel = relative(root, path)
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) return undefined
  return rel.split(sep).join('/')
}

function bad(why: string): never {
  throw new InvalidInputError(`file tree: ${why}`)
}

/** Checks a tree (from a peer or built locally); returns it with lists in canonical order. */
export function validateFileTree(t: FileTree): FileTree {
  if (!Array.isArray(t.files) || t.files.length === 0 || t.files.length > MAX_TREE_FILES)
    bad(`files must be 1..${MAX_TREE_FILES} entries`)
  if (!Array.isArray(t.remap) || t.remap.length > MAX_TREE_REMAPS)
    bad(`remap must be at most ${MAX_TREE_REMAPS} entries`)
  if (!Array.isArray(t.missing) || t.missing.length > MAX_TREE_MISSING)
    bad(`missing must be at most ${MAX_TREE_MISSING} entries`)
  const files = [...t.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
  const paths = new Set<string>()
  const folders = new Set<string>()
  let total = 0
  for (const f of files) {
    const problem = treePathProblem(f.path)
    if (problem) bad(`path ${JSON.stringify(String(f.path).slice(0, 80))} is ${problem}`)
    if (paths.has(f.path)) bad(`path ${f.path} appears twice`)
    if (!Number.isSafeInteger(f.size) || f.size < 0) bad(`size of ${f.path} is not a byte count`)
    total += f.size
    if (!Number.isSafeInteger(total)) bad('total size overflows')
    paths.add(f.path)
    const segs = f.path.split('/')
    for (let i = 1; i < segs.length; i++) folders.add(segs.slice(0, i).join('/'))
  }
  for (const p of paths) if (folders.has(p)) bad(`${p} is both a file and a folder`)
  if (!paths.has(t.scene)) bad('the scene is not one of the files')
  const remap = [...t.remap].sort((a, b) => (a.from < b.from ? -1 : a.from > b.from ? 1 : 0))
  const keys = new Set<string>()
  for (const r of remap) {
    if (
      typeof r.from !== 'string' ||
      r.from.length === 0 ||
      utf8Bytes(r.from) > MAX_REMAP_KEY_BYTES
    )
      bad('a remap key is not a path of at most 4096 bytes')
    if (r.from.includes('\u0000')) bad('a remap key holds NUL')
    if (keys.has(r.from)) bad(`remap key ${r.from.slice(0, 80)} appears twice`)
    keys.add(r.from)
    const problem = treePathProblem(r.to)
    if (problem) bad(`remap target ${JSON.stringify(String(r.to).slice(0, 80))} is ${problem}`)
  }
  for (const m of t.missing)
    if (typeof m !== 'string' || utf8Bytes(m) > MAX_REMAP_KEY_BYTES || m.includes('\u0000'))
      bad('a missing path is not a string of at most 4096 bytes')
  return { scene: t.scene, files, remap, missing: [...t.missing] }
}

export function encodeFileTree(tree: FileTree): Uint8Array {
  const t = validateFileTree(tree)
  const bytes = encode({
    v: FILE_TREE_VERSION,
    scene: t.scene,
    files: t.files.map((f) => [f.path, cidToBytes(f.manifest), f.size]),
    remap: t.remap.map((r) => [r.from, r.to]),
    missing: t.missing,
  })
  if (bytes.byteLength > MAX_TREE_BYTES)
    throw new InvalidInputError(
      `the file tree is ${bytes.byteLength} bytes, over ${MAX_TREE_BYTES}`,
    )
  return bytes
}

/** Decodes and validates a tree document from a peer; throws on anything not valid. */
export function decodeFileTree(bytes: Uint8Array): FileTree {
  const raw = decodeBounded(bytes, MAX_TREE_BYTES, 'file tree') as Record<string, unknown>
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new DecodeError('file tree (not a map)')
  if (raw.v !== FILE_TREE_VERSION) bad('unsupported version')
  if (typeof raw.scene !== 'string') bad('scene is not a path')
  const list = (x: unknown, what: string, max: number): unknown[] => {
    if (!Array.isArray(x) || x.length > max) bad(`${what} is not a list of at most ${max}`)
    return x as unknown[]
  }
  const files = list(raw.files, 'files', MAX_TREE_FILES).map((e): TreeFile => {
    if (!Array.isArray(e) || e.length !== 3) bad('a file entry is not [path, manifest, size]')
    const [path, manifest, size] = e as unknown[]
    if (typeof path !== 'string' || typeof size !== 'number')
      bad('a file entry has the wrong types')
    return { path: path as string, manifest: cidFromBytes(manifest), size: size as number }
  })
  const remap = list(raw.remap, 'remap', MAX_TREE_REMAPS).map((e) => {
    if (!Array.isArray(e) || e.length !== 2) bad('a remap entry is not [from, to]')
    const [from, to] = e as unknown[]
    if (typeof from !== 'string' || typeof to !== 'string') bad('a remap entry is not two paths')
    return { from: from as string, to: to as string }
  })
  const missing = list(raw.missing ?? [], 'missing', MAX_TREE_MISSING)
  return validateFileTree({
    scene: raw.scene as string,
    files,
    remap,
    missing: missing as string[],
  })
}
