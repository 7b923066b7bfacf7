/**
 * The control API's HTTP layer: a Unix socket (mode 0600, only the local user), JSON in
 * and out, a tiny router, and NDJSON streaming responses. The router and the response
 * writers are shared with the web server (src/web/), which puts its own gate in front.
 *
 * Invariants:
 *  - request bodies are bounded (MAX_BODY_BYTES) before parsing;
 *  - every error leaves as `{error: {code, message, details?}}` with a fitting status;
 *    a handler that throws something unexpected yields 500 and the daemon stays up;
 *  - a stale socket from a crashed daemon is removed; a live one means another daemon
 *    owns this data directory, and we refuse to start.
 */
import { createReadStream } from 'node:fs'
import { chmod, stat, unlink } from 'node:fs/promises'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { pipeline } from 'node:stream/promises'
import { describeError, InvalidInputError, isRmeshError, RmeshError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'
import { createServer } from '../util/node-http.js'
import { API_ERROR_STATUS } from './types.js'

export const MAX_BODY_BYTES = 1 << 20

export class DaemonAlreadyRunningError extends RmeshError {
  constructor(socketPath: string) {
    super(
      'ERR_DAEMON_RUNNING',
      `another rmesh daemon is already running on this data directory (its socket ${socketPath} answers); stop it first or use another --dir`,
    )
    this.name = 'DaemonAlreadyRunningError'
  }
}

export interface ApiRequest {
  method: string
  path: string
  params: Record<string, string>
  query: URLSearchParams
  body: unknown
  signal: AbortSignal
}

/** A handler returns JSON-able data, a Text, Bytes, a File, or a Stream (NDJSON or text lines). */
export type ApiResult = unknown | ApiText | ApiBytes | ApiFile | ApiStream

export class ApiText {
  constructor(
    readonly text: string,
    readonly contentType = 'text/plain; charset=utf-8',
  ) {}
}

export class ApiStream {
  /** `run` writes lines until the signal fires or it returns. */
  constructor(
    readonly run: (write: (line: string) => boolean, signal: AbortSignal) => Promise<void>,
    readonly contentType = 'application/x-ndjson',
  ) {}
}

/** A binary body held in memory (a thumbnail). */
export class ApiBytes {
  constructor(
    readonly bytes: Uint8Array,
    readonly contentType: string,
  ) {}
}

/**
 * A file streamed from disk: `path` is chosen by the daemon (an output it recorded, or a
 * temporary file it made), never by the request; `cleanup` runs once it is sent or not.
 */
export class ApiFile {
  constructor(
    readonly path: string,
    readonly contentType: string,
    readonly options: { cleanup?: () => Promise<void>; downloadName?: string } = {},
  ) {}
}

export type ApiHandler = (req: ApiRequest) => Promise<ApiResult> | ApiResult

const STATUS_BY_CODE: Record<string, number> = API_ERROR_STATUS

export function statusFor(err: unknown): number {
  if (isRmeshError(err)) {
    if (err.code === 'ERR_METHOD_NOT_ALLOWED') return 405
    if (STATUS_BY_CODE[err.code]) return STATUS_BY_CODE[err.code]
    if (/_NOT_FOUND$/.test(err.code)) return 404
    if (/^ERR_(TOKEN|AUTH|INVITE)/.test(err.code)) return 403
    if (/(INVALID|MALFORMED|PARAMS|SCENE)/.test(err.code)) return 400
    return 500
  }
  return 500
}

interface Route {
  method: string
  pattern: string
  parts: string[]
  handler: ApiHandler
}

/** The route table of the control API, shared by the Unix socket and the web server. */
export interface ApiRouter {
  route(method: string, pattern: string, handler: ApiHandler): void
  /** The route for `method path`; ERR_NOT_FOUND or ERR_METHOD_NOT_ALLOWED when none. */
  resolve(
    method: string,
    path: string,
  ): { pattern: string; handler: ApiHandler; params: Record<string, string> }
}

export function createApiRouter(): ApiRouter {
  const routes: Route[] = []
  const match = (route: Route, segs: string[]): Record<string, string> | undefined => {
    if (route.parts.length !== segs.length) return undefined
    const params: Record<string, string> = {}
    for (let i = 0; i < segs.length; i++) {
      const p = route.parts[i]
      if (p.startsWith(':')) {
        try {
          params[p.slice(1)] = decodeURIComponent(segs[i])
        } catch {
          throw new InvalidInputError(`the path segment ${p.slice(1)} is not valid URL encoding`)
        }
      } else if (p !== segs[i]) return undefined
    }
    return params
  }
  return {
    route(method, pattern, handler) {
      routes.push({
        method: method.toUpperCase(),
        pattern,
        parts: pattern.split('/').filter(Boolean),
        handler,
      })
    },
    resolve(method, path) {
      const segs = path.split('/').filter(Boolean)
      let exists = false
      for (const route of routes) {
        const params = match(route, segs)
        if (!params) continue
        if (route.method === method)
          return { pattern: route.pattern, handler: route.handler, params }
        exists = true
      }
      throw new RmeshError(
        exists ? 'ERR_METHOD_NOT_ALLOWED' : 'ERR_NOT_FOUND',
        exists ? `${method} is not allowed on ${path}` : `no such endpoint: ${method} ${path}`,
      )
    },
  }
}

/** The request body as JSON, refused past `maxBytes` before parsing. */
export async function readJsonBody(
  req: IncomingMessage,
  maxBytes = MAX_BODY_BYTES,
): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > maxBytes)
    throw new RmeshError('ERR_TOO_LARGE', `request body over ${maxBytes} bytes`)
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > maxBytes)
      throw new RmeshError('ERR_TOO_LARGE', `request body over ${maxBytes} bytes`)
    chunks.push(chunk as Buffer)
  }
  if (size === 0) return undefined
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new InvalidInputError('request body is not valid JSON')
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): void {
  const body = JSON.stringify(value ?? null)
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  })
  res.end(body)
}

