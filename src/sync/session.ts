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
import type { EntryId, LogEntry, LogId, PeerIdString } from '../log/types.js'
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
  MAX_RANGES_PER_FRAME,
  SEND_WINDOW,
  SYNC_PROTOCOL,
  SyncProtocolError,
} from './messages.js'
import {
  type AuthorRange,
  answerRanges,
  type LogSummary,
  rangesToRequest,
  summarize,
} from './summary.js'

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
  /** Entries the responder sent (stored, duplicate or refused). */
  entries: number
  /** Frame bytes read from and written to the stream (without the length prefixes). */
  bytesIn: number
  bytesOut: number
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

export interface LogPlan {
  /** The initiator lacks exactly these (it named only heads we know). */
  entries?: LogEntry[]
  /** The initiator holds entries we lack: it names what it lacks from this summary. */
  summary?: LogSummary
  /** The initiator holds entries we lack. */
  behind: boolean
}

/**
 * What the responder sends for one log, given the initiator's heads: nothing when the heads
 * are equal; the exact difference when it knows every head (or its seal dropped them); else
 * its per-author summary, when it holds anything the initiator may lack.
 */
export async function planResponse(
  log: LogManager,
  l: LogId,
  theirHeads: readonly EntryId[],
): Promise<LogPlan> {
  if (sameSet(await log.heads(l), theirHeads)) return { behind: false }
  const d = await log.diff(l, theirHeads)
  if (d.entries.length === 0) return { behind: !d.complete }
  if (d.complete) return { entries: d.entries, behind: false }
  return { summary: summarize(l, await log.entries(l)), behind: true }
}

export function createSessions(components: SessionComponents, options: SessionOptions): Sessions {
  const { libp2p, log, logger } = components
  const { readTimeoutMs } = options

  async function initiate(key: string, signal: AbortSignal): Promise<SessionResult> {
    const stream = await libp2p.dialProtocol(peerIdFromString(key), SYNC_PROTOCOL, { signal })
    const lp = lpStream(stream, { maxDataLength: MAX_FRAME_BYTES })
    const result: SessionResult = { received: 0, entries: 0, bytesIn: 0, bytesOut: 0 }
    const write = async (frame: Uint8Array) => {
      result.bytesOut += frame.byteLength
      await lp.write(frame, { signal })
    }
    const read = async () => {
      const chunk = await lp.read({ signal })
      result.bytesIn += chunk.byteLength
      return decodeFrame(chunk.subarray())
    }
    const join = async (entries: Uint8Array[]) => {
      result.entries += entries.length
      const r = await log.join(entries)
      result.received += r.added.length
      if (r.rejected.length > 0) {
        logger.debug('peer sent entries we refuse', {
          peer: key,
          codes: r.rejected.map((x) => x.error.code),
        })
      }
    }
    try {
      for (const frame of await headsFrames()) await write(frame)
      await write(encodeFrame({ t: 'end' }))
      // Phase 2: entries (exact diffs) and summaries of the logs whose heads R lacks.
      const summaries = new Map<LogId, LogSummary>()
      await readUntilEnd(read, async (f) => {
        // Acknowledge before joining: the responder's next frames travel meanwhile.
        if (f.t === 'entries' || f.t === 'summary') await write(encodeFrame({ t: 'ack' }))
        if (f.t === 'entries') await join(f.entries)
        else if (f.t === 'summary') {
          const known = summaries.get(f.log)
          if (known) known.authors.push(...f.authors)
          else summaries.set(f.log, { log: f.log, seal: f.seal, authors: [...f.authors] })
        } else throw new SyncProtocolError(`unexpected '${f.t}' frame`)
      })
      // Phase 3: the ranges we lack, per author.
      for (const [l, summary] of summaries) {
        const wanted = rangesToRequest(await log.entries(l), summary)
        for (let i = 0; i < wanted.length; i += MAX_RANGES_PER_FRAME) {
          await write(
            encodeFrame({ t: 'ranges', log: l, ranges: wanted.slice(i, i + MAX_RANGES_PER_FRAME) }),
          )
        }
      }
      await write(encodeFrame({ t: 'end' }))
      await readUntilEnd(read, async (f) => {
        if (f.t !== 'entries') throw new SyncProtocolError(`unexpected '${f.t}' frame`)
        await write(encodeFrame({ t: 'ack' }))
        await join(f.entries)
      })
      await stream.close({ signal })
      return result
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
    read: () => Promise<Frame>,
    onFrame: (f: Frame) => Promise<void>,
  ): Promise<void> {
    for (let n = 0; ; n++) {
      if (n > MAX_FRAMES_PER_PHASE) throw new SyncProtocolError('too many frames')
      const f = await read()
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
      // Per summarized log, the authors it listed: a request names only those, once each,
      // so what a peer can make us hold is bounded by what we told it.
      const summarized = new Map<LogId, Map<PeerIdString, AuthorRange | null>>()
      let behind = false
      for (const l of logs) {
        const plan = await planResponse(log, l, theirs.get(l) ?? [])
        if (plan.behind) behind = true
        if (plan.entries) await sendEntries(plan.entries.map((e) => e.bytes))
        if (!plan.summary) continue
        const summary = plan.summary
        summarized.set(l, new Map(summary.authors.map((a) => [a.author, null])))
        for (let i = 0; i < summary.authors.length; i += MAX_RANGES_PER_FRAME) {
          await send({
            t: 'summary',
            log: l,
            seal: summary.seal,
            authors: summary.authors.slice(i, i + MAX_RANGES_PER_FRAME),
          })
        }
      }
      await lp.write(encodeFrame({ t: 'end' }), { signal: session })
      for (let n = 0; ; n++) {
        if (n > MAX_FRAMES_PER_PHASE) throw new SyncProtocolError('too many frames')
        const f = await read()
        if (f.t === 'end') break
        if (f.t === 'ack') credit++
        else if (f.t === 'ranges') {
          const asked = summarized.get(f.log)
          if (!asked) throw new SyncProtocolError('ranges for a log that was not summarized')
          for (const r of f.ranges) if (asked.has(r.author)) asked.set(r.author, r)
        } else throw new SyncProtocolError(`unexpected '${f.t}' frame`)
      }
      for (const [l, asked] of summarized) {
        const requests = [...asked.values()].filter((r) => r !== null)
        if (requests.length === 0) continue
        const answer = answerRanges(await log.entries(l), requests)
        await sendEntries(answer.map((e) => e.bytes))
      }
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
