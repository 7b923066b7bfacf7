/**
 * Issue 10's full disk with the real Blender: three daemons render the example scene in
 * chunks of one frame; the third keeps its data directory on a 16 MiB tmpfs, filled to
 * the last byte while its Blender renders. Then:
 *  - it stays up (no unhandled ENOSPC from its render log, daemon log, LevelDB or block
 *    store), and every failure it reports names the cause (ERR_DISK_FULL);
 *  - within a disk check (5 s) it pauses: GET /v1/node says why, it takes no new chunk,
 *    and its presence tells the others (they list it as `paused`, with the reason);
 *  - the other two finish the job;
 *  - once space is freed (the filler removed, no restart), it resumes and catches up:
 *    every replica computes the same state, the submitter holds every frame once with
 *    valid pixels, and it renders part of a fresh job.
 * The pause threshold (--min-free-disk) is 1 MiB here, so the 16 MiB disk runs first.
 * Needs root for mount and Blender + ffmpeg: skipped with the reason printed otherwise.
 */
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ensureExampleScene } from '../../../src/engines/example-scene.js'
import type { NodeInfo, PeerInfo } from '../../../src/api/types.js'
import {
  apiCall,
  type DaemonProc,
  makeTempDir,
  stopDaemonProc,
  waitFor,
} from '../../helpers/daemons.js'
import { mountSmallDisk, type SmallDisk } from '../../helpers/fault-gates.js'
import {
  blenderSkipReason,
  childProcesses,
  expectAlive,
  expectPromisesKept,
  jobDetail,
  LEASES_ONE_NODE_HOLDS,
  startFaultMesh,
  stopAll,
  submitBlenderJob,
  waitFramesDone,
  waitRendering,
} from '../../helpers/faults.js'

const FRAMES = 24

async function renderPaused(d: DaemonProc): Promise<string | undefined> {
  return (await apiCall<NodeInfo>(d.socket, 'GET', '/v1/node')).body.renderPaused
}
const skipReason = await blenderSkipReason()
if (skipReason) console.log(`[faults] blender-disk scenario skipped: ${skipReason}`)

describe.skipIf(skipReason)(
  'a full disk with the real Blender (3 daemons, example scene)',
  { timeout: 240_000 },
  () => {
    let procs: DaemonProc[] = []
    let small: SmallDisk | undefined
    const jobDirs: string[] = []
    afterAll(async () => {
      // Stop the daemons before unmounting the small disk, and remove directories after.
      await Promise.all(procs.map((p) => stopDaemonProc(p, 'SIGKILL').catch(() => {})))
      small?.unmount()
      await stopAll(procs, jobDirs)
    })

    it('a renderer whose disk fills while Blender renders: it stays up, says why, catches up once freed', async (ctx) => {
      const disk = await mountSmallDisk(16)
      if (typeof disk === 'string') {
        console.log(`[faults] blender-disk skipped: ${disk}`)
        ctx.skip()
        return
      }
      small = disk
      const [mesh] = await Promise.all([
        startFaultMesh(3, {
          dirs: [await makeTempDir(), await makeTempDir(), disk.dir],
          env: { RMESH_MIN_FREE_DISK_MIB: '1' },
        }),
        ensureExampleScene(),
      ])
      procs = mesh
      const [submitter, , full] = procs
      const job = await submitBlenderJob(submitter, { frames: FRAMES })
      jobDirs.push(job.workDir)
      // It has the scene and its Blender runs: now its disk fills to the last byte.
      await waitRendering(submitter, full, job.jobId, 60_000)
      await waitFor(
        async () => (await childProcesses(full.proc.pid!, 'blender')).length > 0,
        60_000,
        'the full node’s Blender to run',
        25,
      )
      await disk.fill(0)
      const filledAt = Date.now()
      const why = await waitFor(() => renderPaused(full), 15_000, 'the full node to pause')
      const pausedMs = Date.now() - filledAt
      expect(why).toMatch(/free on the data disk/)
      // Its presence says so: the others show it paused, with the reason.
      const seen = await waitFor(
        async () =>
          (await apiCall<PeerInfo[]>(submitter.socket, 'GET', '/v1/peers')).body.find(
            (p) => p.peerId === full.peerId && p.state === 'paused',
          ),
        15_000,
        'the submitter to see the full node paused',
      )
      expect(seen.paused).toMatch(/free on the data disk/)
      await waitFramesDone(submitter, job.jobId, FRAMES, 120_000)
      const doneMs = Date.now() - filledAt
      await expectAlive([full])
      const j = (await jobDetail(submitter, job.jobId))!
      const errors = j.frames.map((f) => f.error).filter((e): e is string => !!e)
      const byFull = j.frames.filter((f) => f.node === full.peerId).length
      console.log(
        `[faults] blender-disk: paused ${pausedMs} ms after the fill (${why}); job done ${doneMs} ms after the fill; ${byFull} frames by the full node; ${errors.length} failures, first: ${errors[0]}`,
      )
      expect(errors.every((e) => /ERR_DISK_FULL/.test(e))).toBe(true)

      // Space is freed, no restart: it catches up with the log it could not store.
      await rm(join(disk.dir, 'filler'), { recursive: true, force: true })
      await waitFor(
        async () => (await renderPaused(full)) === undefined,
        15_000,
        'the node to resume once space is freed',
      )
      const counts = await expectPromisesKept(
        'blender-disk: full disk, then freed',
        procs,
        submitter,
        job,
        120_000,
      )
      expect(counts.duplicateCompletes).toBeLessThanOrEqual(LEASES_ONE_NODE_HOLDS)
      // Resumed without a restart: it renders part of a fresh job.
      const again = await submitBlenderJob(submitter, { frames: 12 })
      jobDirs.push(again.workDir)
      await expectPromisesKept('blender-disk: fresh job after freeing', procs, submitter, again)
      const j2 = (await jobDetail(submitter, again.jobId))!
      expect(j2.frames.some((f) => f.node === full.peerId)).toBe(true)
    })
  },
)
