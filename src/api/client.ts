/**
 * Client of the control API (see ./types.ts) over the daemon's Unix socket.
 *
 * Invariants:
 * - Every call ends in bounded time: the caller's signal is combined with a default timeout
 *   (streams: a timeout until the response headers, then an idle timeout of three pings).
 * - Every failure is a typed RmeshError: ERR_DAEMON_NOT_RUNNING when the socket is absent or
 *   refuses, ERR_BAD_RESPONSE for garbage from the socket, ERR_TIMEOUT / ERR_ABORTED, or the
 *   API's own `error.code` passed through as an ApiError (with the HTTP status).
 * - Response bodies are size-limited before parsing; events are parsed line by line with a
 *   line-length limit.
 */
import type { IncomingMessage } from 'node:http'
import { dirname } from 'node:path'
import { deadline } from '../util/abort.js'
import { AbortedError, RmeshError, TimeoutError } from '../util/errors.js'
import { request as httpRequest } from '../util/node-http.js'
import {
  API_PREFIX,
  type ApiEvent,
  type DeleteResponse,
  EVENT_PING_INTERVAL_MS,
  type FetchRequest,
  type FetchResponse,
  type InspectRequest,
  type InviteRequest,
  type InviteResponse,
  type IssuedToken,
  type IssueTokenRequest,
  type JobDetail,
  type JobState,
  type JobSummary,
  type JoinResponse,
  type LimitsRequest,
  type LogsQuery,
  type NodeRulesView,
  type DetectResponse,
  MAX_EVENT_LINE_BYTES,
  type NodeInfo,
  type PeerInfo,
  type PauseRequest,
  type RenewRequest,
  type RetryRequest,
  type RetryResponse,
  type SceneInfo,
  type SubmitPlan,
  type SubmitRequest,
  type SubmitResponse,
  type TokenInfo,
} from './types.js'

export const DEFAULT_API_TIMEOUT_MS = 10_000
/** Inspecting a scene runs Blender; give it longer. */
export const INSPECT_TIMEOUT_MS = 60_000
/** Submitting imports (hashes) the scene: a 2 GiB file takes a while. */
export const SUBMIT_TIMEOUT_MS = 10 * 60_000
export const MAX_RESPONSE_BYTES = 64 * 1024 * 1024

/** No daemon answers on the socket. */
export class DaemonNotRunningError extends RmeshError {
  constructor(socketPath: string, cause?: unknown) {
    const dir = dirname(socketPath)
    super(
      'ERR_DAEMON_NOT_RUNNING',
      `no rmesh daemon is running for ${dir} (nothing answers on ${socketPath}); ` +
        `start one with \`rmesh daemon --dir ${dir}\``,
      { cause, details: { socketPath } },
    )
    this.name = 'DaemonNotRunningError'
  }
}

/** The socket answered with something that is not the API. */
export class BadResponseError extends RmeshError {
  constructor(what: string, details?: Record<string, unknown>) {
    super(
      'ERR_BAD_RESPONSE',
      `the daemon sent an unexpected response (${what}); is it an rmesh daemon of the same version?`,
      {
        details,
      },
    )
    this.name = 'BadResponseError'
  }
}

/** An error the API returned, code passed through. */
export class ApiError extends RmeshError {
  readonly status: number
  constructor(status: number, code: string, message: string, details?: Record<string, unknown>) {
    super(code, message, { details })
    this.name = 'ApiError'
    this.status = status
  }
}

export interface CallOptions {
  signal?: AbortSignal
  timeoutMs?: number
}

export interface StreamOptions {
  signal?: AbortSignal
  /** Time allowed until the response headers arrive. */
  connectTimeoutMs?: number
}

