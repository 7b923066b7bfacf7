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
import { MAX_ENTRY_BYTES, isLogId } from '../log/entry.js'
import type { EntryId, LogId } from '../log/types.js'

export const SYNC_PROTOCOL = '/rmesh/log-sync/1.0.0'
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
  | { t: 'offer'; log: LogId; ids: EntryId[] }
  | { t: 'want'; ids: EntryId[] }
  | { t: 'ack' }
  | { t: 'end' }

export function encodeFrame(f: Frame): Uint8Array {
  switch (f.t) {
    case 'heads':
      return encode(['heads', f.logs])
    case 'entries':
      return encode(['entries', f.entries])
    case 'offer':
      return encode(['offer', f.log, f.ids])
    case 'want':
      return encode(['want', f.ids])
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
    case 'offer':
      if (!isLogId(v[1])) throw new SyncProtocolError('bad offer log')
      return { t: 'offer', log: v[1], ids: ids(v[2], MAX_FRAME_BYTES / 40) }
    case 'want':
      return { t: 'want', ids: ids(v[1], MAX_FRAME_BYTES / 40) }
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
