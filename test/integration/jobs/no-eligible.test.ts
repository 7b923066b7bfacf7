/**
 * Issue 6, "fails a job when no eligible node remains", with real daemons: on a 2-node
 * mesh a frame that fails everywhere gets both nodes blocklisted (N = 3) before any chunk
 * reaches M = 3 distinct nodes, so no node may take it; the submitter's watchdog fails the
 * job after RMESH_NO_ELIGIBLE_GRACE_MS (3 s here) with a clear reason, both nodes agree,
 * `rmesh submit` exits 1 with that reason, and a retry revives the job.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { JobDetail, JobSummary } from '../../../src/api/types.js'
import { EXIT } from '../../../cli/exit-codes.js'
import { rmeshIn } from '../../e2e/run-cli.js'
import { apiCall, type DaemonProc, makeTempDir, startMesh, waitFor } from '../../helpers/daemons.js'
import { jobDetail, stopAll } from '../../helpers/faults.js'

const GRACE_MS = 3_000

describe('jobs: no eligible node remains (2 daemons)', { timeout: 60_000 }, () => {
  let procs: DaemonProc[] = []
  let work = ''
  beforeAll(async () => {
    work = await makeTempDir('rmesh-no-eligible-')
    procs = await startMesh(2, {
      env: { RMESH_NO_ELIGIBLE_GRACE_MS: String(GRACE_MS), RMESH_PRESENCE_INTERVAL_MS: '500' },
    })
    // Each must see the other, or it would take the failing chunk alone.
    await waitFor(
      async () => {
        for (const [i, d] of procs.entries()) {
          const r = await apiCall<{ peerId: string; state: string }[]>(d.socket, 'GET', '/v1/peers')
          const other = procs[1 - i].peerId
          if (!r.body.some((p) => p.peerId === other && p.state !== 'gone')) return false
        }
        return true
      },
      15_000,
      'both daemons to see each other',
    )
  }, 30_000)
  afterAll(async () => {
    await stopAll(procs, [work])
  })

  it('a frame failing on both nodes blocklists both; the job fails within the grace with a clear reason', async () => {
    const [submitter, other] = procs
    const scene = join(work, 'scene.blend')
    await writeFile(scene, 'no eligible node scene\n')
    const t0 = Date.now()
    const cli = rmeshIn(
      submitter.dir,
      [
        'submit',
        scene,
        '--frames',
        '1-2',
        '--chunk',
        '1',
        '--engine',
        'test',
        '--param',
        'frameMs=100',
        '--param',
        'failFrames=1',
        '--out',
        join(work, 'out'),
      ],
      { timeoutMs: 45_000 },
    )
    const jobId = await waitFor(
      async () => (await apiCall<JobSummary[]>(submitter.socket, 'GET', '/v1/jobs')).body[0]?.jobId,
      15_000,
      'the job to be announced',
    )
    // Watch the submitter's view until the job fails: the waiting hint counts down first.
    let hintAt: number | undefined
    let hint = ''
    const failed = await waitFor(
      async () => {
        const j = await jobDetail(submitter, jobId)
        if (j?.reason && /^waiting: .*fails in \d+ s/.test(j.reason) && hintAt === undefined) {
          hintAt = Date.now()
          hint = j.reason
        }
        return j?.state === 'failed' ? j : undefined
      },
      40_000,
      'the job to fail',
      50,
    )
    const failedAt = Date.now()
    expect(failed.reason).toMatch(
      /^no eligible node remains: chunk 0 \(frame 1\): every node that can run it failed 3 chunk\(s\) of this job and is blocklisted: node1, node2$/,
    )
    expect(failed.blocklist?.length).toBe(2)
    expect(hint).toMatch(
      /blocklisted: node1, node2 \(fails in \d+ s unless a node that can run it appears\)$/,
    )

    // Both nodes agree.
    const seen = await waitFor(
      async () => {
        const j = await jobDetail(other, jobId)
        return j?.state === 'failed' ? j : undefined
      },
      10_000,
      'the other node to see the job failed',
    )
    expect(seen.reason).toBe(failed.reason)
    expect(seen.frames.map((f) => f.state)).toEqual(failed.frames.map((f) => f.state))

    // `rmesh submit` (waiting) exits with the failed-job code and says why.
    const run = await cli
    expect(run.code, run.stderr).toBe(EXIT.JOB_FAILED)
    expect(run.stderr).toMatch(/failed: no eligible node remains: .*blocklisted: node1, node2/)

    const jobHistory = async () => {
      const log = await apiCall<string>(submitter.socket, 'GET', `/v1/jobs/${jobId}/logs`)
      return log.body.split('\n').filter(Boolean)
    }
    const history = await jobHistory()
    const abortLines = history.filter((l) => / abort \{/.test(l))
    expect(abortLines).toHaveLength(1)
    expect(abortLines[0]).toContain(` ${submitter.peerId.slice(-8)} abort `)
    // The verdict held for the whole grace: from the fail that blocklisted the last node to
    // the abort (wall times of one machine's processes).
    const wallOf = (l: string) => Date.parse(l.slice(0, l.indexOf(' ')))
    const lastFail = history.filter((l) => / fail \{/.test(l)).at(-1)!
    const stuckMs = wallOf(abortLines[0]) - wallOf(lastFail)
    expect(stuckMs).toBeGreaterThanOrEqual(GRACE_MS)
    expect(stuckMs).toBeLessThan(GRACE_MS + 8_000)

    // A retry revives it with a fresh start (blocklist cleared); it fails again the same way.
    const retry = await apiCall<{ reopened: number[] }>(
      submitter.socket,
      'POST',
      `/v1/jobs/${jobId}/retry`,
      {},
    )
    expect(retry.status, JSON.stringify(retry.body)).toBe(200)
    const revived = (await jobDetail(submitter, jobId)) as JobDetail
    expect(revived.state).not.toBe('failed')
    expect(revived.blocklist).toEqual([])
    await waitFor(
      async () => (await jobDetail(submitter, jobId))?.state === 'failed',
      30_000,
      'the retried job to fail again',
    )
    expect((await jobHistory()).filter((l) => / abort \{/.test(l))).toHaveLength(2)
    console.log(
      `[jobs] no eligible node: failed ${failedAt - t0} ms after submit, ${stuckMs} ms after the last node was blocklisted, ${failedAt - hintAt!} ms after the hint was first seen (grace ${GRACE_MS} ms); hint: ${hint}`,
    )
  })
})
