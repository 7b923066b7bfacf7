/**
 * Issue 19 part 4, job order, with 2 real daemons on loopback (test engine): a paused job
 * takes no new chunk on any node, then resumes and finishes with every frame once; a job
 * `--after` another starts only once the first is done; a job after a canceled one fails
 * naming it; `retry --unblock` lets a blocked node claim again. Last, an admitted peer
 * whose token only grants render publishes pause/resume/ready/unblock entries: every one
 * is refused (ERR_ENTRY_UNAUTHORIZED), the job is untouched and both daemons stay up.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { JobDetail, JobSummary, RetryResponse } from '../../../src/api/types.js'
import { EXIT } from '../../../cli/exit-codes.js'
import { jobLogId } from '../../../src/log/types.js'
import { json, rmeshIn } from '../../e2e/run-cli.js'
import { apiCall, type DaemonProc, makeTempDir, waitFor } from '../../helpers/daemons.js'
import {
  daemonLog,
  expectAlive,
  expectOutputs,
  jobDetail,
  startFaultMesh,
  stopAll,
  type SubmittedJob,
  submitTestJob,
  waitJobCollected,
} from '../../helpers/faults.js'
import { type HostilePeer, startHostilePeer } from '../../helpers/hostile-peer.js'

/** Chunks ever claimed (attempt > 0) or done, as a replica sees them. */
const started = (j: JobDetail) =>
  j.chunks.filter((c) => c.attempt > 0 || c.state === 'done').map((c) => c.index)