export interface ApiClient {
  readonly socketPath: string
  node(o?: CallOptions): Promise<NodeInfo>
  peers(o?: CallOptions): Promise<PeerInfo[]>
  jobs(o?: CallOptions & { states?: JobState[] }): Promise<JobSummary[]>
  job(jobId: string, o?: CallOptions): Promise<JobDetail>
  submit(req: SubmitRequest, o?: CallOptions): Promise<SubmitResponse>
  /** What a submit would carry, store and send (`submit --dry-run`); nothing is announced. */
  planSubmit(req: SubmitRequest, o?: CallOptions): Promise<SubmitPlan>
  inspect(req: InspectRequest, o?: CallOptions): Promise<SceneInfo>
  cancel(jobId: string, o?: CallOptions): Promise<JobSummary>
  pause(jobId: string, o?: CallOptions): Promise<JobSummary>
  resume(jobId: string, o?: CallOptions): Promise<JobSummary>
  /** The web UI: its URL, a one-time login link, its password (src/web/control.ts). */
  web(o?: CallOptions): Promise<{ url: string; loginRequired: boolean; passwordSet: boolean }>
  webLink(o?: CallOptions): Promise<{ url: string; expires: number | null }>
  webPassword(password: string, o?: CallOptions): Promise<{ passwordSet: true }>
  retry(jobId: string, req: RetryRequest, o?: CallOptions): Promise<RetryResponse>
  setPriority(jobId: string, priority: number, o?: CallOptions): Promise<JobSummary>
  deleteJob(jobId: string, o?: CallOptions): Promise<DeleteResponse>
  logs(jobId: string, q: Omit<LogsQuery, 'follow'>, o?: CallOptions): Promise<string>
  /** A done frame's thumbnail as PNG (404 ERR_NOT_FOUND until the frame is done). */
  thumbnailPng(jobId: string, frame: number, o?: CallOptions): Promise<Uint8Array>
  /** Lines (without the newline) until the frame or job ends or the signal fires. */
  followLogs(jobId: string, q: Omit<LogsQuery, 'follow'>, o?: StreamOptions): AsyncIterable<string>
  fetch(jobId: string, req: FetchRequest, o?: CallOptions): Promise<FetchResponse>
  tokens(o?: CallOptions): Promise<TokenInfo[]>
  issueToken(req: IssueTokenRequest, o?: CallOptions): Promise<IssuedToken>
  invite(req: InviteRequest, o?: CallOptions): Promise<InviteResponse>
  revokeToken(id: string, o?: CallOptions): Promise<TokenInfo>
  renewToken(req: RenewRequest, o?: CallOptions): Promise<IssuedToken>
  join(code: string, o?: CallOptions): Promise<JoinResponse>
  metrics(o?: CallOptions): Promise<string>
  /** This node's own rules (`rmesh node …`). */
  nodeRules(o?: CallOptions): Promise<NodeRulesView>
  pauseNode(mode: NonNullable<PauseRequest['mode']>, o?: CallOptions): Promise<NodeRulesView>
  resumeNode(o?: CallOptions): Promise<NodeRulesView>
  /** Find the Blenders and their devices again (one Blender run per executable). */
  detectEngines(o?: CallOptions): Promise<DetectResponse>
  /** null clears it. */
  setSchedule(schedule: string | null, o?: CallOptions): Promise<NodeRulesView>
  /** null turns idle-only off. */
  setIdle(minutes: number | null, loadPercent?: number, o?: CallOptions): Promise<NodeRulesView>
  setLimits(limits: LimitsRequest, o?: CallOptions): Promise<NodeRulesView>
  /** The event stream; ends when the daemon closes it, throws on errors and idle timeouts. */
  events(o?: StreamOptions & { logsOf?: string }): AsyncIterable<ApiEvent>
}

export interface ApiClientOptions {
  socketPath: string
  timeoutMs?: number
  /** Idle limit of a stream before it is judged dead. */
  streamIdleMs?: number
}

interface RawResponse {
  status: number
  contentType: string
  body: Buffer
}

