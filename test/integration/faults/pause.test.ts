/**
 * Fault d: a renderer frozen with SIGSTOP for longer than the lease timeout (3 s here),
 * then resumed with SIGCONT. The others must reopen its lease as a new attempt and finish
 * the work; once resumed it must see it lost, stop the stale render, and the job must end
 * with every frame once and few duplicates. Waking, it must know it stood still (its own
 * stall is no peer's silence: it does not judge the others' leases dead).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DaemonProc } from '../../helpers/daemons.js'
import {
  expectPromisesKept,
  jobDetail,
  metric,
  startFaultMesh,
  stopAll,
  submitTestJob,
  waitFramesDone,
  waitRendering,
  LEASES_ONE_NODE_HOLDS,
  freezeWhileHolding,
  waitReopenedElsewhere,
} from '../../helpers/faults.js'

describe('faults: a node paused longer than a lease (3 daemons)', { timeout: 180_000 }, () => {
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
    // Freeze it while it holds a chunk. A complete it sent just before the freeze may still
    // be on its way: only a claim still standing a moment after the freeze is stuck.
    const { held, pausedAt } = await freezeWhileHolding(submitter, victim, job.jobId, () =>
      waitRendering(submitter, victim, job.jobId),
    )
    try {
      // Its leases reopen as new attempts held (or finished) by the others.
      await waitReopenedElsewhere(submitter, victim, job.jobId, held, 30_000)
      console.log(
        `[faults] d. ${held.length} leases of the frozen node reopened after ${Date.now() - pausedAt} ms (lease timeout 3000 ms)`,
      )
      expect(Date.now() - pausedAt).toBeGreaterThanOrEqual(2_500)
    } finally {
      victim.proc.kill('SIGCONT')
    }
    const counts = await expectPromisesKept('d. SIGSTOP/SIGCONT', procs, submitter, job)
    const reclaims = await Promise.all(procs.map((p) => metric(p, 'rmesh_lease_reclaims_total')))
    const stalledS = await metric(victim, 'rmesh_loop_stalled_seconds_total')
    console.log(
      `[faults] d. frozen node lost claims: ${await metric(victim, 'rmesh_lease_conflicts_total')}; leases judged dead and reclaimed, per node: ${reclaims.join(', ')} (the frozen node last); it saw itself stalled ${stalledS.toFixed(1)} s`,
    )
    // It knew it had been stopped (for at least the 2.5 s checked above, less up to one
    // 250 ms look at its loop), long enough (half a lease) that silences restart at its
    // wake: it judged nobody on what it had not yet read (util/stalls.ts).
    expect(stalledS).toBeGreaterThanOrEqual(1.5)
    // The harm is bounded by what one node can hold when it freezes. The submitter's view
    // of `held` can miss a storing chunk or a claim still in flight, so it is no bound.
    expect(counts.duplicateCompletes).toBeLessThanOrEqual(LEASES_ONE_NODE_HOLDS)
    // On SIGCONT its expired render timers may fire before it hears of the new claims: a
    // render finished in that instant is recorded (a valid output), never more than one each.
    const j = (await jobDetail(submitter, job.jobId))!
    const finishedByWaker = held.filter((h) => j.chunks[h.index].node === victim.peerId).length
    console.log(
      `[faults] d. stale chunks finished by the node that woke up: ${finishedByWaker} of ${held.length}`,
    )
  })
})

/**
 * Fault d′: the same freeze while the job's chunks are long enough that busy nodes beat
 * slower than the busy interval (presence `every`, protocols/presence.md "Busy pace"): 2-s
 * chunks with a 250-ms interval give a 1-s pace, so peers give the frozen node's leases
 * 4 × the lease timeout (2 s → 8 s) before they reopen them, and the job still completes
 * with the promises kept. (Without the stretch they reopen ~4 s after the freeze.) Fault
 * d″: the same far from the job's end, where the pace is 1.5 chunks and the stretch longer.
 */
