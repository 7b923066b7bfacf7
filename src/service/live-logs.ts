/**
 * Live render logs across the mesh: `rmesh logs JOB --frame N --follow` on any node
 * streams the lines as Blender prints them on the node that renders the frame.
 *
 * Protocol /rmesh/live-logs/1.0.0 (see protocols/live-logs.md): the asker sends one
 * length-prefixed CBOR request {v: 1, job, frame?}; the renderer answers with CBOR
 * frames {line} until the frame (or job) ends, then closes. Admitted peers only.
 *
 * Invariants: requests and lines are size-bounded before decoding; a stream lives at
 * most MAX_FOLLOW_MS; the server never blocks the event bus (a slow reader loses lines,
 * which a follower tolerates: the complete log is stored with the result).
 */
import type { Connection, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import type { EventBus } from '../api/events.js'
import type { RmeshLibp2p } from '../net/host.js'
import { deadline, withDeadline } from '../util/abort.js'
import { contiguous } from '../util/bytes.js'
import { decodeBounded, encode } from '../util/cbor.js'
import { describeError, InvalidInputError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'

export const LIVE_LOGS_PROTOCOL = '/rmesh/live-logs/1.0.0'
export const MAX_LOG_REQUEST_BYTES = 1024
export const MAX_LOG_LINE_BYTES = 16 * 1024
export const MAX_FOLLOW_MS = 60 * 60_000

export interface LiveLogRequest {
  v: 1
  job: string
  frame?: number
}

export function validateLiveLogRequest(x: unknown): LiveLogRequest {
  const o = x as Record<string, unknown>
  if (!o || typeof o !== 'object' || o.v !== 1)
    throw new InvalidInputError('live-logs request: not {v: 1, job, frame?}')
  if (typeof o.job !== 'string' || !/^[a-z2-7]{8}$/.test(o.job))
    throw new InvalidInputError('live-logs request: bad job id')
  if (
    o.frame !== undefined &&
    (!Number.isInteger(o.frame) || Math.abs(o.frame as number) > 1_048_574)
  )
    throw new InvalidInputError('live-logs request: bad frame')
  return { v: 1, job: o.job, ...(o.frame === undefined ? {} : { frame: o.frame as number }) }
}

export interface LiveLogsComponents {
  libp2p: RmeshLibp2p
  events: EventBus
  logger: Logger
  isAdmitted: (peerId: string) => boolean
}

export interface LiveLogs {
  start(): Promise<void>
  stop(): Promise<void>
  /** Lines of `job`/`frame` as the peer renders them, until it ends or the signal fires. */
  follow(
    peer: string,
    job: string,
    frame: number | undefined,
    signal: AbortSignal,
  ): AsyncIterable<string>
}

export function createLiveLogs(c: LiveLogsComponents): LiveLogs {
  const handler = async (stream: Stream, connection: Connection) => {
    const peer = connection.remotePeer.toString()
    const lp = lpStream(stream, { maxDataLength: MAX_LOG_LINE_BYTES })
    const done = new AbortController()
    const bound = deadline(MAX_FOLLOW_MS, done.signal)
    const signal = bound.signal
    try {
      if (!c.isAdmitted(peer)) throw new InvalidInputError('peer not admitted')
      const raw = contiguous(await withDeadline(5_000, signal, (s) => lp.read({ signal: s })))
      const req = validateLiveLogRequest(
        decodeBounded(raw, MAX_LOG_REQUEST_BYTES, 'live-logs request'),
      )
      const sub = c.events.subscribe(
        (e) =>
          (e.type === 'log-line' &&
            e.jobId === req.job &&
            (req.frame === undefined || e.frame === req.frame)) ||
          (e.type === 'frame-updated' && e.jobId === req.job) ||
          (e.type === 'job-updated' && e.job.jobId === req.job),
      )
      signal.addEventListener('abort', () => sub.close(), { once: true })
      stream.addEventListener?.('close', () => done.abort())
      for await (const e of sub) {
        if (e.type === 'log-line') {
          await lp.write(encode({ line: e.line.slice(0, MAX_LOG_LINE_BYTES / 2) }), { signal })
        } else if (
          e.type === 'frame-updated' &&
          req.frame !== undefined &&
          e.frame.frame === req.frame &&
          (e.frame.state === 'done' || e.frame.state === 'failed')
        ) {
          break
        } else if (
          e.type === 'job-updated' &&
          ['done', 'failed', 'canceled'].includes(e.job.state)
        ) {
          break
        }
      }
      await withDeadline(5_000, undefined, (s) => stream.close({ signal: s })).catch(() => {})
    } catch (err) {
      c.logger.debug('live-logs stream ended', { peer, err: describeError(err) })
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      done.abort()
      bound.clear()
    }
  }

  return {
    async start() {
      await c.libp2p.handle(LIVE_LOGS_PROTOCOL, handler, { maxInboundStreams: 32 })
    },
    async stop() {
      await c.libp2p.unhandle(LIVE_LOGS_PROTOCOL).catch(() => {})
    },
    async *follow(peer, job, frame, signal) {
      const stream = await withDeadline(10_000, signal, (s) =>
        c.libp2p.dialProtocol(peerIdFromString(peer), LIVE_LOGS_PROTOCOL, { signal: s }),
      )
      const lp = lpStream(stream, { maxDataLength: MAX_LOG_LINE_BYTES })
      try {
        const req: LiveLogRequest = frame === undefined ? { v: 1, job } : { v: 1, job, frame }
        await lp.write(encode(req), { signal })
        for (;;) {
          let raw: Uint8Array
          try {
            raw = contiguous(await lp.read({ signal }))
          } catch (err) {
            if (signal.aborted) return
            // The renderer closed the stream: the frame ended.
            c.logger.debug('live-logs follow ended', { peer, err: describeError(err) })
            return
          }
          const msg = decodeBounded(raw, MAX_LOG_LINE_BYTES, 'live-logs line') as { line?: unknown }
          if (typeof msg?.line === 'string') yield msg.line
        }
      } finally {
        stream.abort(new Error('done'))
      }
    },
  }
}