export function createApiClient(options: ApiClientOptions): ApiClient {
  const { socketPath } = options
  const defaultTimeout = options.timeoutMs ?? DEFAULT_API_TIMEOUT_MS
  const streamIdleMs = options.streamIdleMs ?? EVENT_PING_INTERVAL_MS * 3

  /** Opens a request and resolves with the response once its headers are in. */
  function open(
    method: string,
    path: string,
    body: unknown,
    signal: AbortSignal,
  ): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
      const headers: Record<string, string | number> = { accept: 'application/json' }
      if (payload) {
        headers['content-type'] = 'application/json'
        headers['content-length'] = payload.length
      }
      // No agent: one connection per call, nothing pooled that could keep the CLI alive.
      const req = httpRequest({ socketPath, path, method, headers, signal, agent: false })
      req.on('error', (err) =>
        reject(mapTransportError(err, signal, socketPath, `${method} ${path}`)),
      )
      req.on('response', resolve)
      req.end(payload)
    })
  }

  async function readBody(
    res: IncomingMessage,
    signal: AbortSignal,
    what: string,
  ): Promise<Buffer> {
    const chunks: Buffer[] = []
    let size = 0
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        size += chunk.length
        if (size > MAX_RESPONSE_BYTES) {
          res.destroy()
          throw new BadResponseError(`body over ${MAX_RESPONSE_BYTES} bytes`)
        }
        chunks.push(chunk)
      }
    } catch (err) {
      if (err instanceof RmeshError) throw err
      throw mapTransportError(err, signal, socketPath, what)
    }
    return Buffer.concat(chunks)
  }

  async function raw(
    method: string,
    path: string,
    body: unknown,
    o: CallOptions | undefined,
    timeout = defaultTimeout,
  ) {
    const ms = o?.timeoutMs ?? timeout
    const bound = deadline(ms, o?.signal)
    let res: IncomingMessage
    let buf: Buffer
    try {
      res = await open(method, path, body, bound.signal)
      buf = await readBody(res, bound.signal, `${method} ${path}`)
    } catch (err) {
      throw err instanceof TimeoutError ? new TimeoutError(`${method} ${path}`, ms) : err
    } finally {
      bound.clear()
    }
    const out: RawResponse = {
      status: res.statusCode ?? 0,
      contentType: String(res.headers['content-type'] ?? ''),
      body: buf,
    }
    if (out.status >= 400) throw errorFrom(out)
    return out
  }

  async function json<T>(
    method: string,
    path: string,
    body?: unknown,
    o?: CallOptions,
    timeout?: number,
  ): Promise<T> {
    const res = await raw(method, path, body, o, timeout)
    return parseJson(res.body, `${method} ${path}`) as T
  }

  async function text(path: string, o?: CallOptions): Promise<string> {
    const res = await raw('GET', path, undefined, o)
    return res.body.toString('utf8')
  }

  /** Opens a streaming GET; yields complete lines, enforcing the line limit and idle timeout. */
  async function* lines(path: string, o: StreamOptions | undefined): AsyncGenerator<string> {
    const controller = new AbortController()
    const outer = o?.signal
    const onOuter = () => controller.abort(outer?.reason)
    if (outer?.aborted) throw new AbortedError(`GET ${path}`)
    outer?.addEventListener('abort', onOuter, { once: true })
    const connectTimer = setTimeout(
      () => controller.abort(new DOMException('timeout', 'TimeoutError')),
      o?.connectTimeoutMs ?? defaultTimeout,
    )
    let idleTimer: NodeJS.Timeout | undefined
    const armIdle = () => {
      clearTimeout(idleTimer)
      idleTimer = setTimeout(
        () => controller.abort(new DOMException('idle', 'TimeoutError')),
        streamIdleMs,
      )
    }
    try {
      const res = await open('GET', path, undefined, controller.signal)
      clearTimeout(connectTimer)
      if ((res.statusCode ?? 0) >= 400) {
        const body = await readBody(res, controller.signal, `GET ${path}`)
        throw errorFrom({
          status: res.statusCode ?? 0,
          contentType: String(res.headers['content-type'] ?? ''),
          body,
        })
      }
      armIdle()
      let pending = ''
      try {
        for await (const chunk of res as AsyncIterable<Buffer>) {
          armIdle()
          pending += chunk.toString('utf8')
          let nl = pending.indexOf('\n')
          while (nl >= 0) {
            const line = pending.slice(0, nl).replace(/\r$/, '')
            pending = pending.slice(nl + 1)
            yield line
            nl = pending.indexOf('\n')
          }
          if (pending.length > MAX_EVENT_LINE_BYTES) {
            throw new BadResponseError(`stream line over ${MAX_EVENT_LINE_BYTES} bytes`)
          }
        }
      } catch (err) {
        if (err instanceof RmeshError) throw err
        throw mapTransportError(err, controller.signal, socketPath, `GET ${path}`)
      }
      if (controller.signal.aborted)
        throw mapTransportError(undefined, controller.signal, socketPath, `GET ${path}`)
      if (pending.length > 0) yield pending
    } finally {
      clearTimeout(connectTimer)
      clearTimeout(idleTimer)
      outer?.removeEventListener('abort', onOuter)
      // Ends the request when the consumer stops early (break/return).
      controller.abort(new AbortedError('stream closed'))
    }
  }

  const jobPath = (id: string, rest = '') => `${API_PREFIX}/jobs/${encodeURIComponent(id)}${rest}`

  return {
    socketPath,
    node: (o) => json('GET', `${API_PREFIX}/node`, undefined, o),
    peers: (o) => json('GET', `${API_PREFIX}/peers`, undefined, o),
    jobs: (o) => {
      const q = o?.states?.length ? `?state=${o.states.map(encodeURIComponent).join(',')}` : ''
      return json('GET', `${API_PREFIX}/jobs${q}`, undefined, o)
    },
    job: (id, o) => json('GET', jobPath(id), undefined, o),
    submit: (req, o) => json('POST', `${API_PREFIX}/jobs`, req, o, SUBMIT_TIMEOUT_MS),
    planSubmit: (req, o) => json('POST', `${API_PREFIX}/jobs/plan`, req, o, SUBMIT_TIMEOUT_MS),
    inspect: (req, o) => json('POST', `${API_PREFIX}/scenes/inspect`, req, o, INSPECT_TIMEOUT_MS),
    cancel: (id, o) => json('POST', jobPath(id, '/cancel'), {}, o),
    pause: (id, o) => json('POST', jobPath(id, '/pause'), {}, o),
    resume: (id, o) => json('POST', jobPath(id, '/resume'), {}, o),
    web: (o) => json('GET', '/v1/web', undefined, o),
    webLink: (o) => json('POST', '/v1/web/link', {}, o),
    webPassword: (password, o) => json('POST', '/v1/web/password', { password }, o),
    retry: (id, req, o) => json('POST', jobPath(id, '/retry'), req, o),
    setPriority: (id, priority, o) => json('POST', jobPath(id, '/priority'), { priority }, o),
    deleteJob: (id, o) => json('DELETE', jobPath(id), undefined, o),
    logs: (id, q, o) => text(jobPath(id, `/logs${logsQuery(q, false)}`), o),
    thumbnailPng: async (id, frame, o) =>
      (await raw('GET', jobPath(id, `/frames/${frame}/thumb?as=png`), undefined, o)).body,
    followLogs: (id, q, o) => lines(jobPath(id, `/logs${logsQuery(q, true)}`), o),
    fetch: (id, req, o) => json('POST', jobPath(id, '/fetch'), req, o, SUBMIT_TIMEOUT_MS),
    tokens: (o) => json('GET', `${API_PREFIX}/tokens`, undefined, o),
    issueToken: (req, o) => json('POST', `${API_PREFIX}/tokens`, req, o),
    invite: (req, o) => json('POST', `${API_PREFIX}/tokens/invite`, req, o),
    revokeToken: (id, o) =>
      json('POST', `${API_PREFIX}/tokens/${encodeURIComponent(id)}/revoke`, {}, o),
    renewToken: (req, o) => json('POST', `${API_PREFIX}/tokens/renew`, req, o),
    // Redeeming an invite dials the inviting node: allow for a slow network.
    join: (code, o) => json('POST', `${API_PREFIX}/join`, { code }, o, 30_000),
    metrics: (o) => text('/metrics', o),
    nodeRules: (o) => json('GET', `${API_PREFIX}/node/rules`, undefined, o),
    pauseNode: (mode, o) => json('POST', `${API_PREFIX}/node/pause`, { mode }, o),
    resumeNode: (o) => json('POST', `${API_PREFIX}/node/resume`, {}, o),
    detectEngines: (o) => json('POST', `${API_PREFIX}/node/detect`, {}, o, 180_000),
    setSchedule: (schedule, o) => json('POST', `${API_PREFIX}/node/schedule`, { schedule }, o),
    setIdle: (minutes, loadPercent, o) =>
      json(
        'POST',
        `${API_PREFIX}/node/idle`,
        loadPercent === undefined ? { minutes } : { minutes, loadPercent },
        o,
      ),
    setLimits: (limits, o) => json('POST', `${API_PREFIX}/node/limits`, limits, o),
    events: (o) =>
      parseEvents(
        lines(`${API_PREFIX}/events${o?.logsOf ? `?logs=${encodeURIComponent(o.logsOf)}` : ''}`, o),
      ),
  }
}

