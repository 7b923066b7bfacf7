/**
 * An admitted but hostile peer (test/helpers/hostile-peer.ts) against three real daemons:
 * it claims every open chunk without ever rendering while heartbeating those leases,
 * publishes forged entries, completes a chunk with outputs nobody can serve, floods
 * gossip, and sends malformed and oversized frames on every protocol. The mesh must
 * finish with correct outputs (or, for the bogus complete, write nothing wrong), every
 * daemon must stay up, and the rejections must be in the daemons' logs.
 * The garbage comes last: the daemons rightly cut the peer off after it.
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { testFramePng } from '../../../src/engines/test-engine.js'
import { jobLogId } from '../../../src/log/types.js'
import { frameFileName } from '../../../src/service/jobs.js'
import { type DaemonProc, waitFor } from '../../helpers/daemons.js'
import { type HostilePeer, startHostilePeer } from '../../helpers/hostile-peer.js'
import {
  daemonLog,
  expectAlive,
  expectPromisesKept,
  jobDetail,
  startFaultMesh,
  stopAll,
  type SubmittedJob,
  submitTestJob,
  waitFramesDone,
} from '../../helpers/faults.js'

describe('faults: a hostile admitted peer (3 daemons)', { timeout: 180_000 }, () => {
  let procs: DaemonProc[] = []
  let hostile: HostilePeer | undefined
  const jobDirs: string[] = []
  beforeAll(async () => {
    procs = await startFaultMesh(3)
    hostile = await startHostilePeer({ ownerDir: procs[0].dir, bootstrap: procs[0].addresses })
    await hostile.waitConnected(
      procs.map((p) => p.peerId),
      30_000,
    )
  })
  afterAll(async () => {
    await hostile?.stop().catch(() => {})
    await stopAll(procs, [...jobDirs, ...(hostile ? [hostile.dir] : [])])
  })

  /** Submit, and let the hostile peer strike once the job runs and it holds the log. */
  const submitAndStrike = async (frames: number): Promise<SubmittedJob> => {
    const h = hostile!
    const job = await submitTestJob(procs[0], { frames, frameMs: 200 })
    jobDirs.push(job.workDir)
    // The straggler bound needs one finished chunk to measure; a peer that grabs every
    // chunk before any finishes is the residual case (an admin revokes it).
    await waitFramesDone(procs[0], job.jobId, 1)
    await waitFor(
      async () => (await h.log.entries(jobLogId(job.jobId))).length > 1,
      10_000,
      'the hostile peer to see the job',
      5,
    )
    return job
  }

  it('claims every open chunk and never renders: the mesh still finishes with correct outputs', async () => {
    const h = hostile!
    const job = await submitAndStrike(30)
    const held = await h.claimAll(job.jobId)
    const forged = await h.forged(job.jobId, procs[1].peerId)
    console.log(
      `[faults] hostile: holds ${held.length} of 30 chunks, published ${forged} forged entries`,
    )
    const counts = await expectPromisesKept('hostile claim-all', procs, procs[0], job, 60_000)
    expect(counts.duplicateCompletes).toBeLessThanOrEqual(3)
    await expectAlive(procs)
  })

  it('completes a chunk with outputs nobody can serve: nothing wrong is written, the gap is reported', async () => {
    // The hash check covers the bytes, not the renderer's honesty: an admitted peer can
    // name outputs that do not exist (or valid outputs of the wrong picture). Safety holds
    // (no unverified byte reaches the output folder); this frame stays missing until an
    // operator revokes the peer and re-renders it.
    const h = hostile!
    const job = await submitAndStrike(12)
    const held = await h.claimAll(job.jobId)
    expect(held.length).toBeGreaterThan(0)
    const bogus = held[0].chunk
    await h.bogusComplete(job.jobId, bogus)
    const detail = await waitFor(
      async () => {
        const j = await jobDetail(procs[0], job.jobId)
        return j?.state === 'done' && j.framesLocal === 11 ? j : undefined
      },
      60_000,
      'every honest frame collected',
      200,
    )
    expect(detail.localComplete).toBe(false)
    expect(await readdir(job.outDir)).not.toContain(frameFileName(bogus + 1, '.png'))
    for (const f of job.frames.filter((x) => x !== bogus + 1)) {
      const bytes = await readFile(join(job.outDir, frameFileName(f, '.png')))
      expect(Buffer.compare(bytes, testFramePng(job.jobId, f))).toBe(0)
    }
    await expectAlive(procs)
    console.log(
      `[faults] hostile: a bogus complete of frame ${bogus + 1} leaves it uncollectable (done in the log, missing locally); the daemons stay up`,
    )
  })

  it('floods, garbage frames and forged entries cost it its messages, not the daemons their lives', async () => {
    const h = hostile!
    const t0 = Date.now()
    const sent = await h.flood(2_000)
    const garbage = (await Promise.all(procs.map((p) => h.garbage(p.peerId)))).flat()
    const refused = [...new Set(garbage.map((g) => g.error).filter(Boolean))]
    const perProtocol = Object.fromEntries(
      [...new Set(garbage.map((g) => g.protocol))].map((p) => [
        p,
        garbage.filter((g) => g.protocol === p && g.sent).length,
      ]),
    )
    console.log(
      `[faults] hostile: garbage streams written per protocol: ${JSON.stringify(perProtocol)}`,
    )
    console.log(
      `[faults] hostile: ${sent} gossip messages, ${garbage.filter((g) => g.sent).length}/${garbage.length} garbage streams in ${Date.now() - t0} ms; refused: ${refused.join(' | ').slice(0, 400)}`,
    )
    await expectAlive(procs)
    const logs = (await Promise.all(procs.map((p) => daemonLog(p)))).join('\n')
    const rejections = logs
      .split('\n')
      .filter((l) => /reject|refus|invalid|malformed|signature|too large|ERR_/i.test(l))
    console.log(
      `[faults] hostile: ${rejections.length} rejection lines in the daemons' logs; e.g. ${rejections.slice(0, 3).join(' | ').slice(0, 600)}`,
    )
    expect(rejections.length).toBeGreaterThan(0)
  })
})
