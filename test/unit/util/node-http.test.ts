import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { REPO_ROOT } from '../../helpers/daemons.js'

// In a fresh process: vitest itself has long loaded undici.
function loadedAfter(script: string): string[] {
  const r = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const n = process.moduleLoadList.length; ${script}; console.log(JSON.stringify(process.moduleLoadList.slice(n)))`,
    ],
    { encoding: 'utf8' },
  )
  expect(r.status, r.stderr).toBe(0)
  return JSON.parse(r.stdout) as string[]
}

describe('node:http through src/util/node-http.ts', () => {
  const helper = JSON.stringify(join(REPO_ROOT, 'dist', 'src', 'util', 'node-http.js'))

  it('serves and requests without loading undici, http2 or tls', async () => {
    const loaded = loadedAfter(`
      const { createServer, request } = await import(${helper})
      const server = createServer((_req, res) => res.end('ok'))
      await new Promise((r) => server.listen(0, '127.0.0.1', r))
      const body = await new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: server.address().port, agent: false }, (res) => {
          let b = ''
          res.on('data', (c) => (b += c)).on('end', () => resolve(b))
        })
        req.on('error', reject).end()
      })
      server.close()
      if (body !== 'ok') throw new Error(body)`)
    expect(loaded.filter((m) => /undici|http2|\btls$/.test(m))).toEqual([])
  })

  it('an ES import of node:http would load them (why the helper exists)', () => {
    const loaded = loadedAfter(`await import('node:http')`)
    expect(loaded.some((m) => m.includes('undici'))).toBe(true)
  })
})
