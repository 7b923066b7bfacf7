/**
 * Fault d: a renderer frozen with SIGSTOP for longer than the lease timeout (3 s here),
 * then resumed with SIGCONT. The others must reopen its lease as a new attempt and finish
 * the work; once resumed it must see it lost, stop the stale render, and the job must end
 * with every frame once and few duplicates.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProc, waitFor } from '../../helpers/daemons.js'
import { expectPromisesKept, jobDetail, metric, startFaultMesh, stopAll, submitTestJob, waitFramesDone, waitRendering } from './helpers.js'

describe('faults: a node paused longer than a lease (3 daemons)', () => {
  let procs: DaemonProc[] = []
  const jobDirs: string[] = []
  beforeAll(async () => {
    procs = await startFaultMesh(3)
  })
  afterAll(async () => {
    await stopAll(procs, jobDirs)
  })

  it('d. SIGSTOP > lease timeout, then SIGCONT: its chunk is reopened elsewhere and the job completes', async () => {
    const [submitter, , victim] = procs
    const job = await submitTestJob(submitter, { frames: 90, frameMs: 200 })
    jobDirs.push(job.workDir)
    await waitFramesDone(submitter, job.jobId, 10)
    await waitRendering(submitter, victim, job.jobId)
    const held = (await jobDetail(submitter, job.jobId))!.chunks.filter((c) => c.node === victim.peerId && (c.state === 'claimed' || c.state === 'rendering'))
    const pausedAt = Date.now()
    victim.proc.kill('SIGSTOP')
    try {
      // Its leases reopen as new attempts held (or finished) by the others.
      await waitFor(
        async () => {
          const j = await jobDetail(submitter, job.jobId)
          return held.every((h) => {
            const c = j!.chunks[h.index]
            return c.attempt > h.attempt && c.node !== victim.peerId
          })
        },
        30_000,
        'the frozen node’s leases to be reopened elsewhere',
        100,
      )
      console.log(`[faults] d. leases of the frozen node reopened after ${Date.now() - pausedAt} ms (lease timeout 3000 ms)`)
      expect(Date.now() - pausedAt).toBeGreaterThanOrEqual(2_500)
    } finally {
      victim.proc.kill('SIGCONT')
    }
    const counts = await expectPromisesKept('d. SIGSTOP/SIGCONT', procs, submitter, job)
    console.log(`[faults] d. frozen node lost claims: ${await metric(victim, 'rmesh_lease_conflicts_total')}`)
    expect(counts.duplicateCompletes).toBeLessThanOrEqual(held.length)
    // The stale chunks were finished by someone else, not by the node that woke up.
    const j = (await jobDetail(submitter, job.jobId))!
    for (const h of held) expect(j.chunks[h.index].attempt).toBeGreaterThan(h.attempt)
  })
})
