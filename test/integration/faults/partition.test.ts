/**
 * Fault e: four daemons split 2 + 2 for ~10 s while a job renders, then healed. Each side
 * judges the other's leases dead and carries on (no server decides); once healed the logs
 * merge, every replica computes the same state, and the submitter holds every frame once.
 * The partition is the daemon's test-only gate (src/net/test-partition.ts): every daemon
 * reads the same file, one line per side.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DaemonProc } from '../../helpers/daemons.js'
import {
  createPartitionGate,
  PARTITION_MS as SPLIT_MS,
  type PartitionGate,
} from '../../helpers/fault-gates.js'
import {
  expectPromisesKept,
  jobDetail,
  startFaultMesh,
  stopAll,
  submitTestJob,
  waitFramesDone,
} from '../../helpers/faults.js'

describe('faults: a 2+2 partition, then healed (4 daemons)', { timeout: 180_000 }, () => {
  let procs: DaemonProc[] = []
  let gate: PartitionGate | undefined
  const jobDirs: string[] = []
  beforeAll(async () => {
    gate = await createPartitionGate()
    procs = await startFaultMesh(4, { env: gate.env })
  })
  afterAll(async () => {
    await stopAll(procs, jobDirs)
    await gate?.remove()
  })

  it(`e. split for ${SPLIT_MS / 1000} s mid-job, healed: the job completes and the replicas converge`, async () => {
    const [a, b, c, d] = procs
    await gate!.waitFullMesh(procs)
    const job = await submitTestJob(a, { frames: 100, frameMs: 200 })
    jobDirs.push(job.workDir)
    await waitFramesDone(a, job.jobId, 10)
    const doneAtSplit = (await jobDetail(a, job.jobId))!.framesDone
    const splitAt = Date.now()
    await gate!.split([a, b], [c, d])
    // Both sides keep working on their own (the fault lasts SPLIT_MS; nothing is asserted on time).
    await new Promise((r) => setTimeout(r, Math.max(0, SPLIT_MS - (Date.now() - splitAt))))
    const sideA = (await jobDetail(a, job.jobId))!.framesDone
    const sideC = (await jobDetail(c, job.jobId))!.framesDone
    const reconnectMs = await gate!.heal([a, b], [c, d])
    console.log(
      `[faults] e. frames done at split ${doneAtSplit}; during the split side A saw ${sideA}, side B ${sideC}; reconnected ${reconnectMs} ms after heal`,
    )
    const counts = await expectPromisesKept('e. partition 2+2', procs, a, job, 90_000)
    // Both halves may render what was open at the split; never more.
    expect(counts.duplicateCompletes).toBeLessThanOrEqual(100 - doneAtSplit)
  })
})