/**
 * Write a handler's result. `frame` wraps each streamed line (the web server sends the
 * event stream as server-sent events); `open` tracks streams so close() can end them.
 */
export async function sendResult(
  res: ServerResponse,
  result: ApiResult,
  signal: AbortSignal,
  options: {
    headers?: Record<string, string>
    frame?: (line: string) => string
    streamType?: string
    open?: Set<ServerResponse>
  } = {},
): Promise<void> {
  const headers = options.headers ?? {}
  if (result instanceof ApiText) {
    res.writeHead(200, { ...headers, 'content-type': result.contentType })
    res.end(result.text)
  } else if (result instanceof ApiBytes) {
    res.writeHead(200, {
      ...headers,
      'content-type': result.contentType,
      'content-length': result.bytes.byteLength,
    })
    res.end(result.bytes)
  } else if (result instanceof ApiFile) {
    try {
      const size = (await stat(result.path)).size
      const disposition = result.options.downloadName
        ? { 'content-disposition': `attachment; filename="${result.options.downloadName}"` }
        : {}
      res.writeHead(200, {
        ...headers,
        ...disposition,
        'content-type': result.contentType,
        'content-length': size,
      })
      await pipeline(createReadStream(result.path), res).catch(() => res.destroy())
    } finally {
      await result.options.cleanup?.().catch(() => {})
    }
  } else if (result instanceof ApiStream) {
    res.writeHead(200, {
      ...headers,
      'content-type': options.streamType ?? result.contentType,
      'cache-control': 'no-cache',
    })
    res.flushHeaders()
    options.open?.add(res)
    const frame = options.frame ?? ((l: string) => (l.endsWith('\n') ? l : `${l}\n`))
    try {
      await result.run((line) => res.write(frame(line)), signal)
    } finally {
      options.open?.delete(res)
      res.end()
    }
  } else {
    sendJson(res, 200, result, headers)
  }
}

/** Answer a failed request with `{error}`; an unexpected error is logged, never leaked. */
export function sendError(
  res: ServerResponse,
  err: unknown,
  logger: Logger,
  url: string | undefined,
  headers: Record<string, string> = {},
): void {
  const status = statusFor(err)
  if (status >= 500) logger.warn('api handler failed', { url, err: describeError(err) })
  if (res.headersSent) {
    res.end()
    return
  }
  const payload = isRmeshError(err)
    ? err.toJSON()
    : { code: 'ERR_INTERNAL', message: 'internal error; see the daemon log' }
  sendJson(res, status, { error: payload }, headers)
}

export interface ApiHttpServer {
  readonly router: ApiRouter
  route(method: string, pattern: string, handler: ApiHandler): void
  listen(socketPath: string): Promise<void>
  close(): Promise<void>
}

export function createApiHttpServer(logger: Logger): ApiHttpServer {
  const router = createApiRouter()
  const open = new Set<ServerResponse>()
  let server: Server | undefined
  let socket: string | undefined

  const onRequest = async (req: IncomingMessage, res: ServerResponse) => {
    const abort = new AbortController()
    res.on('close', () => abort.abort())
    try {
      const url = new URL(req.url ?? '/', 'http://rmesh')
      const method = (req.method ?? 'GET').toUpperCase()
      const found = router.resolve(method, url.pathname)
      const body = method === 'GET' || method === 'HEAD' ? undefined : await readJsonBody(req)
      const result = await found.handler({
        method,
        path: url.pathname,
        params: found.params,
        query: url.searchParams,
        body,
        signal: abort.signal,
      })
      await sendResult(res, result, abort.signal, { open })
    } catch (err) {
      sendError(res, err, logger, req.url)
    }
  }

  return {
    router,
    route: (method, pattern, handler) => router.route(method, pattern, handler),
    async listen(socketPath) {
      await removeStaleSocket(socketPath)
      server = createServer((req, res) => void onRequest(req, res))
      server.on('clientError', (_err, sock) => {
        // Garbage on the socket: answer 400 if we can, never let it reach the process.
        if (sock.writable) sock.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n')
        else sock.destroy()
      })
      const srv = server
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject)
        // A restrictive umask while binding so the socket is never world-accessible.
        const old = process.umask(0o177)
        srv.listen(socketPath, () => {
          process.umask(old)
          srv.off('error', reject)
          resolve()
        })
      })
      await chmod(socketPath, 0o600)
      socket = socketPath
    },
    async close() {
      for (const res of open) res.end()
      open.clear()
      if (server) {
        const srv = server
        srv.closeAllConnections?.()
        await new Promise<void>((resolve) => srv.close(() => resolve()))
      }
      if (socket) await unlink(socket).catch(() => {})
    },
  }
}

/** Remove a socket file nobody answers on; refuse if a daemon answers. */
export async function removeStaleSocket(socketPath: string): Promise<void> {
  const alive = await new Promise<boolean>((resolve) => {
    const s = connect(socketPath)
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
  if (alive) throw new DaemonAlreadyRunningError(socketPath)
  await unlink(socketPath).catch(() => {})
}
