import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { createApiClient } from '../../../src/api/client.js'
import { isRmeshError } from '../../../src/util/errors.js'

const dir = mkdtempSync(join(tmpdir(), 'rmesh-client-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let n = 0
const servers: { close(): void }[] = []
afterEach(() => {
  for (const s of servers.splice(0)) s.close()
})

async function serve(
  handler: (req: IncomingMessage, res: ServerResponse, body: string) => void,
): Promise<string> {
  const socketPath = join(dir, `s${n++}.sock`)
  const server: Server = createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => handler(req, res, body))
  })
  await new Promise<void>((r) => server.listen(socketPath, r))
  servers.push({ close: () => server.close() })
  server.on('connection', (s) => servers.push({ close: () => s.destroy() }))
  return socketPath
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p
  } catch (err) {
    expect(isRmeshError(err)).toBe(true)
    return (err as { code: string }).code
  }
  return 'resolved'
}

describe('api client', () => {
  it('sends typed requests and parses JSON', async () => {
    let seen = ''
    const socketPath = await serve((req, res, body) => {
      seen = `${req.method} ${req.url} ${body}`
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ jobId: 'j', name: 'n', framesTotal: 3, outDir: '/o' }))
    })
    const c = createApiClient({ socketPath })
    expect(await c.submit({ scenePath: '/s.blend' })).toEqual({
      jobId: 'j',
      name: 'n',
      framesTotal: 3,
      outDir: '/o',
    })
    expect(seen).toBe('POST /v1/jobs {"scenePath":"/s.blend"}')
    await c.retry('a/b', { frames: '1' })
    expect(seen).toBe('POST /v1/jobs/a%2Fb/retry {"frames":"1"}')
    await c.logs('j', { frame: 3, tail: 5 })
    expect(seen).toBe('GET /v1/jobs/j/logs?frame=3&tail=5 ')
  })
  it('passes API error codes through with their status', async () => {
    const socketPath = await serve((_req, res) => {
      res.statusCode = 404
      res.end(
        JSON.stringify({
          error: { code: 'ERR_NOT_FOUND', message: 'job x not found', details: { jobId: 'x' } },
        }),
      )
    })
    const err = await createApiClient({ socketPath })
      .job('x')
      .catch((e) => e)
    expect(err).toMatchObject({
      code: 'ERR_NOT_FOUND',
      status: 404,
      message: 'job x not found',
      details: { jobId: 'x' },
    })
  })
  it('turns garbage into ERR_BAD_RESPONSE', async () => {
    const notJson = await serve((_req, res) => res.end('<html>'))
    expect(await code(createApiClient({ socketPath: notJson }).node())).toBe('ERR_BAD_RESPONSE')
    const badError = await serve((_req, res) => {
      res.statusCode = 500
      res.end('{"oops":1}')
    })
    expect(await code(createApiClient({ socketPath: badError }).node())).toBe('ERR_BAD_RESPONSE')
    // Not HTTP at all.
    const raw = join(dir, `raw${n++}.sock`)
    const net = createNetServer((s) => s.end('\x00\x01garbage\r\n\r\n'))
    await new Promise<void>((r) => net.listen(raw, r))
    servers.push({ close: () => net.close() })
    expect(await code(createApiClient({ socketPath: raw }).node())).toBe('ERR_BAD_RESPONSE')
  })
  it('reports a missing socket, a stale one and a plain file as ERR_DAEMON_NOT_RUNNING', async () => {
    const missing = createApiClient({ socketPath: join(dir, 'none', 'rmesh.sock') })
    const err = await missing.node().catch((e) => e)
    expect(err.code).toBe('ERR_DAEMON_NOT_RUNNING')
    expect(err.message).toContain(`rmesh daemon --dir ${join(dir, 'none')}`)
    const file = join(dir, 'file.sock')
    writeFileSync(file, '')
    expect(await code(createApiClient({ socketPath: file }).node())).toBe('ERR_DAEMON_NOT_RUNNING')
  })
  it('times out and aborts', async () => {
    const socketPath = await serve(() => {})
    expect(await code(createApiClient({ socketPath, timeoutMs: 50 }).node())).toBe('ERR_TIMEOUT')
    const ac = new AbortController()
    setTimeout(() => ac.abort(), 20)
    expect(await code(createApiClient({ socketPath }).node({ signal: ac.signal }))).toBe(
      'ERR_ABORTED',
    )
  })
  it('streams NDJSON events across chunk boundaries and stops on abort', async () => {
    const socketPath = await serve((req, res) => {
      expect(req.url).toBe('/v1/events?logs=j1')
      res.setHeader('content-type', 'application/x-ndjson')
      res.write('{"type":"node","seq":1,"time":0,"node":{}}\n{"type":"pi')
      setTimeout(() => res.write('ng","seq":2,"time":0}\n\n'), 10)
    })
    const ac = new AbortController()
    const got: string[] = []
    const err = await (async () => {
      for await (const e of createApiClient({ socketPath }).events({
        signal: ac.signal,
        logsOf: 'j1',
      })) {
        got.push(e.type)
        if (got.length === 2) ac.abort()
      }
    })().catch((e) => e)
    expect(got).toEqual(['node', 'ping'])
    expect(err === undefined || err.code === 'ERR_ABORTED').toBe(true)
  })
  it('refuses garbage event lines, overlong lines and idle streams', async () => {
    const garbage = await serve((_req, res) =>
      res.end('{"type":"node","seq":1,"time":0}\nnot json\n'),
    )
    const types: string[] = []
    const e1 = await (async () => {
      for await (const e of createApiClient({ socketPath: garbage }).events()) types.push(e.type)
    })().catch((e) => e)
    expect(types).toEqual(['node'])
    expect(e1.code).toBe('ERR_BAD_RESPONSE')
    const long = await serve((_req, res) => res.end('x'.repeat(1024 * 1024 + 10)))
    expect(
      await code(
        (async () => {
          for await (const _ of createApiClient({ socketPath: long }).events());
        })(),
      ),
    ).toBe('ERR_BAD_RESPONSE')
    const idle = await serve((_req, res) => res.write('{"type":"node","seq":1,"time":0}\n'))
    expect(
      await code(
        (async () => {
          for await (const _ of createApiClient({ socketPath: idle, streamIdleMs: 50 }).events());
        })(),
      ),
    ).toBe('ERR_TIMEOUT')
  })
})
