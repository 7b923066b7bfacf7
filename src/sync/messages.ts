/**
 * Wire messages of the log sync protocol and the gossip topic (protocols/log-sync.md).
 *
 * Invariants: every frame is one CBOR array whose first element is a tag; frames are
 * bounded (MAX_FRAME_BYTES) before decoding and checked for shape after; anything else is
 * a SyncProtocolError, which ends that session only.
 */
import { decodeBounded, encode } from '../util/cbor.js'
import { RmeshError } from '../util/errors.js'
import { isCidString } from '../util/hash.js'
import { isAuthorString, isLogId, MAX_ENTRY_BYTES } from '../log/entry.js'
import type { EntryId, LogId, PeerIdString } from '../log/types.js'
import { type AuthorRange, FINGERPRINT_BYTES, type SealRef } from './summary.js'

/** Version 2: per-author summaries and ranges replace v1's offer and want (v1 is not served). */
export const SYNC_PROTOCOL = '/rmesh/log-sync/2.0.0'
export const LOG_TOPIC = 'rmesh/log/1.0.0'
export const MAX_FRAME_BYTES = 1024 * 1024
/** Entry frames are cut at this size so a window of them stays well under the stream buffer. */
export const ENTRY_FRAME_TARGET = 256 * 1024
/** Frames the responder may send before the initiator acknowledges them. */
export const SEND_WINDOW = 4
export const MAX_GOSSIP_BYTES = 1024 * 1024
export const MAX_GOSSIP_ENTRIES = 256
export const MAX_HEADS_PER_LOG = 1024
export const MAX_FRAMES_PER_PHASE = 4096
/** Author items in one summary or ranges frame (~90 bytes each: well under a frame). */
export const MAX_RANGES_PER_FRAME = 4096

export class SyncProtocolError extends RmeshError {
  constructor(message: string, cause?: unknown) {
    super('ERR_SYNC_PROTOCOL', `log sync: ${message}`, { cause })
    this.name = 'SyncProtocolError'
  }
}

export class NotAdmittedError extends RmeshError {
  constructor(peer: string) {
    super('ERR_NOT_ADMITTED', `peer ${peer.slice(0, 80)} is not admitted to this mesh`)
    this.name = 'NotAdmittedError'
  }
}

export type Frame =
  | { t: 'heads'; logs: Array<[LogId, EntryId[]]> }
  | { t: 'entries'; entries: Uint8Array[] }
  | { t: 'summary'; log: LogId; seal: SealRef | null; authors: AuthorRange[] }
  | { t: 'ranges'; log: LogId; ranges: AuthorRange[] }
  | { t: 'ack' }
  | { t: 'end' }

export function encodeFrame(f: Frame): Uint8Array {
  switch (f.t) {
    case 'heads':
      return encode(['heads', f.logs])
    case 'entries':
      return encode(['entries', f.entries])
    case 'summary':
      return encode([
        'summary',
        f.log,
        f.seal && [f.seal.id, f.seal.clock, f.seal.author],
        f.authors.map(encodeRange),
      ])
    case 'ranges':
      return encode(['ranges', f.log, f.ranges.map(encodeRange)])
    default:
      return encode([f.t])
  }
}

function ids(x: unknown, max: number): EntryId[] {
  if (!Array.isArray(x) || x.length > max || !x.every((id) => isCidString(id))) {
    throw new SyncProtocolError('expected a list of entry ids')
  }
  return x as EntryId[]
}

function encodeRange(r: AuthorRange): unknown[] {
  return [r.author, r.max, r.count, r.fp]
}

function author(x: unknown): PeerIdString {
  if (!isAuthorString(x)) throw new SyncProtocolError('bad author')
  return x
}

function clockOrNone(x: unknown): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < -1)
    throw new SyncProtocolError('bad clock')
  return x
}

function ranges(x: unknown): AuthorRange[] {
  if (!Array.isArray(x) || x.length > MAX_RANGES_PER_FRAME)
    throw new SyncProtocolError(`expected a list of at most ${MAX_RANGES_PER_FRAME} author ranges`)
  return x.map((item) => {
    if (!Array.isArray(item) || item.length !== 4) throw new SyncProtocolError('bad author range')
    const [a, max, count, fp] = item
    if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0)
      throw new SyncProtocolError('bad count')
    if (!(fp instanceof Uint8Array) || fp.byteLength !== FINGERPRINT_BYTES)
      throw new SyncProtocolError(`fingerprint must be ${FINGERPRINT_BYTES} bytes`)
    return { author: author(a), max: clockOrNone(max), count, fp }
  })
}

function seal(x: unknown): SealRef | null {
  if (x === null) return null
  if (!Array.isArray(x) || x.length !== 3 || !isCidString(x[0]))
    throw new SyncProtocolError('bad seal')
  const clock = clockOrNone(x[1])
  if (clock < 0) throw new SyncProtocolError('bad seal clock')
  return { id: x[0] as EntryId, clock, author: author(x[2]) }
}

export function decodeFrame(bytes: Uint8Array): Frame {
  let v: unknown
  try {
    v = decodeBounded(bytes, MAX_FRAME_BYTES, 'log sync frame')
  } catch (err) {
    throw new SyncProtocolError('undecodable frame', err)
  }
  if (!Array.isArray(v) || typeof v[0] !== 'string')
    throw new SyncProtocolError('frame is not a tagged array')
  switch (v[0]) {
    case 'heads': {
      if (!Array.isArray(v[1])) throw new SyncProtocolError('heads must be a list')
      const logs: Array<[LogId, EntryId[]]> = []
      for (const item of v[1]) {
        if (!Array.isArray(item) || item.length !== 2 || !isLogId(item[0]))
          throw new SyncProtocolError('bad heads item')
        logs.push([item[0], ids(item[1], MAX_HEADS_PER_LOG)])
      }
      return { t: 'heads', logs }
    }
    case 'entries': {
      const list = v[1]
      if (
        !Array.isArray(list) ||
        !list.every((b) => b instanceof Uint8Array && b.byteLength <= MAX_ENTRY_BYTES)
      ) {
        throw new SyncProtocolError('entries must be a list of entry byte strings')
      }
      return { t: 'entries', entries: list as Uint8Array[] }
    }
    case 'summary':
      if (v.length !== 4 || !isLogId(v[1])) throw new SyncProtocolError('bad summary')
      return { t: 'summary', log: v[1], seal: seal(v[2]), authors: ranges(v[3]) }
    case 'ranges':
      if (v.length !== 3 || !isLogId(v[1])) throw new SyncProtocolError('bad ranges')
      return { t: 'ranges', log: v[1], ranges: ranges(v[2]) }
    case 'ack':
    case 'end':
      return { t: v[0] }
    default:
      throw new SyncProtocolError(`unknown frame '${String(v[0]).slice(0, 20)}'`)
  }
}

/** Gossip message: CBOR array of 1..MAX_GOSSIP_ENTRIES entry envelopes. */
export function encodeGossip(entries: Uint8Array[]): Uint8Array {
  return encode(entries)
}

export function decodeGossip(data: Uint8Array): Uint8Array[] {
  let v: unknown
  try {
    v = decodeBounded(data, MAX_GOSSIP_BYTES, 'log gossip message')
  } catch (err) {
    throw new SyncProtocolError('undecodable gossip message', err)
  }
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_GOSSIP_ENTRIES) {
    throw new SyncProtocolError('gossip message must be a list of entries')
  }
  if (!v.every((b) => b instanceof Uint8Array))
    throw new SyncProtocolError('gossip entries must be byte strings')
  return v as Uint8Array[]
}
