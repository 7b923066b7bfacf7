/**
 * A node's own rules on real daemons (test engine, loopback): `rmesh node pause --now` hands
 * its leases back with release entries, so another node takes them within a second and the
 * job ends with every frame once; a node outside its schedule (its wall clock moved to a few
 * seconds before a window, RMESH_TEST_RULES_CLOCK_OFFSET_MS) takes nothing until the window
 * opens; a job of a pool (tags) goes only to nodes with the tag; the mesh sees each state
 * through presence; garbage requests are refused and change nothing.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { JobDetail, NodeRulesView, PeerInfo } from '../../../src/api/types.js'
import { admitDirs } from '../../../cli/local-mesh.js'
import {
  apiCall,
  type DaemonProc,
  makeTempDir,
  startDaemonProc,
  waitFor,
} from '../../helpers/daemons.js'
import {
  expectPromisesKept,
  FAST_LEASE_ENV,
  jobDetail,
  stopAll,
  submitTestJob,
} from '../../helpers/faults.js'

const post = <T = NodeRulesView>(d: DaemonProc, path: string, body: unknown) =>
  apiCall<T>(d.socket, 'POST', path, body)

async function peerOf(observer: DaemonProc, d: DaemonProc): Promise<PeerInfo | undefined> {
  const r = await apiCall<PeerInfo[]>(observer.socket, 'GET', '/v1/peers')
  return r.body.find((p) => p.peerId === d.peerId)
}

describe('node rules on real daemons', { timeout: 120_000 }, () => {
  let dirs: string[] = []
  // submitter (no slot), victim (1 slot), taker (2 slots), scheduled (started in its test).
  let submitter: DaemonProc
  let victim: DaemonProc
  let taker: DaemonProc
  let scheduled: DaemonProc | undefined
  const jobDirs: string[] = []
  let boot: string[] = []
  // The victim's user: the ms since they last touched the machine (RMESH_TEST_IDLE_FILE).
  let idleFile = ''
  beforeAll(async () => {
    dirs = await Promise.all([0, 1, 2, 3].map(() => makeTempDir()))
    await admitDirs(dirs)
    const base = { logLevel: 'info', env: { ...FAST_LEASE_ENV } }
    idleFile = join(dirs[1], 'test-user-idle-ms')
    await writeFile(idleFile, '999999999')
    submitter = await startDaemonProc({
      ...base,
      dir: dirs[0],
      name: 'node1',
      extraArgs: ['--slots', '0'],
    })
    boot = submitter.addresses.filter((a) => a.includes('/ip4/127.0.0.1/'))
    ;[victim, taker] = await Promise.all([
      startDaemonProc({
        ...base,
        env: { ...base.env, RMESH_TEST_IDLE_FILE: idleFile },
        dir: dirs[1],
        name: 'victim',
        bootstrap: boot,
      }),
      startDaemonProc({
        ...base,
        dir: dirs[2],
        name: 'taker',
        bootstrap: boot,
        extraArgs: ['--slots', '2'],
      }),
    ])
  })
  afterAll(async () => {
    await stopAll([submitter, victim, taker, scheduled], jobDirs)
  })

  it('pause --now: its leases are taken by another node within 1 s; every frame once', async () => {
    // The taker waits (drained: it holds nothing, so paused at once) while the victim claims.
    expect((await post(taker, '/v1/node/pause', { mode: 'drain' })).body.state).toBe('paused')
    await waitFor(
      async () => (await peerOf(victim, taker))?.rules?.state === 'paused',
      10_000,
      'the victim to hear the taker is paused',
    )
    const job = await submitTestJob(submitter, { frames: 2, frameMs: 2500 })
    jobDirs.push(job.workDir)
    const held = (j?: JobDetail) =>
      j?.chunks.filter((c) => c.state === 'claimed' || c.state === 'rendering') ?? []
    await waitFor(
      async () => held(await jobDetail(victim, job.jobId)).some((c) => c.node === victim.peerId),
      20_000,
      'the victim to hold a chunk',
      25,
    )
    expect((await post(taker, '/v1/node/resume', {})).body.state).toBe('active')
    await waitFor(
      async () => (await peerOf(victim, taker))?.rules === undefined,
      10_000,
      'the victim to hear the taker is back',
    )
    const before = held(await jobDetail(victim, job.jobId)).filter((c) => c.node === victim.peerId)
    expect(before.length).toBeGreaterThan(0)
    const t0 = Date.now()
    const paused = await post(victim, '/v1/node/pause', { mode: 'now' })
    expect(paused.status).toBe(200)
    expect(paused.body).toMatchObject({ state: 'paused', pause: 'now' })
    await waitFor(
      async () => {
        const j = await jobDetail(taker, job.jobId)
        return before.every((b) => {
          const c = j?.chunks[b.index]
          return c?.node === taker.peerId && c.attempt > b.attempt
        })
      },
      5_000,
      'the taker to take the released chunks',
      20,
    )
    const tookMs = Date.now() - t0
    console.log(`[node-rules] ${before.length} lease(s) of the paused node taken in ${tookMs} ms`)
    expect(tookMs).toBeLessThan(1_000)
    const counts = await expectPromisesKept(
      'pause --now',
      [submitter, victim, taker],
      submitter,
      job,
    )
    expect(counts.duplicateCompletes).toBe(0)
    // Released, not failed; the paused node shows as paused to the mesh, and stays so.
    const j = (await jobDetail(submitter, job.jobId))!
    expect(j.frames.every((f) => !f.error)).toBe(true)
    expect(j.chunks.every((c) => c.node === taker.peerId)).toBe(true)
    await waitFor(
      async () => (await peerOf(submitter, victim))?.rules?.state === 'paused',
      5_000,
      'the mesh to see the victim paused',
    )
    expect((await peerOf(submitter, victim))?.slots.total).toBe(0)
    expect((await post(victim, '/v1/node/resume', {})).body.state).toBe('active')
  })

  it('idle-only: the user coming back makes the node hand its leases back within 2 s', async () => {
    expect((await post(victim, '/v1/node/idle', { minutes: 1 })).body).toMatchObject({
      state: 'active',
      idle: { minutes: 1, source: 'node' },
    })
    expect((await post(taker, '/v1/node/pause', { mode: 'drain' })).body.state).toBe('paused')
    const job = await submitTestJob(submitter, { frames: 2, frameMs: 2000 })
    jobDirs.push(job.workDir)
    const mine = async () =>
      ((await jobDetail(victim, job.jobId))?.chunks ?? []).filter(
        (c) => c.node === victim.peerId && (c.state === 'claimed' || c.state === 'rendering'),
      )
    await waitFor(async () => (await mine()).length > 0, 20_000, 'the victim to render', 25)
    const t0 = Date.now()
    await writeFile(idleFile, '0') // the user is back
    await waitFor(async () => (await mine()).length === 0, 5_000, 'the leases handed back', 25)
    const backMs = Date.now() - t0
    console.log(`[node-rules] idle-only: leases handed back ${backMs} ms after the user came back`)
    expect(backMs).toBeLessThan(2_500)
    await waitFor(
      async () => (await peerOf(submitter, victim))?.rules?.state === 'idle-wait',
      5_000,
      'the mesh to see the node waiting for its user',
    )
    // The taker finishes the job; every frame once.
    await post(taker, '/v1/node/resume', {})
    await expectPromisesKept('idle-only', [submitter, victim, taker], submitter, job)
    await post(victim, '/v1/node/idle', { minutes: null })
    await writeFile(idleFile, '999999999')
  })

  it('garbage requests are refused with the field named; nothing changes, daemon up', async () => {
    const bad: [string, unknown, string][] = [
      ['/v1/node/pause', { mode: 'later' }, 'mode'],
      ['/v1/node/pause', { mode: 'now', extra: 1 }, 'extra'],
      ['/v1/node/schedule', { schedule: 'mon 25:00-26:00' }, 'schedule'],
      ['/v1/node/schedule', { schedule: 42 }, 'schedule'],
      ['/v1/node/schedule', { schedule: 'x'.repeat(100_000) }, 'schedule'],
      ['/v1/node/idle', { minutes: 0 }, 'minutes'],
      ['/v1/node/idle', { minutes: 5, loadPercent: 500 }, 'loadPercent'],
      ['/v1/node/limits', { nice: -5 }, 'nice'],
      ['/v1/node/limits', { memoryMiB: 'lots' }, 'memoryMiB'],
      ['/v1/node/limits', { cores: 3 }, 'cores'],
    ]
    for (const [path, body, field] of bad) {
      const r = await post<{ error: { code: string; details?: { field?: string } } }>(
        victim,
        path,
        body,
      )
      expect(r.status, `${path} ${JSON.stringify(body).slice(0, 60)}`).toBe(400)
      expect(r.body.error.code).toBe('ERR_INVALID_INPUT')
      expect(r.body.error.details?.field).toBe(field)
    }
    const r = await apiCall<NodeRulesView>(victim.socket, 'GET', '/v1/node/rules')
    expect(r.body).toEqual({ state: 'active', limits: {} })
    // A valid limit is kept and shown; cleared again.
    expect((await post(victim, '/v1/node/limits', { threads: 2, nice: 5 })).body.limits).toEqual({
      threads: 2,
      nice: 5,
    })
    expect(
      (await post(victim, '/v1/node/limits', { threads: null, nice: null })).body.limits,
    ).toEqual({})
  })

  it('outside its schedule a node takes nothing until the window opens; pool tags hold', async () => {
    // The scheduled node's clock is moved to OPEN_IN_MS before a minute boundary; its
    // schedule opens at that boundary (its local time, as the daemon's own time zone reads it).
    // It must cover the daemon's start and the checks below on a loaded machine (6 s did not).
    const OPEN_IN_MS = 12_000
    const boundary = Math.ceil((Date.now() + 120_000) / 60_000) * 60_000
    const offset = boundary - (Date.now() + OPEN_IN_MS)
    const opensAt = boundary - offset
    const hhmm = (ms: number) => {
      const d = new Date(ms)
      return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`
    }
    const window = `daily ${hhmm(boundary)}-${hhmm(boundary + 3_600_000)}`
    scheduled = await startDaemonProc({
      logLevel: 'info',
      dir: dirs[3],
      name: 'scheduled',
      bootstrap: boot,
      env: { ...FAST_LEASE_ENV, RMESH_TEST_RULES_CLOCK_OFFSET_MS: String(offset) },
      extraArgs: ['--schedule', window, '--tags', 'pool-b'],
    })
    const sched = scheduled
    const rules = (await apiCall<NodeRulesView>(sched.socket, 'GET', '/v1/node/rules')).body
    expect(rules).toMatchObject({
      state: 'off-schedule',
      schedule: { text: window, open: false, source: 'config', nextChange: boundary },
    })
    const job = await submitTestJob(submitter, { frames: 3, frameMs: 200, tags: ['pool-b'] })
    jobDirs.push(job.workDir)
    // The mesh sees why it waits; nobody claims (the others lack the tag).
    await waitFor(
      async () => {
        const p = await peerOf(submitter, sched)
        return p?.rules?.state === 'off-schedule' && p.tags?.includes('pool-b')
      },
      5_000,
      'the mesh to see the node off its schedule',
    )
    // All of that happened before the window opened, or the test would prove nothing.
    expect(Date.now()).toBeLessThan(opensAt)
    let firstClaimAt: number | undefined
    await waitFor(
      async () => {
        const j = await jobDetail(submitter, job.jobId)
        if (j?.chunks.some((c) => c.node !== null)) firstClaimAt ??= Date.now()
        return j?.state === 'done'
      },
      OPEN_IN_MS + 30_000,
      'the job to finish once the window opens',
      25,
    )
    console.log(`[node-rules] first claim ${firstClaimAt! - opensAt} ms after the window opened`)
    // A claim seen before the opening would be a rule broken (the gap is one poll, 25 ms).
    expect(firstClaimAt!).toBeGreaterThanOrEqual(opensAt - 50)
    await expectPromisesKept('schedule', [submitter, victim, taker, sched], submitter, job)
    const j = (await jobDetail(submitter, job.jobId))!
    expect(j.tags).toEqual(['pool-b'])
    expect(j.chunks.every((c) => c.node === sched.peerId)).toBe(true)
  })
})
