/**
 * The one CBOR codec for every wire and disk encoding.
 *
 * Invariants: encoding is deterministic for the values we produce (no records/structures
 * extension, no shared structures, maps keep insertion order, so signers build objects
 * in a fixed field order or use arrays); decoding always goes through `decodeBounded`,
 * which checks the size limit *before* parsing, so a peer cannot make us parse more than
 * the limit of the message kind.
 */
import { Decoder, Encoder } from 'cbor-x'
import { DecodeError, TooLargeError } from './errors.js'

const options = {
  useRecords: false,
  structuredClone: false,
  mapsAsObjects: true,
  variableMapSize: true,
  tagUint8Array: false,
  pack: false,
  bundleStrings: false,
  largeBigIntToFloat: false,
  useFloat32: 0,
} as const

const encoder = new Encoder(options)
const decoder = new Decoder(options)

export function encode(value: unknown): Uint8Array {
  const buf = encoder.encode(value)
  // cbor-x may hand back a view into a shared buffer; copy so callers own their bytes.
  return new Uint8Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength))
}

export function decodeBounded(bytes: Uint8Array, limit: number, what = 'message'): unknown {
  if (bytes.byteLength > limit) throw new TooLargeError(what, bytes.byteLength, limit)
  try {
    return decoder.decode(bytes)
  } catch (err) {
    throw new DecodeError(what, err)
  }
}
