/**
 * Issue 20: the Blender add-on, installed from the zip `rmesh addon pack` writes, run by the
 * real Blender in background mode, submits the open file to a 2-daemon loopback mesh and
 * waits for it (its operator's `wait`), as an EXR job with a 10-bit HLG H.265 video at the
 * scene's NTSC rate; ffprobe checks the video. Without a daemon the operator fails with
 * ERR_NO_DAEMON. Skipped, with the reason printed, where Blender or ffmpeg is missing.
 */
import { execFile } from 'node:child_process'
import { cp } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { packAddon } from '../../../cli/commands/addon.js'
import { probeVideo } from '../../../src/engines/ffmpeg.js'
import { type DaemonProc, makeTempDir } from '../../helpers/daemons.js'
import { blenderSkipReason, jobDetail, startFaultMesh, stopAll } from '../../helpers/faults.js'
import { sceneCache } from '../engines/helpers.js'

const execFileAsync = promisify(execFile)
const skipReason = await blenderSkipReason()
if (skipReason) console.log(`[blender-addon] skipped: ${skipReason}`)

/** Runs Blender on `scene` with the add-on installed from `zip` into private user folders. */
function blenderWithAddon(
  base: string,
  scene: string,
  zip: string,
  rmeshDir: string,
  body: string,
) {
  const expr = [
    'import bpy',
    `bpy.ops.preferences.addon_install(filepath=${JSON.stringify(zip)})`,
    "bpy.ops.preferences.addon_enable(module='rmesh_submit')",
    body,
  ].join('\n')
  return execFileAsync('blender', ['-b', scene, '--python-exit-code', '3', '--python-expr', expr], {
    timeout: 150_000,
    env: {
      ...process.env,
      BLENDER_USER_SCRIPTS: join(base, 'scripts'),
      BLENDER_USER_CONFIG: join(base, 'config'),
      RMESH_DIR: rmeshDir,
    },
  })
}

describe.skipIf(skipReason)('the Blender add-on (real Blender, 2 daemons)', () => {
  let mesh: DaemonProc[] = []
  let base = ''
  let scene = ''
  let zip = ''

  beforeAll(async () => {
    base = await makeTempDir('rmesh-addon-')
    zip = join(base, 'rmesh_submit.zip')
    const [m, example] = await Promise.all([startFaultMesh(2), sceneCache(), packAddon(zip)])
    mesh = m
    // A copy of the example's folder (scene and texture): the add-on saves the file it submits.
    await cp(example.dir, join(base, 'shot'), { recursive: true })
    scene = join(base, 'shot', basename(example.scenePath))
  }, 120_000)
  afterAll(async () => {
    await stopAll(mesh, [base])
  })

  it('submits the open file with its options and waits for the job; HLG video', {
    timeout: 200_000,
  }, async () => {
    const settings = [
      's = bpy.context.scene',
      's.render.fps, s.render.fps_base = 24, 1.001',
      "s.rmesh.frames = '1-3'",
      "s.rmesh.format = 'exr'",
      "s.rmesh.video = 'h265'",
      's.rmesh.hdr = True',
      's.rmesh.crf = 24',
      's.rmesh.priority = 70',
      'r = bpy.ops.rmesh.submit(wait=True, timeout=150)',
      "assert r == {'FINISHED'}, r",
      "print('RMESH_JOB', s.rmesh.job_id)",
    ].join('\n')
    const run = await blenderWithAddon(base, scene, zip, mesh[0].dir, settings)
    const jobId = /RMESH_JOB (\S+)/.exec(run.stdout)?.[1]
    expect(jobId, run.stdout + run.stderr).toBeTruthy()
    expect(run.stdout).toMatch(/rmesh: \S+ done: 3\/3 frames, video done/)
    const detail = await jobDetail(mesh[0], jobId as string)
    expect(detail).toMatchObject({ state: 'done', framesTotal: 3, priority: 70, format: 'exr' })
    // The add-on pins the artist's own Blender (major.minor) unless told any version may do.
    expect(detail?.require).toEqual([expect.stringMatching(/^blender>=\d+\.\d+ <\d+\.\d+$/)])
    expect(detail?.video?.path).toMatch(/\.mp4$/)
    const info = await probeVideo(detail?.video?.path as string)
    expect(info).toMatchObject({
      codec: 'hevc',
      frames: 3,
      pixFmt: 'yuv420p10le',
      colorTransfer: 'arib-std-b67',
      colorPrimaries: 'bt2020',
    })
    // The scene was saved at 24 / 1.001: the video keeps the exact NTSC rate.
    expect(info.fps).toBeCloseTo(23.976, 2)
  })

  it('fails clearly when no daemon runs', { timeout: 60_000 }, async () => {
    const err = await blenderWithAddon(
      base,
      scene,
      zip,
      join(base, 'no-daemon'),
      'bpy.ops.rmesh.submit(wait=True)',
    ).catch((e: { code: number; stdout: string; stderr: string }) => e)
    expect((err as { code: number }).code).toBe(3)
    expect(`${(err as { stderr: string }).stderr}${(err as { stdout: string }).stdout}`).toMatch(
      /ERR_NO_DAEMON: no rmesh daemon is running .*start one with `rmesh daemon`/,
    )
  })
})
