/**
 * The web UI's HTTP server: a small, fixed set of static files and a gate in front of the
 * control API's own route table (api/http.ts ApiRouter), so every request is validated by
 * the same handlers the CLI uses; the event stream is re-framed as server-sent events.
 *
 * Invariants (the web is a boundary):
 *  - no request path chooses a file: static files are a fixed map built at start, and the
 *    API is reachable only through WEB_ROUTES (no fetch to a path, no join, no renew);
 *  - bodies are JSON, at most MAX_WEB_BODY bytes; URLs at most 2 KiB; submit keeps only
 *    SUBMIT_FIELDS (no outDir or projectRoot from a browser);
 *  - a state-changing request needs the `x-rmesh-csrf: 1` header (a cross-site page cannot
 *    send it without a CORS preflight, which is never granted) and, when the browser sends
 *    one, a same-origin Origin; the Host must be the bound one (no DNS rebinding);
 *  - beyond 127.0.0.1/::1 everything but the login page needs a session (auth.ts).
 */
import { readFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { packageRoot } from '../version.js'
import { InvalidInputError, RmeshError } from '../util/errors.js'
import { createServer } from '../util/node-http.js'
import type { Logger } from '../util/logger.js'
import { type ApiRouter, readJsonBody, sendError, sendResult, ApiStream } from '../api/http.js'
import { originOf, servesWithoutLogin, type WebAddress } from './address.js'
import type { WebAuth } from './auth.js'
import { INDEX_HTML, LOGIN_HTML, STYLE_CSS } from './pages.js'

export const MAX_WEB_BODY = 64 * 1024
const MAX_URL = 2048
const COOKIE = 'rmesh_session'

/** The control API routes a browser may use (method, pattern). */
export const WEB_ROUTES: readonly [string, string][] = [
  ['GET', '/v1/node'],
  ['GET', '/v1/peers'],
  ['GET', '/v1/jobs'],
  ['POST', '/v1/jobs'],
  ['GET', '/v1/jobs/:id'],
  ['POST', '/v1/jobs/:id/cancel'],
  ['POST', '/v1/jobs/:id/pause'],
  ['POST', '/v1/jobs/:id/resume'],
  ['POST', '/v1/jobs/:id/retry'],
  ['POST', '/v1/jobs/:id/priority'],
  ['DELETE', '/v1/jobs/:id'],
  ['GET', '/v1/jobs/:id/logs'],
  ['GET', '/v1/jobs/:id/frames/:frame/thumb'],
  ['GET', '/v1/jobs/:id/frames/:frame/image'],
  ['GET', '/v1/jobs/:id/zip'],
  ['GET', '/v1/jobs/:id/preview'],
  ['GET', '/v1/tokens'],
  ['POST', '/v1/tokens'],
  ['POST', '/v1/tokens/invite'],
  ['POST', '/v1/tokens/:id/revoke'],
  ['GET', '/v1/events'],
]
const SUBMIT_FIELDS = [
  'scenePath',
  'frames',
  'step',
  'chunk',
  'format',
  'video',
  'priority',
  'name',
  'engine',
  'tags',
  'device',
  'require',
]

export interface WebServer {
  readonly url: string
  readonly loginRequired: boolean
  close(): Promise<void>
}

export interface WebServerOptions {
  router: ApiRouter
  auth: WebAuth
  address: WebAddress
  logger: Logger
}

function staticFiles(): Map<string, { body: Buffer | string; type: string }> {
  const root = packageRoot()
  const js = 'text/javascript; charset=utf-8'
  const files = new Map<string, { body: Buffer | string; type: string }>()
  const add = (url: string, path: string) => files.set(url, { body: readFileSync(path), type: js })
  add('/vendor/preact.mjs', join(root, 'node_modules/preact/dist/preact.mjs'))
  add('/vendor/hooks.mjs', join(root, 'node_modules/preact/hooks/dist/hooks.mjs'))
  add('/vendor/htm.mjs', join(root, 'node_modules/htm/dist/htm.mjs'))
  add('/app/main.js', join(root, 'dist/src/web/ui/main.js'))
  files.set('/app/style.css', { body: STYLE_CSS, type: 'text/css; charset=utf-8' })
  return files
}

const cookieOf = (req: IncomingMessage): string | undefined => {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, v] = part.trim().split('=')
    if (k === COOKIE) return v
  }
  return undefined
}

