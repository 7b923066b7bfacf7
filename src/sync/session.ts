/**
 * Anti-entropy sessions of the log sync protocol (protocols/log-sync.md): the initiator's
 * side (heads → what the responder sends → wants) and the responder's.
 *
 * Invariants:
 *  - every frame is bounded (MAX_FRAME_BYTES) before it is decoded, every phase by
 *    MAX_FRAMES_PER_PHASE, every read by the caller's signal;
 *  - the responder sends at most SEND_WINDOW unacknowledged frames, so a slow joiner
 *    throttles its sender;
 *  - a peer's bad frame ends that session only (SyncProtocolError; the stream is reset by
 *    the caller); entries are joined, never trusted, so a session can lose nothing.
 */
import type { Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import type { LogManager } from '../log/log.js'
import type { EntryId, LogId } from '../log/types.js'
import type { RmeshLibp2p } from '../net/host.js'
import { withDeadline } from '../util/abort.js'
import { describeError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'
import {
  decodeFrame,
  ENTRY_FRAME_TARGET,
  encodeFrame,
  type Frame,
  MAX_FRAME_BYTES,
  MAX_FRAMES_PER_PHASE,
  SEND_WINDOW,
  SYNC_PROTOCOL,
  SyncProtocolError,
} from './messages.js'

export interface SessionComponents {
  libp2p: RmeshLibp2p
  log: LogManager
  logger: Logger
}

export interface SessionOptions {
  /** Deadline of one read on the responder side. */
  readTimeoutMs: number
}

export interface SessionResult {
  /** Entries stored by this session. */
  received: number
}

export interface Sessions {
  /** Run one session as initiator with `peer`, within `signal`. */
  initiate(peer: string, signal: AbortSignal): Promise<SessionResult>
  /**
   * Serve one session as responder within `signal`. Resolves `behind` when the initiator
   * holds entries this node lacks (the caller then pulls them with a session of its own).
   */
  serve(stream: Stream, peer: string, signal: AbortSignal): Promise<{ behind: boolean }>
}

const ENTRIES_PER_FRAME = 512
const IDS_PER_FRAME = 16_384

export function createSessions(components: SessionComponents, options: SessionOptions): Sessions {
  const { libp2p, log, logger } = components
  const { readTimeoutMs } = options

  async function initiate(key: string, signal: AbortSignal): Promise<SessionResult> {
    const stream = await libp2p.dialProtocol(peerIdFromString(key), SYNC_PROTOCOL, { signal })
    const lp = lpStream(stream, { maxDataLength: MAX_FRAME_BYTES })
    let received = 0
    const take = async (f: Frame): Promise<EntryId[]> => {
      if (f.t === 'entries') {
        const r = await log.join(f.entries)
        received += r.added.length
        if (r.rejected.length > 0) {
          logger.debug('peer sent entries we refuse', {
            peer: key,
            codes: r.rejected.map((x) => x.error.code),
          })
        }
      }
      const wanted: EntryId[] = []
      if (f.t === 'offer') for (const id of f.ids) if (!(await log.has(id))) wanted.push(id)
      await lp.write(encodeFrame({ t: 'ack' }), { signal })
      return wanted
    }
    try {
      for (const frame of await headsFrames()) await lp.write(frame, { signal })
      await lp.write(encodeFrame({ t: 'end' }), { signal })
      const wants: EntryId[] = []
      await readUntilEnd(lp, signal, async (f) => {
        if (f.t !== 'entries' && f.t !== 'offer')
          throw new SyncProtocolError(`unexpected '${f.t}' frame`)
        wants.push(...(await take(f)))
      })
      for (let i = 0; i < wants.length; i += IDS_PER_FRAME) {
        await lp.write(encodeFrame({ t: 'want', ids: wants.slice(i, i + IDS_PER_FRAME) }), {
          signal,
        })
      }
      await lp.write(encodeFrame({ t: 'end' }), { signal })
      await readUntilEnd(lp, signal, async (f) => {
        if (f.t !== 'entries') throw new SyncProtocolError(`unexpected '${f.t}' frame`)
        await take(f)
      })
      await stream.close({ signal })
      return { received }
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      throw err
    }
  }

  async function headsFrames(): Promise<Uint8Array[]> {
    const frames: Uint8Array[] = []
    let batch: Array<[LogId, EntryId[]]> = []
    let size = 0
    for (const l of await log.logs()) {
      const heads = await log.heads(l)
      const cost = l.length + heads.length * 64 + 16
      if (size + cost > MAX_FRAME_BYTES / 2 && batch.length > 0) {
        frames.push(encodeFrame({ t: 'heads', logs: batch }))
        batch = []
        size = 0
      }
      batch.push([l, heads])
      size += cost
    }
    if (batch.length > 0) frames.push(encodeFrame({ t: 'heads', logs: batch }))
    return frames
  }

  async function readFrame(lp: LengthPrefixedStream<Stream>, signal: AbortSignal): Promise<Frame> {
    const chunk = await lp.read({ signal })
    return decodeFrame(chunk.subarray())
  }

  async function readUntilEnd(
    lp: LengthPrefixedStream<Stream>,
    signal: AbortSignal,
    onFrame: (f: Frame) => Promise<void>,
  ): Promise<void> {
    for (let n = 0; ; n++) {
      if (n > MAX_FRAMES_PER_PHASE) throw new SyncProtocolError('too many frames')
      const f = await readFrame(lp, signal)
      if (f.t === 'end') return
      await onFrame(f)
    }
  }

  // ---------------------------------------------------------------- responder

  async function serve(
    stream: Stream,
    peer: string,
    session: AbortSignal,
  ): Promise<{ behind: boolean }> {
    const lp = lpStream(stream, { maxDataLength: MAX_FRAME_BYTES })
    const read = () => withDeadline(readTimeoutMs, session, (signal) => readFrame(lp, signal))
    let credit = SEND_WINDOW
    const send = async (f: Frame) => {
      while (credit === 0) {
        const got = await read()
        if (got.t !== 'ack') throw new SyncProtocolError(`unexpected '${got.t}' frame`)
        credit++
      }
      credit--
      await lp.write(encodeFrame(f), { signal: session })
    }
    const sendEntries = async (entries: Uint8Array[]) => {
      let batch: Uint8Array[] = []
      let size = 0
      for (const bytes of entries) {
        if (
          batch.length > 0 &&
          (size + bytes.byteLength > ENTRY_FRAME_TARGET || batch.length >= ENTRIES_PER_FRAME)
        ) {
          await send({ t: 'entries', entries: batch })
          batch = []
          size = 0
        }
        batch.push(bytes)
        size += bytes.byteLength
      }
      if (batch.length > 0) await send({ t: 'entries', entries: batch })
    }
    try {
      const theirs = new Map<LogId, EntryId[]>()
      for (let n = 0; ; n++) {
        if (n > MAX_FRAMES_PER_PHASE) throw new SyncProtocolError('too many frames')
        const f = await read()
        if (f.t === 'end') break
        if (f.t !== 'heads') throw new SyncProtocolError(`unexpected '${f.t}' frame`)
        for (const [l, h] of f.logs) theirs.set(l, h)
      }
      const logs = [...new Set([...(await log.logs()), ...theirs.keys()])].sort()
      const offered = new Set<string>()
      let behind = false
      for (const l of logs) {
        const theirHeads = theirs.get(l) ?? []
        const ours = await log.heads(l)
        if (sameSet(ours, theirHeads)) continue
        const d = await log.diff(l, theirHeads)
        if (!d.complete) behind = true
        if (d.entries.length === 0) continue
        if (d.complete) {
          await sendEntries(d.entries.map((e) => e.bytes))
          continue
        }
        const ids = d.entries.map((e) => e.id)
        for (const id of ids) offered.add(id)
        for (let i = 0; i < ids.length; i += IDS_PER_FRAME) {
          await send({ t: 'offer', log: l, ids: ids.slice(i, i + IDS_PER_FRAME) })
        }
      }
      await lp.write(encodeFrame({ t: 'end' }), { signal: session })
      const wants: EntryId[] = []
      for (let n = 0; ; n++) {
        if (n > MAX_FRAMES_PER_PHASE) throw new SyncProtocolError('too many frames')
        const f = await read()
        if (f.t === 'end') break
        if (f.t === 'ack') credit++
        else if (f.t === 'want') wants.push(...f.ids.filter((id) => offered.has(id)))
        else throw new SyncProtocolError(`unexpected '${f.t}' frame`)
      }
      // Offers were in clock order per log, so wants are too: parents go first.
      const bytes: Uint8Array[] = []
      for (const id of new Set(wants)) {
        const e = await log.get(id)
        if (e) bytes.push(e.bytes)
      }
      await sendEntries(bytes)
      await lp.write(encodeFrame({ t: 'end' }), { signal: session })
      await stream.close({ signal: session })
      return { behind }
    } catch (err) {
      logger.debug('sync session served with an error', { peer, err: describeError(err) })
      throw err
    }
  }

  return { initiate, serve }
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false
  const s = new Set(a)
  return b.every((x) => s.has(x))
}