async function* parseEvents(source: AsyncIterable<string>): AsyncGenerator<ApiEvent> {
  for await (const line of source) {
    if (line.trim() === '') continue
    const value = parseJson(Buffer.from(line), 'event')
    if (
      typeof value !== 'object' ||
      value === null ||
      typeof (value as { type?: unknown }).type !== 'string'
    ) {
      throw new BadResponseError('event without a type')
    }
    yield value as ApiEvent
  }
}

function logsQuery(q: Omit<LogsQuery, 'follow'>, follow: boolean): string {
  const p = new URLSearchParams()
  if (q.frame !== undefined) p.set('frame', String(q.frame))
  if (q.attempt !== undefined) p.set('attempt', String(q.attempt))
  if (q.tail !== undefined) p.set('tail', String(q.tail))
  if (follow) p.set('follow', '1')
  const s = p.toString()
  return s ? `?${s}` : ''
}

function parseJson(body: Buffer, what: string): unknown {
  try {
    return JSON.parse(body.toString('utf8'))
  } catch {
    throw new BadResponseError(`${what}: not JSON`, {
      sample: body.subarray(0, 80).toString('utf8'),
    })
  }
}

function errorFrom(res: RawResponse): RmeshError {
  let value: unknown
  try {
    value = JSON.parse(res.body.toString('utf8'))
  } catch {
    return new BadResponseError(`HTTP ${res.status} without a JSON error`, { status: res.status })
  }
  const e = (value as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null)
    ?.error
  if (!e || typeof e.code !== 'string' || typeof e.message !== 'string') {
    return new BadResponseError(`HTTP ${res.status} with a malformed error`, { status: res.status })
  }
  const details =
    typeof e.details === 'object' && e.details !== null
      ? (e.details as Record<string, unknown>)
      : undefined
  return new ApiError(res.status, e.code, e.message, details)
}

// ENOENT: no socket; ECONNREFUSED: a stale socket left by a crash; ENOTSOCK: not a socket.
const NOT_RUNNING = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK'])

function mapTransportError(
  err: unknown,
  signal: AbortSignal,
  socketPath: string,
  what: string,
  ms = 0,
): RmeshError {
  if (err instanceof RmeshError) return err
  if (signal.aborted) {
    const reason = signal.reason
    if (reason instanceof RmeshError) return reason
    if (reason instanceof DOMException && reason.name === 'TimeoutError')
      return new TimeoutError(what, ms)
    return new AbortedError(what)
  }
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if (code === 'EACCES' || code === 'EPERM') {
    return new RmeshError(
      'ERR_SOCKET_PERMISSION',
      `cannot open ${socketPath}: permission denied; run rmesh as the user that runs the daemon`,
      {
        cause: err,
      },
    )
  }
  if (code && NOT_RUNNING.has(code)) return new DaemonNotRunningError(socketPath, err)
  // A peer that hangs up mid-response or sends something that is not HTTP.
  return new BadResponseError(`${what}: ${(err as Error | undefined)?.message ?? String(err)}`, {
    code,
  })
}
