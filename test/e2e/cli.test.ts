/**
 * End-to-end: every `rmesh` command, run as the built binary against real daemons (2
 * admitted nodes with the test engine, then a third that joins with an invite), checking
 * what scripts rely on: stdout (JSON shapes from the README), stderr and exit codes
 * (cli/exit-codes.ts). Requires `npm run build`.
 *
 * The tests of this file run in order and share the mesh: later ones use jobs and tokens
 * made by earlier ones. Waits are on observable states, never on fixed sleeps.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EXIT } from '../../cli/exit-codes.js'
import type {
  JobDetail,
  JobSummary,
  NodeInfo,
  PeerInfo,
  SubmitResponse,
  TokenInfo,
} from '../../src/api/types.js'
import {
  apiCall,
  type DaemonProc,
  makeTempDir,
  removeDir,
  startDaemonProc,
  startMesh,
  stopDaemonProc,
  waitFor,
} from '../helpers/daemons.js'
import { json, rmesh, rmeshIn, zipEntryNames } from './run-cli.js'

const JOB_STATES = ['queued', 'rendering', 'paused', 'waiting', 'done', 'failed', 'canceled']

let mesh: DaemonProc[] = []
let third: DaemonProc | undefined
let work = ''
let fresh = ''
let d1 = ''
let scene = ''
const started = Date.now()

beforeAll(async () => {
  mesh = await startMesh(2)
  d1 = mesh[0].dir
  work = await makeTempDir('rmesh-e2e-cli-')
  fresh = await makeTempDir('rmesh-e2e-fresh-')
  scene = join(work, 'shot.blend')
  // The test engine renders any file: only the extension matters to the CLI and the API.
  await writeFile(scene, 'not really a blend file')
  await writeFile(join(work, 'notes.txt'), 'x')
}, 60_000)

afterAll(async () => {
  await Promise.all([...mesh, ...(third ? [third] : [])].map((d) => stopDaemonProc(d)))
  await Promise.all([...mesh.map((d) => d.dir), work, fresh].filter(Boolean).map(removeDir))
  console.log(`cli e2e: ${((Date.now() - started) / 1000).toFixed(1)} s in all`)
}, 30_000)

/** Submits a detached test-engine job and returns its id. */
async function submitTest(frames: string, params: string[], extra: string[] = []) {
  const r = await rmeshIn(d1, [
    'submit',
    scene,
    '--frames',
    frames,
    '--engine',
    'test',
    ...params.flatMap((p) => ['--param', p]),
    '--detach',
    '--json',
    ...extra,
  ])
  expect(r.code, r.stderr).toBe(0)
  return json<SubmitResponse>(r)
}

