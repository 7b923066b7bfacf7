/**
 * Length-prefixed CBOR framing shared by the auth handshake and the invite protocol.
 * The frame limit is enforced by the length-prefix decoder before a byte is buffered
 * beyond it, and again by decodeBounded before parsing.
 */
import type { Stream } from '@libp2p/interface'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import { decodeBounded, encode } from '../util/cbor.js'

export interface FramedStream {
  read(signal: AbortSignal): Promise<unknown>
  write(value: unknown, signal: AbortSignal): Promise<void>
}

export function framed(stream: Stream, limit: number, what: string): FramedStream {
  const lp: LengthPrefixedStream<Stream> = lpStream(stream, { maxDataLength: limit })
  return {
    async read(signal) {
      const frame = await lp.read({ signal })
      return decodeBounded(frame.subarray(), limit, what)
    },
    async write(value, signal) {
      await lp.write(encode(value), { signal })
    },
  }
}

export function isMap(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array)
}
