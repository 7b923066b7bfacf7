/**
 * Faults with real daemons: a renderer completes chunks and is SIGKILLed, for good, before
 * the submitter pulled their outputs (issue 10). The submitter's daemon runs with the
 * test-only RMESH_TEST_COLLECT_DELAY_MS so the kill lands in that window
 * deterministically. Those frames' outputs exist nowhere else: after outputGraceMs
 * (2 × the 3 s lease timeout) the submitter rejects them, the survivors re-render them,
 * and every frame lands in the output folder exactly once with the exact bytes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProc, stopDaemonProc, waitFor } from '../../helpers/daemons.js'
import {
  daemonLog,
  expectPromisesKept,
  jobDetail,
  metric,
  startFaultMesh,
  stopAll,
  submitTestJob,
} from '../../helpers/faults.js'

describe('faults: outputs lost with their renderer (3 daemons)', { timeout: 120_000 }, () => {
  let procs: DaemonProc[] = []
  const jobDirs: string[] = []
  beforeAll(async () => {
    procs = await startFaultMesh(3, { env: { RMESH_TEST_COLLECT_DELAY_MS: '8000' } })
  })
  afterAll(async () => {
    await stopAll(procs, jobDirs)
  })

  it('a renderer completes chunks and dies before they are collected: they are re-rendered', async () => {
    const [submitter, survivor, victim] = procs
    const job = await submitTestJob(submitter, { frames: 12, frameMs: 300 })
    jobDirs.push(job.workDir)
    const t0 = Date.now()
    const lost = await waitFor(
      async () => {
        const j = await jobDetail(submitter, job.jobId)
        const mine = j?.chunks.filter((c) => c.state === 'done' && c.node === victim.peerId)
        return mine && mine.length > 0 ? mine.map((c) => c.index) : undefined
      },
      30_000,
      'the victim to complete a chunk',
      20,
    )
    await stopDaemonProc(victim, 'SIGKILL')
    const killedAfter = Date.now() - t0
    // Not collected yet (the delay): those outputs now exist on no live node.
    await expectPromisesKept(
      'lost outputs: renderer SIGKILLed before collection',
      [submitter, survivor],
      submitter,
      job,
      90_000,
    )
    expect(await metric(submitter, 'rmesh_outputs_rejected_total')).toBeGreaterThanOrEqual(1)
    const rejects = (await daemonLog(submitter))
      .split('\n')
      .filter((l) => l.includes('rejected outputs') && l.includes(job.jobId))
    expect(rejects.length).toBeGreaterThanOrEqual(1)
    expect(rejects[0]).toMatch(/unavailable/)
    console.log(
      `[faults] lost outputs: victim killed ${killedAfter} ms after submit holding done chunks ${lost.join(',')}; ${rejects.length} rejects; collected ${Date.now() - t0} ms after submit; ${rejects[0].slice(0, 300)}`,
    )
  })
})
