/**
 * Storage faults with real daemons:
 *  f. a renderer SIGKILLed again and again right as it renders and stores outputs: each
 *     restart must open its LevelDB and block store cleanly, the job must complete, and
 *     the restarted node must render again;
 *  g. a renderer whose data directory is a 3 MiB tmpfs, filled up: its renders fail with
 *     ERR_DISK_FULL, the others finish the job, and it stays up. Needs root for mount;
 *     skipped with the reason printed when mount is refused.
 */
import { afterAll, describe, expect, it } from 'vitest'
import {
  type DaemonProc,
  makeTempDir,
  restartDaemonProc,
  stopDaemonProc,
  waitFor,
} from '../../helpers/daemons.js'
import { mountSmallDisk, type SmallDisk } from '../../helpers/fault-gates.js'
import {
  expectAlive,
  expectPromisesKept,
  jobDetail,
  LEASES_ONE_NODE_HOLDS,
  startFaultMesh,
  stopAll,
  submitTestJob,
} from '../../helpers/faults.js'

const KILLS = 3

describe('faults: storage (3 daemons)', { timeout: 180_000 }, () => {
  let procs: DaemonProc[] = []
  const jobDirs: string[] = []
  let small: SmallDisk | undefined
  afterAll(async () => {
    // Stop the daemons before unmounting the small disk, and remove directories after.
    await Promise.all(procs.map((p) => stopDaemonProc(p, 'SIGKILL').catch(() => {})))
    small?.unmount()
    await stopAll(procs, jobDirs)
  })

  it(`f. SIGKILL while storing outputs, ${KILLS} times: stores reopen cleanly and the job completes`, async () => {
    procs = await startFaultMesh(3)
    const [submitter, , victim] = procs
    const job = await submitTestJob(submitter, { frames: 120, frameMs: 50 })
    jobDirs.push(job.workDir)
    let kills = 0
    for (let i = 0; i < KILLS; i++) {
      const v = procs[2]
      const next = await waitFor(
        async () => {
          const j = await jobDetail(submitter, job.jobId)
          if (j?.state === 'done') return 'done'
          const holds = j?.chunks.some(
            (c) => c.node === v.peerId && (c.state === 'rendering' || c.state === 'claimed'),
          )
          return holds ? 'holds' : undefined
        },
        30_000,
        'the victim to hold a chunk (or the job to end)',
        10,
      )
      if (next === 'done') break
      // A 50 ms frame: within a few ms of starting, the render is writing or importing.
      await new Promise((r) => setTimeout(r, 10 + i * 20))
      await stopDaemonProc(v, 'SIGKILL')
      kills++
      // The restart opens LevelDB (locked and possibly mid-write) and the block store.
      procs[2] = await restartDaemonProc(v)
    }
    console.log(
      `[faults] f. ${kills} SIGKILLs while the victim held a chunk, each followed by a clean restart`,
    )
    expect(kills).toBeGreaterThan(0)
    const counts = await expectPromisesKept('f. SIGKILL during writes', procs, submitter, job)
    // Each kill wastes at most the leases the victim held (its slot, one claimed ahead and
    // the chunks still storing): those whose completes it wrote but never sent are
    // rendered again by others, and both completes reach the log.
    expect(counts.duplicateCompletes).toBeLessThanOrEqual(kills * LEASES_ONE_NODE_HOLDS)
    // The restarted node works: it renders its share of a fresh job.
    const again = await submitTestJob(submitter, { frames: 30, frameMs: 100 })
    jobDirs.push(again.workDir)
    await expectPromisesKept('f. fresh job after the kills', procs, submitter, again)
    const j = (await jobDetail(submitter, again.jobId))!
    expect(j.frames.filter((f) => f.node === victim.peerId).length).toBeGreaterThan(0)
  })

  it('g. a renderer whose disk is full: clear ERR_DISK_FULL failures, the others finish, it stays up', async (ctx) => {
    const disk = await mountSmallDisk(3)
    if (typeof disk === 'string') {
      console.log(`[faults] g. skipped: ${disk}`)
      ctx.skip()
      return
    }
    small = disk
    await stopAll(procs)
    // The low-disk pause off (0): this is the path where the disk fills between two checks.
    procs = await startFaultMesh(3, {
      dirs: [await makeTempDir(), await makeTempDir(), disk.dir],
      env: { RMESH_MIN_FREE_DISK_MIB: '0' },
    })
    const [submitter, , full] = procs
    // Fill the small disk, leaving a little room for LevelDB's own appends.
    await disk.fill(256 * 1024)
    // The scene is larger than what is left: fetching it must fail with a clear error.
    const job = await submitTestJob(submitter, {
      frames: 20,
      frameMs: 100,
      sceneBytes: 1024 * 1024,
    })
    jobDirs.push(job.workDir)
    const counts = await expectPromisesKept('g. disk full', procs, submitter, job)
    await expectAlive([full])
    const j = (await jobDetail(submitter, job.jobId))!
    const errors = j.frames.map((f) => f.error).filter(Boolean)
    console.log(
      `[faults] g. failures on the full node: ${errors.length}; first: ${errors[0]}; blocklist: ${j.blocklist.length}`,
    )
    expect(j.frames.every((f) => f.node !== full.peerId)).toBe(true)
    expect(errors.length).toBeGreaterThan(0)
    expect(errors.every((e) => /ERR_DISK_FULL/.test(e!))).toBe(true)
    expect(counts.duplicateCompletes).toBe(0)
  })
})
