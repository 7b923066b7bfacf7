/**
 * The file manifest and the CID helpers shared by the store and the exchange.
 *
 * Invariants:
 *  - a manifest's id is the CID of its exact CBOR bytes; we keep and serve those bytes,
 *    never a re-encoding;
 *  - `decodeManifest` checks the size limit before decoding and the full schema after:
 *    block count matches size/blockSize, every block is a raw SHA-256 CIDv1, the name is a
 *    bounded string (display only: see safe-name.ts, never a path);
 *  - blocks are at most MAX_BLOCK_SIZE, so every wire frame has a fixed upper bound.
 */
import { CID } from 'multiformats/cid'
import { decodeBounded, encode } from '../util/cbor.js'
import { DecodeError, InvalidInputError, RmeshError } from '../util/errors.js'
import { cidOf, parseCid, RAW_CODEC, SHA256_CODE, sha256 } from '../util/hash.js'
import { bytesEqual } from '../util/bytes.js'

export const MANIFEST_VERSION = 1
/** Default and maximum block size: see protocols/blocks.md for the rationale. */
export const DEFAULT_BLOCK_SIZE = 1 << 20
export const MAX_BLOCK_SIZE = 1 << 20
export const MIN_BLOCK_SIZE = 1 << 10
/** A manifest fits in one block frame: ~27k blocks, i.e. files up to ~27 GiB at 1 MiB. */
export const MAX_MANIFEST_BYTES = 1 << 20
export const MAX_NAME_BYTES = 1024
/** A raw SHA-256 CIDv1 in binary form: version, codec, hash code, length, 32 bytes. */
export const CID_BYTES_LENGTH = 36

export interface Manifest {
  /** Display only: never used as a path (see safeFileName). */
  name: string
  size: number
  blockSize: number
  /** Block CIDs (string form), in file order. */
  blocks: string[]
}

/** A block whose bytes do not hash to the CID it was offered under. */
export class BlockMismatchError extends RmeshError {
  constructor(cid: string, details?: Record<string, unknown>) {
    super('ERR_BLOCK_MISMATCH', `block bytes do not match ${cid}`, { details: { cid, ...details } })
    this.name = 'BlockMismatchError'
  }
}

export function cidToBytes(cid: string): Uint8Array {
  return parseCid(cid).bytes
}

/** Parse binary CID bytes from a peer; throws InvalidInputError on anything but raw SHA-256 v1. */
export function cidFromBytes(bytes: unknown): string {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength !== CID_BYTES_LENGTH) {
    throw new InvalidInputError('CID bytes must be a 36-byte raw SHA-256 CIDv1')
  }
  let cid: CID
  try {
    cid = CID.decode(bytes)
  } catch (err) {
    throw new InvalidInputError('undecodable CID bytes', { cause: String(err) })
  }
  if (cid.version !== 1 || cid.code !== RAW_CODEC || cid.multihash.code !== SHA256_CODE) {
    throw new InvalidInputError('unsupported CID (want CIDv1 raw sha2-256)')
  }
  return cid.toString()
}

/** True when `bytes` hash to `cid` (a raw SHA-256 CIDv1 string). */
export function matchesCid(cid: string, bytes: Uint8Array): boolean {
  return bytesEqual(parseCid(cid).multihash.digest, sha256(bytes))
}

export function verifyBlock(cid: string, bytes: Uint8Array): void {
  if (!matchesCid(cid, bytes)) throw new BlockMismatchError(cid, { size: bytes.byteLength })
}

export function validateBlockSize(blockSize: number): void {
  if (!Number.isInteger(blockSize) || blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE) {
    throw new InvalidInputError(
      `blockSize must be an integer in [${MIN_BLOCK_SIZE}, ${MAX_BLOCK_SIZE}]`,
    )
  }
}

/** Encode a manifest; field order is fixed so equal manifests have equal bytes and ids. */
export function encodeManifest(m: Manifest): { bytes: Uint8Array; cid: string } {
  const bytes = encode({
    v: MANIFEST_VERSION,
    name: m.name,
    size: m.size,
    blockSize: m.blockSize,
    blocks: m.blocks.map(cidToBytes),
  })
  if (bytes.byteLength > MAX_MANIFEST_BYTES) {
    throw new InvalidInputError(`file too large: its manifest would be ${bytes.byteLength} bytes`, {
      limit: MAX_MANIFEST_BYTES,
    })
  }
  return { bytes, cid: cidOf(bytes) }
}

export function decodeManifest(bytes: Uint8Array): Manifest {
  const raw = decodeBounded(bytes, MAX_MANIFEST_BYTES, 'manifest') as Record<string, unknown>
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new DecodeError('manifest (not a map)')
  }
  const { v, name, size, blockSize, blocks } = raw
  if (v !== MANIFEST_VERSION) throw new InvalidInputError('manifest: unsupported version', { v })
  if (typeof name !== 'string' || Buffer.byteLength(name) > MAX_NAME_BYTES) {
    throw new InvalidInputError('manifest: name must be a string of at most 1024 bytes')
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new InvalidInputError('manifest: size must be a non-negative integer')
  }
  if (typeof blockSize !== 'number') throw new InvalidInputError('manifest: blockSize missing')
  validateBlockSize(blockSize)
  if (!Array.isArray(blocks)) throw new InvalidInputError('manifest: blocks must be an array')
  const expected = Math.ceil(size / blockSize)
  if (blocks.length !== expected) {
    throw new InvalidInputError('manifest: block count does not match size', {
      blocks: blocks.length,
      expected,
    })
  }
  return { name, size, blockSize, blocks: blocks.map(cidFromBytes) }
}

/** Byte length of block `index` of a manifest (the last one may be short). */
export function blockLength(m: Manifest, index: number): number {
  const start = index * m.blockSize
  return Math.min(m.blockSize, m.size - start)
}
