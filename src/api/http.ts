/**
 * The control API's HTTP layer: a Unix socket (mode 0600, only the local user), JSON in
 * and out, a tiny router, and NDJSON streaming responses.
 *
 * Invariants:
 *  - request bodies are bounded (MAX_BODY_BYTES) before parsing;
 *  - every error leaves as `{error: {code, message, details?}}` with a fitting status;
 *    a handler that throws something unexpected yields 500 and the daemon stays up;
 *  - a stale socket from a crashed daemon is removed; a live one means another daemon
 *    owns this data directory, and we refuse to start.
 */
import { chmod, unlink } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { describeError, InvalidInputError, isRmeshError, RmeshError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'
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

/** A handler returns JSON-able data, a Text, or a Stream (NDJSON or text lines). */
export type ApiResult = unknown | ApiText | ApiStream

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

export type ApiHandler = (req: ApiRequest) => Promise<ApiResult> | ApiResult

const STATUS_BY_CODE: Record<string, number> = API_ERROR_STATUS

export function statusFor(err: unknown): number {
  if (isRmeshError(err)) {
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
  parts: string[]
  handler: ApiHandler
}

export interface ApiHttpServer {
  route(method: string, pattern: string, handler: ApiHandler): void
  listen(socketPath: string): Promise<void>
  close(): Promise<void>
}

export function createApiHttpServer(logger: Logger): ApiHttpServer {
  const routes: Route[] = []
  const open = new Set<ServerResponse>()
  let server: Server | undefined
  let socket: string | undefined

  const match = (
    method: string,
    path: string,
  ): { route: Route; params: Record<string, string> } | undefined => {
    const segs = path.split('/').filter(Boolean)
    for (const route of routes) {
      if (route.method !== method || route.parts.length !== segs.length) continue
      const params: Record<string, string> = {}
      let ok = true
      for (let i = 0; i < segs.length; i++) {
        const p = route.parts[i]
        if (p.startsWith(':')) params[p.slice(1)] = decodeURIComponent(segs[i])
        else if (p !== segs[i]) {
          ok = false
          break
        }
      }
      if (ok) return { route, params }
    }
    return undefined
  }

  const readBody = async (req: IncomingMessage): Promise<unknown> => {
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of req) {
      size += (chunk as Buffer).length
      if (size > MAX_BODY_BYTES)
        throw new RmeshError('ERR_TOO_LARGE', `request body over ${MAX_BODY_BYTES} bytes`)
      chunks.push(chunk as Buffer)
    }
    if (size === 0) return undefined
    try {
      return JSON.parse(Buffer.concat(chunks).toString('utf8'))
    } catch {
      throw new InvalidInputError('request body is not valid JSON')
    }
  }

  const sendJson = (res: ServerResponse, status: number, value: unknown) => {
    const body = JSON.stringify(value ?? null)
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    })
    res.end(body)
  }

  const onRequest = async (req: IncomingMessage, res: ServerResponse) => {
    const abort = new AbortController()
    res.on('close', () => abort.abort())
    try {
      const url = new URL(req.url ?? '/', 'http://rmesh')
      const method = (req.method ?? 'GET').toUpperCase()
      const found = match(method, url.pathname)
      if (!found) {
        const exists = routes.some((r) => match(r.method, url.pathname)?.route === r)
        throw new RmeshError(
          exists ? 'ERR_METHOD_NOT_ALLOWED' : 'ERR_NOT_FOUND',
          exists
            ? `${method} is not allowed on ${url.pathname}`
            : `no such endpoint: ${method} ${url.pathname}`,
        )
      }
      const body = method === 'GET' || method === 'HEAD' ? undefined : await readBody(req)
      const result = await found.route.handler({
        method,
        path: url.pathname,
        params: found.params,
        query: url.searchParams,
        body,
        signal: abort.signal,
      })
      if (result instanceof ApiText) {
        res.writeHead(200, { 'content-type': result.contentType })
        res.end(result.text)
      } else if (result instanceof ApiStream) {
        res.writeHead(200, { 'content-type': result.contentType, 'cache-control': 'no-cache' })
        res.flushHeaders()
        open.add(res)
        try {
          await result.run(
            (line) => res.write(line.endsWith('\n') ? line : `${line}\n`),
            abort.signal,
          )
        } finally {
          open.delete(res)
          res.end()
        }
      } else {
        sendJson(res, 200, result)
      }
    } catch (err) {
      const status =
        err instanceof RmeshError && err.code === 'ERR_METHOD_NOT_ALLOWED' ? 405 : statusFor(err)
      if (status >= 500)
        logger.warn('api handler failed', { url: req.url, err: describeError(err) })
      if (res.headersSent) {
        res.end()
        return
      }
      const payload = isRmeshError(err)
        ? err.toJSON()
        : { code: 'ERR_INTERNAL', message: 'internal error; see the daemon log' }
      sendJson(res, status, { error: payload })
    }
  }

  return {
    route(method, pattern, handler) {
      routes.push({
        method: method.toUpperCase(),
        parts: pattern.split('/').filter(Boolean),
        handler,
      })
    },
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
