/**
 * The web UI in a real headless Chromium against real daemons (test engine). node1 serves
 * the web UI on 127.0.0.2 (a loopback alias: traffic stays on loopback, yet the address
 * is not 127.0.0.1, so a login is required). Screenshots go to $RMESH_SCREENSHOTS or a
 * temporary folder, listed in the output.
 */
import { request } from 'node:http'
import { connect } from 'node:net'
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Browser, chromium } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  apiCall,
  type DaemonProc,
  makeTempDir,
  removeDir,
  startMesh,
  stopDaemonProc,
  waitFor,
} from '../helpers/daemons.js'

let mesh: DaemonProc[] = []
let browser: Browser
let base = ''
let shots = ''
let work = ''
const listed: string[] = []

function raw(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<{ status: number; text: string }> {
  const u = new URL(base)
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, method, path, headers: { ...headers } },
      (res) => {
        let text = ''
        res.on('data', (c) => (text += c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

beforeAll(async () => {
  mesh = await startMesh(2, { extraArgs: ['--web', '127.0.0.2:0', '--tags', 'studio-a'] })
  work = await makeTempDir('rmesh-web-')
  shots = process.env.RMESH_SCREENSHOTS ?? (await mkdtemp(join(tmpdir(), 'rmesh-shots-')))
  await mkdir(shots, { recursive: true })
  await writeFile(
    join(work, 'shot.blend'),
    'BLENDER-v300 (the test engine renders any file with a .blend header)',
  )
  const w = await apiCall<{ url: string }>(mesh[0].socket, 'GET', '/v1/web')
  base = w.body.url
  // launch() gives Chromium a fresh temporary profile (its own --user-data-dir).
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}, 60_000)

afterAll(async () => {
  await browser?.close()
  await Promise.all(mesh.map((d) => stopDaemonProc(d)))
  await Promise.all([...mesh.map((d) => d.dir), work].map(removeDir))
  console.log(`[web] screenshots in ${shots}:\n${listed.map((f) => `  ${f}`).join('\n')}`)
}, 30_000)

describe('web UI', () => {
  it('refuses a page without login on a non-127.0.0.1 bind, and garbage gets clear errors', async () => {
    const page = await browser.newPage()
    const res = await page.goto(`${base}/`)
    expect(res?.status()).toBe(401)
    await page.screenshot({ path: join(shots, 'login.png') })
    listed.push('login.png')
    expect((await raw('GET', '/api/v1/jobs')).status).toBe(401)
    await page.close()

    // Log in with a one-time link, then try garbage with that session.
    const link = await apiCall<{ url: string }>(mesh[0].socket, 'POST', '/v1/web/link', {})
    const login = await raw('GET', new URL(link.body.url).pathname + new URL(link.body.url).search)
    expect(login.status).toBe(303)
    const again = await raw('GET', new URL(link.body.url).pathname + new URL(link.body.url).search)
    expect(again.status).toBe(401) // one-time
    const host = new URL(base).host
    const cookieRes = await new Promise<string>((resolve) => {
      const { url } = (async () => {})() as unknown as { url: string }
      void url
      const fresh = apiCall<{ url: string }>(mesh[0].socket, 'POST', '/v1/web/link', {})
      void fresh.then((l) => {
        const u = new URL(l.body.url)
        request({ host: u.hostname, port: u.port, path: u.pathname + u.search }, (r) =>
          resolve(String(r.headers['set-cookie']).split(';')[0]),
        ).end()
      })
    })
    const auth = { cookie: cookieRes, host }
    const post = { ...auth, 'content-type': 'application/json', 'x-rmesh-csrf': '1' }
    const err = (t: string) => JSON.parse(t).error.code
    let r = await raw('POST', '/api/v1/jobs', { ...auth, 'content-type': 'application/json' }, '{}')
    expect([r.status, err(r.text)]).toEqual([403, 'ERR_FORBIDDEN']) // no CSRF header
    r = await raw('POST', '/api/v1/jobs', { ...post, origin: 'http://evil.example' }, '{}')
    expect(r.status).toBe(403)
    r = await raw('POST', '/api/v1/jobs', post, '{not json')
    expect([r.status, err(r.text)]).toEqual([400, 'ERR_INVALID_INPUT'])
    r = await raw('POST', '/api/v1/jobs', post, 'x'.repeat(100_000))
    expect([r.status, err(r.text)]).toEqual([413, 'ERR_TOO_LARGE'])
    r = await raw('POST', '/api/v1/jobs', post, '[1,2]')
    expect(r.status).toBe(400)
    r = await raw('POST', '/api/v1/jobs/abcdefgh/fetch', post, '{"out":"/tmp/x"}')
    expect([r.status, err(r.text)]).toEqual([404, 'ERR_NOT_FOUND']) // not on the web
    r = await raw('POST', '/api/v1/web/link', post, '{}')
    expect(r.status).toBe(404)
    r = await raw('GET', '/api/v1/jobs/%E0%A4%A/frames/x/thumb', auth)
    expect(r.status).toBe(400)
    r = await raw('GET', '/api/v1/jobs/abcdefgh/frames/1/thumb?as=gif', auth)
    expect([r.status, err(r.text)]).toEqual([400, 'ERR_INVALID_INPUT'])
    r = await raw('POST', '/api/v1/jobs', post, '{"scenePath":"/x.blend","tags":["no spaces!"]}')
    expect([r.status, err(r.text)]).toEqual([400, 'ERR_INVALID_INPUT'])
    r = await raw('GET', '/vendor/../../package.json', auth)
    expect(r.status).toBe(404)
    r = await raw('GET', '/api/v1/jobs', { ...auth, host: 'rebind.example:80' })
    expect(r.status).toBe(403)
    const u = new URL(base)
    await new Promise<void>((resolve) => {
      const s = connect(Number(u.port), u.hostname, () => s.end('GARBAGE\r\n\r\n'))
      s.on('close', () => resolve())
      s.on('error', () => resolve())
      s.resume()
    })
    expect((await apiCall(mesh[0].socket, 'GET', '/v1/node')).status).toBe(200)
    expect((await raw('GET', '/api/v1/node', auth)).status).toBe(200)
  }, 60_000)

  it('submit from the page renders a job whose thumbnails fill in; pause, resume and cancel from the page act on another', async () => {
    const link = await apiCall<{ url: string }>(mesh[0].socket, 'POST', '/v1/web/link', {})
    const page = await browser.newPage()
    await page.goto(link.body.url)
    await page.waitForSelector('header nav')
    // Nodes' tags, filtered and grouped by tag (the view is in the URL).
    await page.waitForSelector('td.tags .tag')
    expect(await page.locator('td.tags .tag').first().textContent()).toBe('studio-a')
    await page.selectOption('select[name=tag]', 'studio-a')
    await page.check('input[name=group]')
    await page.waitForSelector('caption:text("Pool studio-a")')
    expect(page.url()).toContain('tag=studio-a&group=1')
    await page.screenshot({ path: join(shots, 'mesh.png') })
    listed.push('mesh.png')

    await page.goto(`${base}/#/submit`)
    await page.fill('input[name=scenePath]', join(work, 'shot.blend'))
    await page.fill('input[name=frames]', '1-6')
    await page.fill('input[name=engine]', 'test')
    await page.fill('input[name=name]', 'from the page')
    await page.fill('input[name=tags]', 'studio-a')
    await page.screenshot({ path: join(shots, 'submit.png') })
    listed.push('submit.png')
    await page.click('button[type=submit]')
    await page
      .waitForFunction(() => /^#\/jobs\/[a-z2-7]{8}$/.test(location.hash), null, {
        timeout: 15_000,
      })
      .catch(async (e) => {
        throw new Error(`no job page: ${await page.locator('.error').allTextContents()} ${e}`)
      })
    const jobId = page.url().split('/').pop()!
    // Thumbnails appear as frames finish, live (SSE), without a reload.
    await page.waitForSelector('.frame img', { timeout: 20_000 })
    await page.screenshot({ path: join(shots, 'job-running.png') })
    listed.push('job-running.png')
    await page.waitForFunction(() => document.querySelectorAll('.frame img').length === 6, null, {
      timeout: 30_000,
    })
    // Every thumbnail loads (a broken one is retried by the page).
    const ok = await page
      .waitForFunction(
        () =>
          Array.from(document.querySelectorAll('.frame img')).every(
            (i) => (i as HTMLImageElement).complete && (i as HTMLImageElement).naturalWidth > 0,
          ),
        null,
        { timeout: 15_000 },
      )
      .then(() => true)
      .catch(() => false)
    expect(ok).toBe(true)
    // The submitter's preview video of the frames so far, on the job page.
    await page.waitForSelector('video.preview', { timeout: 15_000 })
    const src = await page.getAttribute('video.preview', 'src')
    const video = await page.evaluate(
      (u) => fetch(u as string).then((r) => [r.status, r.headers.get('content-type')]),
      src,
    )
    expect(video).toEqual([200, 'video/mp4'])
    await page.click('.frame[data-frame="3"]')
    await page.waitForSelector('.viewer img')
    await page.screenshot({ path: join(shots, 'viewer.png') })
    listed.push('viewer.png')
    const detail = await apiCall<{ state: string; tags?: string[] }>(
      mesh[0].socket,
      'GET',
      `/v1/jobs/${jobId}`,
    )
    expect(detail.body.state).toBe('done')
    expect(detail.body.tags).toEqual(['studio-a'])

    // A long job, canceled from the jobs page.
    const long = await apiCall<{ jobId: string }>(mesh[0].socket, 'POST', '/v1/jobs', {
      scenePath: join(work, 'shot.blend'),
      frames: '1-100',
      engine: 'test',
      name: 'long one',
      params: { frameMs: 1000 },
    })
    await page.goto(`${base}/#/jobs`)
    await page.waitForSelector(`a[href="#/jobs/${long.body.jobId}"]`)
    await page.screenshot({ path: join(shots, 'jobs.png') })
    listed.push('jobs.png')
    // Paused and resumed from the jobs page (the row's buttons follow its state).
    const stateOf = async () =>
      (await apiCall<{ state: string }>(mesh[0].socket, 'GET', `/v1/jobs/${long.body.jobId}`)).body
        .state
    const row = page.locator('tr', { hasText: 'long one' })
    await row.getByRole('button', { name: 'Pause' }).click()
    await waitFor(async () => (await stateOf()) === 'paused', 10_000, 'the job paused')
    await row.getByRole('button', { name: 'Resume' }).click()
    await waitFor(async () => (await stateOf()) !== 'paused', 10_000, 'the job resumed')
    await page
      .locator('tr', { hasText: 'long one' })
      .getByRole('button', { name: 'Cancel' })
      .click()
    await waitFor(
      async () =>
        (await apiCall<{ state: string }>(mesh[0].socket, 'GET', `/v1/jobs/${long.body.jobId}`))
          .body.state === 'canceled',
      10_000,
      'the job canceled',
    )
    await page.goto(`${base}/#/tokens`)
    await page.waitForSelector('table tbody tr')
    await page.screenshot({ path: join(shots, 'tokens.png') })
    listed.push('tokens.png')
    await page.close()
  }, 90_000)
})