describe('faults: a paused node whose heartbeats are paced for its chunks', {
  timeout: 120_000,
}, () => {
  let procs: DaemonProc[] = []
  const jobDirs: string[] = []
  const LEASE_MS = 2_000
  beforeAll(async () => {
    procs = await startFaultMesh(3, {
      env: { RMESH_LEASE_TIMEOUT_MS: String(LEASE_MS), RMESH_PRESENCE_INTERVAL_MS: '250' },
    })
  })
  afterAll(async () => {
    await stopAll(procs, jobDirs)
  })

  /**
   * A job of `frames` chunks; once 3 are done and the victim has announced its pace
   * (`settleMs` later), freeze it while it renders; how long until its leases are reopened
   * elsewhere (ms after the freeze). It is resumed either way.
   */
  const reopenAfterFreeze = async (
    what: string,
    job: { frames: number; frameMs: number; settleMs: number; waitMs: number },
  ) => {
    const [submitter, , victim] = procs
    const submitted = await submitTestJob(submitter, { frames: job.frames, frameMs: job.frameMs })
    jobDirs.push(submitted.workDir)
    await waitFramesDone(submitter, submitted.jobId, 3, 30_000)
    await new Promise((r) => setTimeout(r, job.settleMs))
    const { held, pausedAt } = await freezeWhileHolding(submitter, victim, submitted.jobId, () =>
      waitRendering(submitter, victim, submitted.jobId),
    )
    try {
      await waitReopenedElsewhere(submitter, victim, submitted.jobId, held, job.waitMs)
      const reopenedMs = Date.now() - pausedAt
      console.log(`[faults] ${what}: ${held.length} leases reopened after ${reopenedMs} ms`)
      return { submitter, submitted, reopenedMs }
    } finally {
      victim.proc.kill('SIGCONT')
    }
  }

  it('d′. its leases reopen after the timeout stretched by its pace, not before; the job completes', async () => {
    // A median render time exists (so the victim paces itself), and it has announced it.
    const { submitter, submitted, reopenedMs } = await reopenAfterFreeze(
      `d′. the frozen, paced node (lease timeout ${LEASE_MS} ms, stretched × 4)`,
      { frames: 12, frameMs: 2_000, settleMs: 600, waitMs: 30_000 },
    )
    // Unstretched they reopen 2 s after its last heartbeat (~4 s after the freeze, with the
    // survivors' next free slot); stretched, 8 s.
    expect(reopenedMs).toBeGreaterThanOrEqual(6_500)
    const counts = await expectPromisesKept(
      'd′. paced SIGSTOP/SIGCONT',
      procs,
      submitter,
      submitted,
    )
    expect(counts.duplicateCompletes).toBeLessThanOrEqual(LEASES_ONE_NODE_HOLDS)
  })

  it('d″. far from the end of its job its leases reopen after the far pace timeout, longer; the job completes', async () => {
    // 75 chunks of 1 s on 3 renderers: while about 45 or more are open (14.5 per live
    // renderer for a lease timeout of 8 heartbeats, farOpenPerRenderer in
    // src/jobs/lease-manager.ts) a
    // busy node beats every 1.5 chunks (its median render time, spawn included, × 1.5: 1.5 s
    // or more, 6 × the 250-ms interval, at most twice the 1.25-s rest interval, 10 ×), so
    // peers give the frozen node's leases 12–20 s; near the end it would be 2–4 s (half a
    // chunk). protocols/presence.md "Busy pace".
    const { submitter, submitted, reopenedMs } = await reopenAfterFreeze(
      `d″. the frozen node, far from the job's end (lease timeout ${LEASE_MS} ms, stretched × 6–10)`,
      { frames: 75, frameMs: 1_000, settleMs: 1_600, waitMs: 40_000 },
    )
    // At the near pace they would reopen at most ~4 s after its last pulse; at the far pace
    // 12–20 s after it (the freeze comes up to a pace after that pulse), and never beyond
    // the far cap's 20 s (plus a pass).
    expect(reopenedMs).toBeGreaterThanOrEqual(7_000)
    expect(reopenedMs).toBeLessThan(30_000)
    const counts = await expectPromisesKept(
      'd″. far-paced SIGSTOP/SIGCONT',
      procs,
      submitter,
      submitted,
    )
    expect(counts.duplicateCompletes).toBeLessThanOrEqual(LEASES_ONE_NODE_HOLDS)
  })
})
