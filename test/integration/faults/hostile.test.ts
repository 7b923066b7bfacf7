/**
 * An admitted but hostile peer (test/helpers/hostile-peer.ts) against three real daemons:
 * it claims every open chunk without ever rendering while heartbeating those leases,
 * publishes forged entries, completes a chunk with outputs nobody can serve (or serves
 * wrong bytes for them), floods gossip, and sends malformed and oversized frames on every
 * protocol, and announces a job whose file tree names paths outside the renderers' work
 * folders. The mesh must finish every job with correct outputs (the submitter rejects
 * unusable outputs and they are re-rendered), every daemon must stay up, and the
 * rejections must be in the daemons' logs.
 * The garbage comes last: the daemons rightly cut the peer off after it.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cidToBytes } from '../../../src/blobs/manifest.js'
import { cidOf } from '../../../src/util/hash.js'
import { jobLogId } from '../../../src/log/types.js'
import { type DaemonProc, waitFor } from '../../helpers/daemons.js'
import { type HostilePeer, startHostilePeer } from '../../helpers/hostile-peer.js'
import {
  daemonLog,
  expectAlive,
  expectPromisesKept,
  jobDetail,
  metric,
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

  /** The hostile peer completes one chunk it holds with unusable outputs; the mesh must reject and re-render it. */
  const bogusRun = async (name: string, wrongBytes: boolean) => {
    const h = hostile!
    const rejectsBefore = await metric(procs[0], 'rmesh_outputs_rejected_total')
    const job = await submitAndStrike(12)
    const held = await h.claimAll(job.jobId)
    expect(held.length).toBeGreaterThan(0)
    // A claim of the hostile peer can lose to an honest node's concurrent claim; a bogus
    // complete of a chunk it does not hold is a mere duplicate and nothing to reject. So
    // complete one the submitter sees it holding.
    const { bogus } = await waitFor(
      async () => {
        const j = await jobDetail(procs[0], job.jobId)
        const c = j?.chunks.find(
          (c) =>
            c.node === h.peerId &&
            c.state !== 'done' &&
            held.some((x) => x.chunk === c.index && x.attempt === c.attempt),
        )
        return c && { bogus: c.index }
      },
      20_000,
      'a chunk the submitter sees the hostile peer holding',
    )
    const t0 = Date.now()
    await h.bogusComplete(job.jobId, bogus, { wrongBytes })
    await expectPromisesKept(name, procs, procs[0], job, 90_000)
    expect(await metric(procs[0], 'rmesh_outputs_rejected_total')).toBeGreaterThan(rejectsBefore)
    const rejects = (await daemonLog(procs[0]))
      .split('\n')
      .filter((l) => l.includes('rejected outputs') && l.includes(job.jobId))
    expect(rejects.length).toBeGreaterThan(0)
    console.log(
      `[faults] ${name}: frame ${bogus + 1} rejected and re-rendered; job collected ${Date.now() - t0} ms after the bogus complete; ${rejects[0].slice(0, 300)}`,
    )
    return rejects[0]
  }

  it('completes a chunk with outputs nobody can serve: the submitter rejects it after the grace, the mesh re-renders it', async () => {
    // The completer names a manifest nobody has: unavailable, so rejected once
    // outputGraceMs (2 × the 3 s lease timeout here) has passed.
    const line = await bogusRun('hostile bogus complete', false)
    expect(line).toMatch(/unavailable/)
    await expectAlive(procs)
  })

  it('serves wrong bytes for its outputs: the submitter rejects them at once, the mesh re-renders them', async () => {
    const line = await bogusRun('hostile wrong bytes', true)
    expect(line).toMatch(/hash check/)
    expect(hostile!.wrongBytesServed()).toBeGreaterThan(0)
    await expectAlive(procs)
  })

  it('a job whose file tree climbs out of the work folder: refused on every node, nothing written', async () => {
    const h = hostile!
    const marker = `rmesh-escaped-${Date.now()}`
    const block = cidToBytes(cidOf(new TextEncoder().encode('payload')))
    const escapes = [`../../../../${marker}`, `/tmp/${marker}`, `a/../../../../../${marker}`]
    const jobs: string[] = []
    for (const path of escapes)
      jobs.push(
        await h.hostileTree({
          v: 1,
          scene: 'scene.blend',
          files: [
            ['scene.blend', block, 7],
            [path, block, 7],
          ],
          remap: [],
          missing: [],
        }),
      )
    for (const jobId of jobs) {
      const j = await waitFor(
        async () => {
          const d = await jobDetail(procs[0], jobId)
          return d?.state === 'failed' ? d : undefined
        },
        60_000,
        `hostile tree job ${jobId} to fail`,
        200,
      )
      expect(j.reason).toMatch(/file tree/)
    }
    for (const p of procs) {
      // Every place those paths could have landed from a tree folder <dir>/work/<job>/tree.
      for (let up = 0; up <= 6; up++) {
        const at = join(p.dir, 'work', 'x', 'tree', ...Array(up).fill('..'), marker)
        expect(existsSync(at), at).toBe(false)
      }
    }
    expect(existsSync(`/tmp/${marker}`)).toBe(false)
    await expectAlive(procs)
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