describe('jobs: job order (2 daemons)', { timeout: 120_000 }, () => {
  let procs: DaemonProc[] = []
  let work = ''
  const dirs: string[] = []
  let hostile: HostilePeer | undefined
  const submit = async (o: Parameters<typeof submitTestJob>[1]): Promise<SubmittedJob> => {
    const job = await submitTestJob(procs[0], o)
    dirs.push(job.workDir)
    return job
  }
  beforeAll(async () => {
    work = await makeTempDir('rmesh-job-order-')
    // Debug: the daemons log the entries they refuse (the capability test reads them).
    procs = await startFaultMesh(2, { logLevel: 'debug' })
    await waitFor(
      async () => {
        for (const [i, d] of procs.entries()) {
          const r = await apiCall<{ peerId: string; state: string }[]>(d.socket, 'GET', '/v1/peers')
          if (!r.body.some((p) => p.peerId === procs[1 - i].peerId && p.state !== 'gone'))
            return false
        }
        return true
      },
      15_000,
      'both daemons to see each other',
    )
  }, 40_000)
  afterAll(async () => {
    await hostile?.stop().catch(() => {})
    await stopAll(procs, [work, ...dirs, ...(hostile ? [hostile.dir] : [])])
  })

  it('a paused job takes no new chunk on any node; resumed, it finishes with every frame once', async () => {
    const [sub, other] = procs
    const job = await submit({ frames: 8, frameMs: 300 })
    // Through the API, at once: the CLI's start-up could outlast this short job on a busy
    // machine (\`rmesh pause\` itself is tested below on a paused job, and against a fake daemon).
    const pause = await apiCall<JobSummary>(sub.socket, 'POST', `/v1/jobs/${job.jobId}/pause`)
    expect(pause.body.state).toBe('paused')
    // What renders now finishes (a chunk and maybe a prefetched one per node), then nothing.
    const settled = await waitFor(
      async () => {
        const js = await Promise.all(procs.map((p) => jobDetail(p, job.jobId)))
        if (js.some((j) => j?.state !== 'paused')) return undefined
        return js.every((j) =>
          j!.chunks.every((c) => c.state !== 'claimed' && c.state !== 'rendering'),
        )
          ? js[0]
          : undefined
      },
      15_000,
      'the chunks rendering at the pause to finish',
      100,
    )
    const before = started(settled)
    expect(settled.framesDone).toBeLessThan(8)
    await new Promise((r) => setTimeout(r, 1_000))
    for (const p of procs) {
      const j = (await jobDetail(p, job.jobId))!
      expect(j.state).toBe('paused')
      expect(j.reason).toMatch(/^paused: no new chunk starts until rmesh resume/)
      expect(started(j), `no new claim on ${p.peerId}`).toEqual(before)
    }
    const again = await rmeshIn(sub.dir, ['pause', job.jobId])
    expect(again.code).toBe(EXIT.CONFLICT)
    expect(again.stderr).toMatch(/is already paused/)
    const list = await rmeshIn(other.dir, ['jobs', '--json'])
    expect(json<JobSummary[]>(list).find((j) => j.jobId === job.jobId)?.state).toBe('paused')

    const resume = await rmeshIn(sub.dir, ['resume', job.jobId])
    expect(resume.code, resume.stderr).toBe(0)
    expect(resume.stdout).toMatch(/^resumed /)
    const t0 = Date.now()
    await waitFor(
      async () => started((await jobDetail(sub, job.jobId))!).length > before.length,
      5_000,
      'a new claim after the resume',
      25,
    )
    console.log(
      `[job-order] a new claim seen ${Date.now() - t0} ms after \`rmesh resume\` returned`,
    )
    await waitJobCollected(sub, job.jobId, 30_000)
    await expectOutputs(job)
  })

  it('a job --after another starts only once the first is done', async () => {
    const [sub, other] = procs
    const first = await submit({ frames: 4, frameMs: 300 })
    // Held paused while the second is submitted: the CLI's own start can outlast a short
    // job on a loaded machine, and the wait would then never be seen.
    const held = await apiCall<JobSummary>(sub.socket, 'POST', `/v1/jobs/${first.jobId}/pause`)
    expect(held.status).toBe(200)
    const scene = join(work, 'after.blend')
    await writeFile(scene, 'after scene\n')
    const run = await rmeshIn(sub.dir, [
      'submit',
      scene,
      '--engine',
      'test',
      '--param',
      'frameMs=100',
      '--frames',
      '1-2',
      '--after',
      first.jobId,
      '--detach',
      '--json',
      '--out',
      join(work, 'after-out'),
    ])
    expect(run.code, run.stderr).toBe(0)
    const second = json<{ jobId: string }>(run).jobId
    const w = (await jobDetail(sub, second))!
    expect(w.after).toEqual([first.jobId])
    expect(w.state).toBe('waiting')
    expect(w.reason).toBe(`waiting for ${first.jobId} to finish`)
    const resumed = await apiCall<JobSummary>(sub.socket, 'POST', `/v1/jobs/${first.jobId}/resume`)
    expect(resumed.status).toBe(200)
    // Watch both replicas: the second job has no claim while the first is not done.
    let violation = ''
    let sawWaiting = false
    await waitFor(
      async () => {
        for (const p of procs) {
          const [a, b] = await Promise.all([jobDetail(p, first.jobId), jobDetail(p, second)])
          if (!a || !b) continue
          if (b.state === 'waiting') sawWaiting = true
          if (a.state !== 'done' && started(b).length > 0)
            violation = `${p.peerId}: second job claimed while the first is ${a.state}`
        }
        const b = await jobDetail(sub, second)
        return violation !== '' || (b?.state === 'done' && b.localComplete)
      },
      30_000,
      'the second job to finish',
      50,
    )
    expect(violation).toBe('')
    expect(sawWaiting).toBe(true)
    expect((await jobDetail(other, first.jobId))?.state).toBe('done')
  })

  it('a job after a canceled one fails naming it (paused or not); --after a canceled job is refused', async () => {
    const [sub, other] = procs
    const first = await submit({ frames: 20, frameMs: 500 })
    const scene = join(work, 'after2.blend')
    await writeFile(scene, 'after scene 2\n')
    const args = ['submit', scene, '--engine', 'test', '--frames', '1', '--detach', '--json']
    const run = await rmeshIn(sub.dir, [...args, '--after', first.jobId])
    expect(run.code, run.stderr).toBe(0)
    const second = json<{ jobId: string }>(run).jobId
    // A waiting job can be paused too (paused shows first); the gate still judges it.
    const pause = await rmeshIn(sub.dir, ['pause', second, '--json'])
    expect(pause.code, pause.stderr).toBe(0)
    expect(json<JobSummary>(pause).state).toBe('paused')
    const cancel = await rmeshIn(sub.dir, ['cancel', first.jobId])
    expect(cancel.code, cancel.stderr).toBe(0)
    const failed = await waitFor(
      async () => {
        const j = await jobDetail(other, second)
        return j?.state === 'failed' ? j : undefined
      },
      10_000,
      'the dependent job to fail on the other node',
      50,
    )
    expect(failed.reason).toBe(`dependency ${first.jobId} was canceled`)
    expect(failed.frames.every((f) => f.attempts === 0)).toBe(true)
    const refused = await rmeshIn(sub.dir, [...args, '--after', first.jobId])
    expect(refused.code).toBe(EXIT.USAGE)
    expect(refused.stderr).toMatch(/has been canceled, so this job could never start/)
    const bad = await rmeshIn(sub.dir, [...args, '--after', 'NOT-AN-ID'])
    expect(bad.code).toBe(EXIT.USAGE)
    expect(bad.stderr).toMatch(/--after: "not-an-id" is not a job id/)
  })

  it('status shows the blocked nodes and why; retry --unblock lets a blocked node claim again', async () => {
    const [sub, other] = procs
    // Frame 1 fails everywhere: each node fails it 3 times (N = 3) and is blocked.
    const job = await submit({ frames: 2, frameMs: 50, params: { failFrames: 1 } })
    const blocked = await waitFor(
      async () => {
        const j = await jobDetail(sub, job.jobId)
        return j && j.blocked.length === 2 ? j : undefined
      },
      20_000,
      'both nodes to be blocked',
      50,
    )
    const ofOther = blocked.blocked.find((b) => b.node === other.peerId)!
    expect(ofOther.failures).toHaveLength(3)
    expect(ofOther.failures[0]).toMatchObject({
      chunk: 0,
      frames: [1],
      reason: expect.stringMatching(/test engine told to fail frame 1/),
    })
    const status = await rmeshIn(sub.dir, ['status', job.jobId])
    expect(status.stdout).toMatch(/blocked {4}2 node\(s\) may not take this job/)
    expect(status.stdout).toContain(`${other.peerId} after 3 failure(s):`)
    expect(status.stdout).toMatch(/chunk 0 \(frame 1\) attempt \d+: .*fail frame 1/)
    expect(status.stdout).toContain(`rmesh retry ${job.jobId} --unblock`)
    const attempts = blocked.chunks[0].attempt

    const un = await rmeshIn(sub.dir, [
      'retry',
      job.jobId,
      '--unblock',
      other.peerId.slice(0, 20),
      '--json',
    ])
    expect(un.code, un.stderr).toBe(0)
    expect(json<RetryResponse>(un).unblocked).toEqual([other.peerId])
    // The other node claims chunk 0 again (and fails it again: its count restarted at 0).
    const again = await waitFor(
      async () => {
        const j = await jobDetail(sub, job.jobId)
        const f = j?.frames.find((x) => x.frame === 1)
        return j && j.chunks[0].attempt > attempts && f?.errorNode === other.peerId ? j : undefined
      },
      10_000,
      'the unblocked node to claim chunk 0 again',
      50,
    )
    expect(again.state).not.toBe('failed')
    await rmeshIn(sub.dir, ['cancel', job.jobId])
  })

  it('the control API refuses garbage pause/resume/after/unblock requests with typed errors', async () => {
    const [sub, other] = procs
    const job = await submit({ frames: 4, frameMs: 200 })
    const scene = join(work, 'garbage.blend')
    await writeFile(scene, 'garbage scene\n')
    const call = async (method: string, path: string, body?: unknown) => {
      const r = await apiCall<{ error?: { code: string; message: string } }>(
        sub.socket,
        method,
        path,
        body,
      )
      return [r.status, r.body.error?.code, r.body.error?.message ?? ''] as const
    }
    const post = (b: Record<string, unknown>) =>
      call('POST', '/v1/jobs', { scenePath: scene, engine: 'test', frames: '1', ...b })
    const cases: [
      Promise<readonly [number, string | undefined, string]>,
      number,
      string,
      RegExp,
    ][] = [
      [
        call('POST', `/v1/jobs/${job.jobId}/retry`, { unblock: 5 }),
        400,
        'ERR_INVALID_INPUT',
        /unblock must be/,
      ],
      [
        call('POST', `/v1/jobs/${job.jobId}/retry`, { unblock: '../x' }),
        400,
        'ERR_INVALID_INPUT',
        /unblock must be/,
      ],
      [
        call('POST', `/v1/jobs/${job.jobId}/retry`, { unblock: true, frames: '1' }),
        400,
        'ERR_INVALID_INPUT',
        /not both/,
      ],
      [
        call('POST', `/v1/jobs/${job.jobId}/retry`, { unblock: true }),
        409,
        'ERR_CONFLICT',
        /no blocked node/,
      ],
      [call('POST', '/v1/jobs/zzzzzzzz/pause'), 404, 'ERR_NOT_FOUND', /zzzzzzzz/],
      [call('POST', `/v1/jobs/${job.jobId}/resume`), 409, 'ERR_CONFLICT', /is not paused/],
      [post({ after: 'abcdefgh' }), 400, 'ERR_INVALID_INPUT', /after must list/],
      [post({ after: [] }), 400, 'ERR_INVALID_INPUT', /after must list/],
      [post({ after: [7] }), 400, 'ERR_INVALID_INPUT', /after must list/],
      [post({ after: Array(17).fill(job.jobId) }), 400, 'ERR_INVALID_INPUT', /1\.\.16/],
      [
        post({ after: ['zzzzzzzz'] }),
        400,
        'ERR_INVALID_INPUT',
        /after: job zzzzzzzz is not known on this mesh/,
      ],
      [post({ after: ['Bad!'] }), 400, 'ERR_INVALID_INPUT', /not a job id/],
    ]
    for (const [p, status, code, message] of cases) {
      const [s, c, m] = await p
      expect([s, c], m).toEqual([status, code])
      expect(m).toMatch(message)
    }
    // Another node's job: only its submitter (or an admin's node) may pause it.
    await waitFor(
      async () => !!(await jobDetail(other, job.jobId)),
      10_000,
      'the job on the other node',
    )
    const r = await apiCall<{ error: { code: string; message: string } }>(
      other.socket,
      'POST',
      `/v1/jobs/${job.jobId}/pause`,
    )
    expect([r.status, r.body.error.code]).toEqual([403, 'ERR_FORBIDDEN'])
    expect(r.body.error.message).toMatch(/run this command there/)
    await expectAlive(procs)
    await waitJobCollected(sub, job.jobId, 20_000)
  })

  it('pause, resume, ready and unblock from a peer whose token only grants render are refused', async () => {
    const [sub, other] = procs
    hostile = await startHostilePeer({
      ownerDir: sub.dir,
      bootstrap: sub.addresses,
      caps: ['render'],
    })
    await hostile.waitConnected(
      procs.map((p) => p.peerId),
      30_000,
    )
    const job = await submit({ frames: 6, frameMs: 300 })
    await waitFor(
      async () => (await hostile!.log.entries(jobLogId(job.jobId))).length > 1,
      10_000,
      'the render-only peer to see the job',
      20,
    )
    const sent: Uint8Array[] = []
    sent.push(await hostile.publishEntry(job.jobId, 'pause', {}))
    sent.push(await hostile.publishEntry(job.jobId, 'unblock', {}))
    sent.push(await hostile.publishEntry(job.jobId, 'ready', {}))
    sent.push(await hostile.publishEntry(job.jobId, 'pause', 'garbage'))
    sent.push(await hostile.publishEntry(job.jobId, 'resume', { node: 5 }))
    // The same check the daemons make, in the peer's own log: a typed refusal.
    for (const bytes of sent) {
      const r = await hostile.log.join(bytes)
      expect(r.added).toEqual([])
      expect(r.rejected[0]?.error.code).toBe('ERR_ENTRY_UNAUTHORIZED')
    }
    await waitJobCollected(sub, job.jobId, 30_000)
    await expectAlive(procs)
    for (const p of procs) {
      const history = await apiCall<string>(p.socket, 'GET', `/v1/jobs/${job.jobId}/logs`)
      expect(history.body).not.toMatch(/\b(pause|unblock|ready)\b/)
      expect((await jobDetail(p, job.jobId))?.state).toBe('done')
    }
    const logs = (await Promise.all(procs.map((p) => daemonLog(p)))).join('\n')
    expect(logs).toMatch(/ERR_TOKEN_CAPABILITY|ERR_ENTRY_UNAUTHORIZED/)
    void other
  })
})
