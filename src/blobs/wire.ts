/**
 * Wire format of /rmesh/blocks/1.0.0 and /rmesh/blocks-have/1.0.0 (see protocols/blocks.md).
 *
 * Invariants:
 *  - every frame is varint-length-prefixed; the length is checked against the limit of
 *    its kind before any byte is decoded (lpStream maxDataLength, then decodeBounded);
 *  - a request is a CBOR map `{ wants: [cid-bytes...] }` with 1..MAX_WANTS entries;
 *  - the server answers each want, in order, with exactly one frame: CBOR
 *    `[cid-bytes, block-bytes]` (have) or `[cid-bytes, null]` (not have);
 *  - a have-stream carries one subscription `{ manifest: cid-bytes }` from the client and
 *    then frames `{ have: bitfield-bytes }` from the server, each a full bitfield of the
 *    manifest's blocks it holds (see selection.ts for the bit order);
 *  - response frames are built by hand without copying the block, and are byte for byte
 *    what the CBOR codec produces for the same array (a test checks this).
 */
import { decodeBounded, encode } from '../util/cbor.js'
import { DecodeError, InvalidInputError } from '../util/errors.js'
import { CID_BYTES_LENGTH, MAX_BLOCK_SIZE, cidFromBytes, cidToBytes } from './manifest.js'

export const BLOCKS_PROTOCOL = '/rmesh/blocks/1.0.0'
/** Who holds which blocks of a manifest, pushed by the holder as it changes. */
export const HAVE_PROTOCOL = '/rmesh/blocks-have/1.0.0'
export const MAX_WANTS = 64
export const MAX_REQUEST_BYTES = 64 * 1024
/** A block plus the array header, the CID and the byte-string headers, with room to spare. */
export const MAX_RESPONSE_BYTES = MAX_BLOCK_SIZE + 1024
export const MAX_HAVE_REQUEST_BYTES = 1024
/** A 1 MiB manifest names at most ~27 600 blocks: a 3.5 KiB bitfield. */
export const MAX_BITFIELD_BYTES = 4096
export const MAX_HAVE_FRAME_BYTES = MAX_BITFIELD_BYTES + 64

export interface BlockResponse {
  cid: string
  /** null: the peer does not have it. */
  block: Uint8Array | null
}

export function encodeRequest(wants: string[]): Uint8Array {
  if (wants.length === 0 || wants.length > MAX_WANTS) {
    throw new InvalidInputError(`a request carries 1..${MAX_WANTS} wants`)
  }
  return encode({ wants: wants.map(cidToBytes) })
}

export function decodeRequest(bytes: Uint8Array): string[] {
  const raw = decodeBounded(bytes, MAX_REQUEST_BYTES, 'block request') as { wants?: unknown }
  if (raw === null || typeof raw !== 'object' || !Array.isArray(raw.wants)) {
    throw new DecodeError('block request (no wants array)')
  }
  if (raw.wants.length === 0 || raw.wants.length > MAX_WANTS) {
    throw new InvalidInputError(`a request carries 1..${MAX_WANTS} wants`)
  }
  return raw.wants.map(cidFromBytes)
}

/** CBOR header for a byte string of `len` bytes (shortest form, as cbor-x writes it). */
function bstrHeader(len: number): Uint8Array {
  if (len < 24) return Uint8Array.of(0x40 | len)
  if (len < 0x100) return Uint8Array.of(0x58, len)
  if (len < 0x10000) return Uint8Array.of(0x59, len >> 8, len & 0xff)
  return Uint8Array.of(
    0x5a,
    (len >>> 24) & 0xff,
    (len >>> 16) & 0xff,
    (len >>> 8) & 0xff,
    len & 0xff,
  )
}

/**
 * A response frame as parts to send without copying the block: [header, block] or
 * [header] for not-have.
 */
export function encodeResponseParts(cid: string, block: Uint8Array | null): Uint8Array[] {
  const cidBytes = cidToBytes(cid)
  if (block === null) {
    const out = new Uint8Array(1 + 2 + CID_BYTES_LENGTH + 1)
    out[0] = 0x82
    out.set(bstrHeader(CID_BYTES_LENGTH), 1)
    out.set(cidBytes, 3)
    out[3 + CID_BYTES_LENGTH] = 0xf6
    return [out]
  }
  const h = bstrHeader(block.byteLength)
  const header = new Uint8Array(1 + 2 + CID_BYTES_LENGTH + h.byteLength)
  header[0] = 0x82
  header.set(bstrHeader(CID_BYTES_LENGTH), 1)
  header.set(cidBytes, 3)
  header.set(h, 3 + CID_BYTES_LENGTH)
  return [header, block]
}

export function decodeResponse(bytes: Uint8Array): BlockResponse {
  const raw = decodeBounded(bytes, MAX_RESPONSE_BYTES, 'block response')
  if (!Array.isArray(raw) || raw.length !== 2) throw new DecodeError('block response (not a pair)')
  const cid = cidFromBytes(raw[0])
  if (raw[1] === null) return { cid, block: null }
  if (!(raw[1] instanceof Uint8Array) || raw[1].byteLength > MAX_BLOCK_SIZE) {
    throw new DecodeError('block response (block is not a byte string of at most 1 MiB)')
  }
  return { cid, block: raw[1] }
}

export function encodeHaveSubscribe(manifestCid: string): Uint8Array {
  return encode({ manifest: cidToBytes(manifestCid) })
}

export function decodeHaveSubscribe(bytes: Uint8Array): string {
  const raw = decodeBounded(bytes, MAX_HAVE_REQUEST_BYTES, 'have subscription') as {
    manifest?: unknown
  }
  if (raw === null || typeof raw !== 'object') throw new DecodeError('have subscription')
  return cidFromBytes(raw.manifest)
}

export function encodeHaveBits(bits: Uint8Array): Uint8Array {
  if (bits.byteLength > MAX_BITFIELD_BYTES) {
    throw new InvalidInputError(`a bitfield is at most ${MAX_BITFIELD_BYTES} bytes`)
  }
  return encode({ have: bits })
}

/** The bitfield's length against the manifest is the caller's check (validBitfield). */
export function decodeHaveBits(bytes: Uint8Array): Uint8Array {
  const raw = decodeBounded(bytes, MAX_HAVE_FRAME_BYTES, 'have bitfield') as { have?: unknown }
  if (
    raw === null ||
    typeof raw !== 'object' ||
    !(raw.have instanceof Uint8Array) ||
    raw.have.byteLength > MAX_BITFIELD_BYTES
  ) {
    throw new DecodeError('have bitfield (not a byte string of at most 4 KiB)')
  }
  return raw.have
}