/** For polling: the API straight, not a CLI process per look (the CLI is tested once). */
async function apiJob(d: DaemonProc, jobId: string): Promise<JobDetail> {
  const r = await apiCall<JobDetail>(d.socket, 'GET', `/v1/jobs/${jobId}`)
  if (r.status !== 200) throw new Error(`GET job ${jobId}: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body
}

async function jobStatus(jobId: string): Promise<JobDetail> {
  const r = await rmeshIn(d1, ['status', jobId, '--json'])
  expect(r.code, r.stderr).toBe(0)
  return json<JobDetail>(r)
}

const d1Socket = () => mesh[0].socket

describe('rmesh against real daemons', () => {
  it('id, status and peers, with --dir before or after the command', async () => {
    const [idBefore, idAfter, status, peersRun] = await Promise.all([
      rmesh(['--dir', d1, 'id', '--json']),
      rmesh(['id', '--json', '--dir', d1]),
      rmeshIn(d1, ['status', '--json']),
      rmesh(['peers', '--dir', d1, '--json']),
    ])
    for (const r of [idBefore, idAfter, status, peersRun]) expect(r.code, r.stderr).toBe(0)
    expect(json(idBefore)).toEqual({ peerId: mesh[0].peerId, dataDir: d1 })
    expect(json(idAfter)).toEqual(json(idBefore))

    const node = json<NodeInfo>(status)
    expect(node.peerId).toBe(mesh[0].peerId)
    expect(node.admitted).toBe(true)
    expect(node.addresses.length).toBeGreaterThan(0)
    for (const a of node.addresses) expect(a).toMatch(new RegExp(`/p2p/${node.peerId}$`))
    expect(node.engines.map((e) => e.name)).toContain('test')

    await waitFor(
      async () =>
        (await apiCall<PeerInfo[]>(d1Socket(), 'GET', '/v1/peers')).body.some(
          (p) => p.peerId === mesh[1].peerId && p.admitted,
        ),
      20_000,
      'node2 among the peers of node1',
    )
    const other = json<PeerInfo[]>(await rmeshIn(d1, ['peers', '--json'])).find(
      (p) => p.peerId === mesh[1].peerId,
    )
    expect(other).toMatchObject({ name: 'node2', admitted: true })
    expect(['idle', 'busy']).toContain(other?.state)

    const table = await rmeshIn(d1, ['peers'])
    expect(table.code).toBe(0)
    expect(table.stdout).toContain('node2')
  })

  it('refuses bad input with exit 2 and says why', async () => {
    const runs = await Promise.all([
      rmeshIn(d1, ['submit', join(work, 'missing.blend')]),
      rmeshIn(d1, ['submit', join(work, 'notes.txt')]),
      rmeshIn(d1, ['submit', scene, '--frames', '']),
      rmeshIn(d1, ['submit', scene, '--frames', '10-1']),
      rmeshIn(d1, ['jobs', '--bogus']),
      rmeshIn(d1, ['submit', scene, '--frames', '1-3', '--param', 'novalue', '--detach']),
    ])
    const [missing, ext, empty, inverted, flag, param] = runs
    for (const r of runs) expect(r.code, `${r.stdout}${r.stderr}`).toBe(EXIT.USAGE)
    expect(missing.stderr).toMatch(/scene file not found/)
    expect(ext.stderr).toMatch(/not a scene rmesh can render/)
    expect(empty.stderr).toMatch(/--frames/)
    expect(inverted.stderr).toMatch(/--frames/)
    expect(flag.stderr).toMatch(/unknown option/)
    expect(param.stderr).toMatch(/key=value/)
    // Nothing reached the mesh.
    expect(json<JobSummary[]>(await rmeshIn(d1, ['jobs', '--json']))).toEqual([])
  })

  it('an unknown job is exit 4; no daemon is exit 3 with how to start one', async () => {
    const empty = await makeTempDir('rmesh-e2e-nodaemon-')
    try {
      const [status, logs, cancel, noDaemon, noDaemonJson] = await Promise.all([
        rmeshIn(d1, ['status', 'zzzzzzzz', '--json']),
        rmeshIn(d1, ['logs', 'zzzzzzzz']),
        rmeshIn(d1, ['cancel', 'zzzzzzzz']),
        rmeshIn(empty, ['jobs']),
        rmesh(['status', '--json', '--dir', empty]),
      ])
      for (const r of [status, logs, cancel]) {
        expect(r.code, r.stderr).toBe(EXIT.NOT_FOUND)
        expect(r.stderr).toMatch(/not found/)
      }
      expect(json<{ error: { code: string } }>(status).error.code).toBe('ERR_NOT_FOUND')
      expect(noDaemon.code).toBe(EXIT.DAEMON_NOT_RUNNING)
      expect(noDaemon.stderr).toContain(`rmesh daemon --dir ${empty}`)
      expect(noDaemonJson.code).toBe(EXIT.DAEMON_NOT_RUNNING)
      expect(json<{ error: { code: string } }>(noDaemonJson).error.code).toBe(
        'ERR_DAEMON_NOT_RUNNING',
      )
    } finally {
      await removeDir(empty)
    }
  })

  let doneJob = ''
  const out = () => join(work, 'out-followed')

  it('submit follows a job to the end: exit 0, every frame in --out', async () => {
    const r = await rmeshIn(
      d1,
      [
        'submit',
        scene,
        '--frames',
        '1-6',
        '--engine',
        'test',
        '--param',
        'frameMs=100',
        '--name',
        'followed',
        '--out',
        out(),
      ],
      { timeoutMs: 45_000 },
    )
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0)
    expect(r.stdout).toMatch(/submitted followed \((\w+)\): 6 frames/)
    expect(r.stdout).toContain(`done: 6 frames in ${out()}`)
    doneJob = /submitted followed \((\w+)\)/.exec(r.stdout)?.[1] ?? ''
    expect((await readdir(out())).sort()).toEqual(
      ['0001.png', '0002.png', '0003.png', '0004.png', '0005.png', '0006.png'].sort(),
    )
  })

  it('jobs and status JOB print the documented JSON shapes', async () => {
    const list = json<JobSummary[]>(await rmeshIn(d1, ['jobs', '--json']))
    const j = list.find((x) => x.jobId === doneJob)
    expect(j).toMatchObject({ name: 'followed', state: 'done', framesDone: 6, framesTotal: 6 })

    const s = await jobStatus(doneJob)
    expect(s.jobId).toBe(doneJob)
    expect(JOB_STATES).toContain(s.state)
    expect(s.frames.map((f) => f.frame)).toEqual([1, 2, 3, 4, 5, 6])
    const peerIds = mesh.map((d) => d.peerId)
    for (const f of s.frames) {
      expect(f).toMatchObject({ state: 'done', attempts: 1 })
      expect(peerIds).toContain(f.node)
    }
    const table = await rmeshIn(d1, ['status', doneJob])
    expect(table.stdout).toMatch(/FRAME\s+STATE\s+NODE\s+ATTEMPTS/)
    const jobsTable = await rmeshIn(d1, ['jobs'])
    expect(jobsTable.stdout).toContain('followed')
  })

  it('logs: the job history and one frame', async () => {
    const [history, frame] = await Promise.all([
      rmeshIn(d1, ['logs', doneJob]),
      rmeshIn(d1, ['logs', doneJob, '--frame', '2']),
    ])
    expect(history.code, history.stderr).toBe(0)
    expect(history.stdout).toMatch(/announce/)
    expect(frame.code, frame.stderr).toBe(0)
    expect(frame.stdout.trim().length).toBeGreaterThan(0)
    // The test engine's log names the file it wrote.
    expect(frame.stdout).toMatch(/frame_0*2\.png/)
  })

  it('fetch to a folder and into a ZIP', async () => {
    const folder = join(work, 'fetched')
    const zip = join(work, 'fetched.zip')
    const [f, z] = await Promise.all([
      rmeshIn(d1, ['fetch', doneJob, '--out', folder, '--json']),
      rmeshIn(d1, ['fetch', doneJob, '--zip', '--out', zip]),
    ])
    expect(f.code, f.stderr).toBe(0)
    expect(json(f)).toMatchObject({ jobId: doneJob, files: 6, missing: [] })
    const files = await readdir(folder)
    for (const n of [1, 2, 3, 4, 5, 6]) expect(files).toContain(`000${n}.png`)
    expect(z.code, z.stderr).toBe(0)
    const names = zipEntryNames(await readFile(zip)).map((n) => n.replace(/^.*\//, ''))
    for (const n of [1, 2, 3, 4, 5, 6]) expect(names).toContain(`000${n}.png`)
  })

  it('priority, cancel (fast), delete refused while running then done', async () => {
    const slow = await submitTest('1-40', ['frameMs=2000'])
    const [prio, del] = await Promise.all([
      rmeshIn(d1, ['priority', slow.jobId, '80', '--json']),
      rmeshIn(d1, ['delete', slow.jobId]),
    ])
    expect(prio.code, prio.stderr).toBe(0)
    expect(json<JobSummary>(prio).priority).toBe(80)
    expect(del.code, del.stderr).toBe(EXIT.CONFLICT)
    expect(del.stderr).toMatch(/cancel/)
    expect((await jobStatus(slow.jobId)).priority).toBe(80)

    // Wait for a frame to be rendering so the cancel has something to stop.
    await waitFor(
      async () => (await apiJob(mesh[0], slow.jobId)).framesRendering > 0,
      20_000,
      'a frame of the slow job rendering',
    )
    const t0 = Date.now()
    const cancel = await rmeshIn(d1, ['cancel', slow.jobId, '--json'])
    expect(cancel.code, cancel.stderr).toBe(0)
    expect(json<JobSummary>(cancel).state).toBe('canceled')
    // Every node sees it canceled and stops rendering it (promised: within a second; the
    // bound here leaves room for a loaded machine).
    await waitFor(
      async () => {
        for (const d of mesh) {
          const j = await apiJob(d, slow.jobId)
          if (j.state !== 'canceled' || j.frames.some((f) => f.state === 'rendering')) return false
          const node = await apiCall<NodeInfo>(d.socket, 'GET', '/v1/node')
          if (node.body.slots.busy > 0) return false
        }
        return true
      },
      10_000,
      'every node to stop rendering the canceled job',
    )
    const stopMs = Date.now() - t0
    console.log(`cancel: every node idle ${stopMs} ms after \`rmesh cancel\` returned`)
    expect((await jobStatus(slow.jobId)).framesDone).toBeLessThan(40)
    // Canceling again conflicts with its state.
    expect((await rmeshIn(d1, ['cancel', slow.jobId])).code).toBe(EXIT.CONFLICT)

    const gone = await rmeshIn(d1, ['delete', slow.jobId, '--json'])
    expect(gone.code, gone.stderr).toBe(0)
    expect(json(gone)).toEqual({ jobId: slow.jobId, deleted: true })
    await waitFor(
      async () => (await apiCall(d1Socket(), 'GET', `/v1/jobs/${slow.jobId}`)).status === 404,
      10_000,
      'the deleted job gone',
    )
    const list = json<JobSummary[]>(await rmeshIn(d1, ['jobs', '--json']))
    expect(list.some((j) => j.jobId === slow.jobId)).toBe(false)
  })

  let issuedId = ''

  it('token list and token issue for a fresh peer id', async () => {
    const list = await rmeshIn(d1, ['token', 'list', '--json'])
    expect(list.code, list.stderr).toBe(0)
    const tokens = json<TokenInfo[]>(list)
    expect(tokens.length).toBeGreaterThan(0)
    for (const t of tokens) {
      expect(typeof t.id).toBe('string')
      expect(typeof t.audience).toBe('string')
      expect(Array.isArray(t.caps)).toBe(true)
      expect(t.expires === null || typeof t.expires === 'number').toBe(true)
      expect(typeof t.revoked).toBe('boolean')
    }
    expect(tokens.find((t) => t.self)?.audience).toBe(mesh[0].peerId)

    const id = await rmeshIn(fresh, ['id'])
    expect(id.code, id.stderr).toBe(0)
    const peerId = id.stdout.trim()
    expect(peerId).toMatch(/^12D3Koo/)
    const issued = await rmeshIn(d1, ['token', 'issue', '--peer', peerId, '--caps', 'render'])
    expect(issued.code, issued.stderr).toBe(0)
    const lines = issued.stdout.trimEnd().split('\n')
    expect(lines.at(-1)).toMatch(/^rmesh-token-\S+$/)

    const after = json<TokenInfo[]>(await rmeshIn(d1, ['token', 'list', '--json']))
    const t = after.find((x) => x.audience === peerId)
    expect(t).toMatchObject({ caps: ['render'], revoked: false })
    issuedId = t?.id ?? ''

    const bad = await rmeshIn(d1, ['token', 'issue', '--peer', 'not-a-peer'])
    expect(bad.code).toBe(EXIT.USAGE)
  })

  it('token invite, then join on a fresh daemon: it is admitted and seen as a peer', async () => {
    const inv = await rmeshIn(d1, ['token', 'invite', '--caps', 'render,submit', '--expires', '1h'])
    expect(inv.code, inv.stderr).toBe(0)
    const invite = inv.stdout.trimEnd().split('\n').at(-1) ?? ''
    expect(invite).toMatch(/^rmesh-invite-\S+$/)

    const boot = mesh[0].addresses.filter((a) => a.includes('/ip4/127.0.0.1/'))
    third = await startDaemonProc({ dir: fresh, bootstrap: boot, name: 'node3' })
    expect(json<NodeInfo>(await rmeshIn(fresh, ['status', '--json'])).admitted).toBe(false)

    const join = await rmeshIn(fresh, ['join', invite, '--json'], { timeoutMs: 45_000 })
    expect(join.code, join.stderr).toBe(0)
    expect(json(join)).toMatchObject({ kind: 'invite' })
    const socket3 = third.socket
    await waitFor(
      async () => (await apiCall<NodeInfo>(socket3, 'GET', '/v1/node')).body.admitted,
      20_000,
      'node3 admitted',
    )
    await waitFor(
      async () =>
        (await apiCall<PeerInfo[]>(d1Socket(), 'GET', '/v1/peers')).body.some(
          (p) => p.peerId === third?.peerId && p.admitted && p.state !== 'gone',
        ),
      30_000,
      'node3 among the peers of node1',
    )
    const seen = json<PeerInfo[]>(await rmeshIn(d1, ['peers', '--json']))
    expect(seen.find((p) => p.peerId === third?.peerId)).toMatchObject({ name: 'node3' })
    expect(json<NodeInfo>(await rmeshIn(fresh, ['status', '--json'])).admitted).toBe(true)
    // The invite is single-use.
    const again = await rmeshIn(fresh, ['join', invite])
    expect(again.code).not.toBe(0)
  })

  it('token revoke and token renew', async () => {
    const rev = await rmeshIn(d1, ['token', 'revoke', issuedId, '--json'])
    expect(rev.code, rev.stderr).toBe(0)
    expect(json<TokenInfo>(rev)).toMatchObject({ id: issuedId, revoked: true })
    const list = json<TokenInfo[]>(await rmeshIn(d1, ['token', 'list', '--json']))
    expect(list.find((t) => t.id === issuedId)?.revoked).toBe(true)

    const renew = await rmeshIn(d1, ['token', 'renew'])
    expect(renew.code, renew.stderr).toBe(0)
    expect(renew.stdout.trimEnd().split('\n').at(-1)).toMatch(/^rmesh-token-\S+$/)
    const unknown = await rmeshIn(d1, ['token', 'revoke', 'bafkreinotatokenatall'])
    expect(unknown.code).toBe(EXIT.NOT_FOUND)
  })

  it('a frame failing on every node fails the job; retry reopens it', async () => {
    const bad = await submitTest('1-3', ['frameMs=100', 'failFrames=2'])
    await waitFor(
      async () => (await apiJob(mesh[0], bad.jobId)).state === 'failed',
      30_000,
      'the job with a failing frame to fail',
    )
    const failed = await jobStatus(bad.jobId)
    expect(failed.state).toBe('failed')
    const f2 = failed.frames.find((f) => f.frame === 2)
    expect(f2).toMatchObject({ state: 'failed' })
    expect(f2?.error).toMatch(/fail frame 2/)
    const attempts = f2?.attempts ?? 0

    const retry = await rmeshIn(d1, ['retry', bad.jobId])
    expect(retry.code, retry.stderr).toBe(0)
    expect(retry.stdout).toMatch(/reopened 1 frame\(s\): 2/)
    await waitFor(
      async () =>
        ((await apiJob(mesh[0], bad.jobId)).frames.find((f) => f.frame === 2)?.attempts ?? 0) >
        attempts,
      20_000,
      'frame 2 rendered again after retry',
    )
    // A job without failed frames has nothing to retry.
    const none = await rmeshIn(d1, ['retry', doneJob])
    expect(none.code).toBe(EXIT.CONFLICT)
  })
})
