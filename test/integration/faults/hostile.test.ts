/**
 * An admitted but hostile peer (test/helpers/hostile-peer.ts) against three real daemons:
 * it floods gossip, sends malformed and oversized frames on every protocol, publishes
 * forged entries, and claims every chunk it can without ever rendering while heartbeating
 * those leases. The mesh must finish the job with correct outputs, every daemon must stay
 * up, and the rejections must be in the daemons' logs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProc, waitFor } from '../../helpers/daemons.js'
import { type HostilePeer, startHostilePeer } from '../../helpers/hostile-peer.js'
import { jobLogId } from '../../../src/log/types.js'
import { daemonLog, expectAlive, expectPromisesKept, startFaultMesh, stopAll, submitTestJob } from './helpers.js'

describe('faults: a hostile admitted peer (3 daemons)', () => {
  let procs: DaemonProc[] = []
  let hostile: HostilePeer | undefined
  const jobDirs: string[] = []
  beforeAll(async () => {
    procs = await startFaultMesh(3)
    hostile = await startHostilePeer({ ownerDir: procs[0].dir, bootstrap: procs[0].addresses })
    await hostile.waitConnected(procs.map((p) => p.peerId), 30_000)
  })
  afterAll(async () => {
    await hostile?.stop().catch(() => {})
    await stopAll(procs, [...jobDirs, ...(hostile ? [hostile.dir] : [])])
  })

  it('floods, garbage frames and forged entries cost it its messages, not the daemons their lives', async () => {
    const h = hostile!
    const t0 = Date.now()
    const sent = await h.flood(2_000)
    const garbage = (await Promise.all(procs.map((p) => h.garbage(p.peerId)))).flat()
    console.log(`[faults] hostile: ${sent} gossip messages, ${garbage.filter((g) => g.sent).length}/${garbage.length} garbage streams in ${Date.now() - t0} ms`)
    await expectAlive(procs)
  })

  it('claims every chunk and never renders: the mesh still finishes with correct outputs', async () => {
    const h = hostile!
    const job = await submitTestJob(procs[0], { frames: 30, frameMs: 200 })
    jobDirs.push(job.workDir)
    await waitFor(async () => (await h.log.entries(jobLogId(job.jobId))).length > 0, 10_000, 'the hostile peer to see the job', 5)
    const held = await h.claimAll(job.jobId)
    const forged = await h.forged(job.jobId, procs[1].peerId)
    console.log(`[faults] hostile: holds ${held.length} of 30 chunks, published ${forged} forged entries`)
    const counts = await expectPromisesKept('hostile claim-all', procs, procs[0], job, 60_000)
    expect(counts.duplicateCompletes).toBe(0)
    await expectAlive(procs)
    const logs = (await Promise.all(procs.map((p) => daemonLog(p)))).join('\n')
    const rejections = logs.split('\n').filter((l) => /reject|refus|invalid|malformed|signature|too large|ERR_/i.test(l))
    console.log(`[faults] hostile: ${rejections.length} rejection lines in the daemons' logs; e.g. ${rejections.slice(0, 3).join(' | ').slice(0, 600)}`)
    expect(rejections.length).toBeGreaterThan(0)
  })
})