export async function startWebServer(o: WebServerOptions): Promise<WebServer> {
  const files = staticFiles()
  const importMap = INDEX_HTML.match(/<script type="importmap">([\s\S]*?)<\/script>/)![1]
  const csp = [
    "default-src 'self'",
    `script-src 'self' 'sha256-${createHash('sha256').update(importMap).digest('base64')}'`,
    "img-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
  ].join('; ')
  const security = {
    'content-security-policy': csp,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
  }
  const loginRequired = !servesWithoutLogin(o.address)
  const open = new Set<ServerResponse>()
  let port = o.address.port
  const origin = () => originOf(o.address.host, port)
  const allowedHosts = () => {
    const hosts = [new URL(origin()).host]
    if (!loginRequired) hosts.push(`localhost:${port}`)
    return hosts
  }
  const sendPage = (res: ServerResponse, status: number, html: string) => {
    res.writeHead(status, { ...security, 'content-type': 'text/html; charset=utf-8' })
    res.end(html)
  }
  const fail = (code: string, message: string) => new RmeshError(code, message)

  const onRequest = async (req: IncomingMessage, res: ServerResponse) => {
    const abort = new AbortController()
    res.on('close', () => abort.abort())
    try {
      if ((req.url ?? '').length > MAX_URL)
        throw new InvalidInputError(`the URL is over ${MAX_URL} bytes`)
      if (!allowedHosts().includes(req.headers.host ?? ''))
        throw fail('ERR_FORBIDDEN', `this server answers to ${origin()} only (Host header)`)
      const url = new URL(req.url ?? '/', origin())
      const method = (req.method ?? 'GET').toUpperCase()
      const changes = !['GET', 'HEAD'].includes(method)
      if (changes) {
        if (req.headers['x-rmesh-csrf'] !== '1')
          throw fail('ERR_FORBIDDEN', 'state-changing requests need the header x-rmesh-csrf: 1')
        const from = req.headers.origin
        if (from !== undefined && from !== origin())
          throw fail('ERR_FORBIDDEN', `cross-origin request from ${from} refused`)
      }
      const authed = !loginRequired || o.auth.isSession(cookieOf(req))

      if (url.pathname === '/login') {
        if (method === 'GET') {
          const link = url.searchParams.get('link')
          if (link !== null) {
            if (!o.auth.redeemLink(link)) {
              sendPage(
                res,
                401,
                LOGIN_HTML('That link was used or has expired: run rmesh web open again.'),
              )
              return
            }
            return startSession(res)
          }
          sendPage(res, 200, LOGIN_HTML(''))
          return
        }
        if (method !== 'POST') throw fail('ERR_METHOD_NOT_ALLOWED', `${method} /login`)
        const body = await readJsonBody(req, 4096)
        const password = (body as { password?: unknown } | undefined)?.password
        if (typeof password !== 'string')
          throw new InvalidInputError('give {"password": "…"}', { field: 'password' })
        if (!(await o.auth.checkPassword(password)))
          throw fail('ERR_LOGIN', 'wrong password (set one with rmesh web password)')
        return startSession(res)
      }
      if (!authed) {
        if (url.pathname.startsWith('/api/'))
          throw fail('ERR_LOGIN_REQUIRED', 'log in first: run rmesh web open on this node')
        sendPage(res, 401, LOGIN_HTML('This node serves its web UI beyond this machine: log in.'))
        return
      }
      if (url.pathname === '/') {
        if (method !== 'GET') throw fail('ERR_METHOD_NOT_ALLOWED', `${method} /`)
        sendPage(res, 200, INDEX_HTML)
        return
      }
      const file = files.get(url.pathname)
      if (file) {
        res.writeHead(200, { ...security, 'content-type': file.type })
        res.end(file.body)
        return
      }
      if (!url.pathname.startsWith('/api/v1/'))
        throw fail('ERR_NOT_FOUND', `no such page: ${url.pathname}`)
      const apiPath = url.pathname.slice(4)
      const found = o.router.resolve(method, apiPath)
      if (!WEB_ROUTES.some(([m, p]) => m === method && p === found.pattern))
        throw fail('ERR_NOT_FOUND', `no such endpoint on the web: ${method} ${apiPath}`)
      if (found.pattern === '/v1/jobs/:id/logs' && url.searchParams.has('follow'))
        throw new InvalidInputError('follow is not offered on the web; the page streams events')
      let body = changes ? await readJsonBody(req, MAX_WEB_BODY) : undefined
      if (changes && req.headers['content-length'] !== '0' && body !== undefined) {
        if (typeof body !== 'object' || body === null || Array.isArray(body))
          throw new InvalidInputError('the request body must be a JSON object')
        if (found.pattern === '/v1/jobs' && method === 'POST')
          body = Object.fromEntries(Object.entries(body).filter(([k]) => SUBMIT_FIELDS.includes(k)))
      }
      const result = await found.handler({
        method,
        path: apiPath,
        params: found.params,
        query: url.searchParams,
        body,
        signal: abort.signal,
      })
      const sse = result instanceof ApiStream && found.pattern === '/v1/events'
      await sendResult(res, result, abort.signal, {
        headers: security,
        open,
        ...(sse ? { streamType: 'text/event-stream', frame: (l: string) => `data: ${l}\n\n` } : {}),
      })
    } catch (err) {
      sendError(res, err, o.logger, req.url, security)
    }
  }

  const startSession = (res: ServerResponse) => {
    const id = o.auth.newSession()
    res.writeHead(303, {
      ...security,
      location: '/',
      'set-cookie': `${COOKIE}=${id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200`,
    })
    res.end()
  }

  const server: Server = createServer(
    { maxHeaderSize: 16 * 1024 },
    (req, res) => void onRequest(req, res),
  )
  server.headersTimeout = 10_000
  server.requestTimeout = 30_000
  server.on('clientError', (_err, sock) => {
    if (sock.writable) sock.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n')
    else sock.destroy()
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(o.address.port, o.address.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  port = (server.address() as AddressInfo).port
  return {
    get url() {
      return origin()
    },
    loginRequired,
    async close() {
      for (const r of open) r.end()
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}
