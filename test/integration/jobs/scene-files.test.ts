/**
 * Issue 21 with the real Blender: a scene's files travel with the job, with no --pack.
 * One 3-daemon loopback mesh serves every case:
 *  a. a project (test/helpers/make-project.py) using a relative texture, an absolute one
 *     outside the scene's folder, a linked library that uses its own texture, an image
 *     sequence and a symlink climbing out of the root renders frames 1-3 on the mesh,
 *     each frame pixel-identical to a direct Blender render of the artist's own files
 *     (ffmpeg psnr inf); the dry run lists what travels, the symlink under _external/;
 *  b. the same project submitted again moves no file block (all held), only the job;
 *  c. a scene whose texture is missing is refused at submit (exit 2, the file named and
 *     where Blender looked); --allow-missing renders and is marked in status --json;
 *  d. a file named .blend that is not one is bad input (exit 2).
 * Skipped, with the reason printed, where Blender or ffmpeg is not installed.
 */
import { execFile } from 'node:child_process'
import { readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { JobDetail, SubmitPlan } from '../../../src/api/types.js'
import { frameSpec } from '../../../src/engines/blender-run.js'
import { frameFileName } from '../../../src/service/jobs.js'
import { json, rmeshIn } from '../../e2e/run-cli.js'
import { type DaemonProc, makeTempDir, REPO_ROOT } from '../../helpers/daemons.js'
import {
  blenderSkipReason,
  jobDetail,
  metric,
  startFaultMesh,
  stopAll,
  waitJobCollected,
} from '../../helpers/faults.js'

const execFileAsync = promisify(execFile)
const skipReason = await blenderSkipReason()
if (skipReason) console.log(`[scene-files] skipped: ${skipReason}`)

async function makeProject(base: string, missing = false): Promise<string> {
  const args = ['-b', '--factory-startup', '--python-exit-code', '3', '--python']
  args.push(join(REPO_ROOT, 'test/helpers/make-project.py'), '--', base)
  if (missing) args.push('--missing')
  await execFileAsync('blender', args, { timeout: 120_000 })
  return join(base, 'shot', 'scene.blend')
}

/** ffmpeg's PSNR of two images: 'inf' when every pixel is the same. */
async function psnr(a: string, b: string): Promise<string> {
  const { stderr } = await execFileAsync('ffmpeg', [
    '-v',
    'info',
    '-i',
    a,
    '-i',
    b,
    '-lavfi',
    'psnr',
    '-f',
    'null',
    '-',
  ])
  const m = /average:(\S+)/.exec(stderr)
  if (!m) throw new Error(`no PSNR in ffmpeg's output: ${stderr.slice(-500)}`)
  return m[1]
}

/**
 * Direct renders of `frames` by Blender from the artist's files (no rmesh in the way): one
 * Blender for all of them (`-f 1,2,3`, the frame list rmesh's own chunks use), so the
 * reference costs one start-up, not one per frame.
 */
async function directRenders(
  scene: string,
  dir: string,
  frames: number[],
): Promise<Map<number, string>> {
  await execFileAsync(
    'blender',
    [
      '-b',
      '--disable-autoexec',
      scene,
      '-o',
      join(dir, 'ref_#####'),
      '-F',
      'PNG',
      '-f',
      frameSpec(frames),
    ],
    { timeout: 120_000 },
  )
  return new Map(frames.map((f) => [f, join(dir, `ref_${String(f).padStart(5, '0')}.png`)]))
}

const bytesMoved = async (mesh: DaemonProc[]) => {
  let n = 0
  for (const d of mesh) n += await metric(d, 'rmesh_bytes_moved_total')
  return n
}

describe.skipIf(skipReason)('scene files travel with the job (real Blender, 3 daemons)', () => {
  let mesh: DaemonProc[] = []
  let base = ''
  let scene = ''
  const dirs: string[] = []

  beforeAll(async () => {
    base = await makeTempDir('rmesh-scene-files-')
    dirs.push(base)
    ;[mesh, scene] = await Promise.all([startFaultMesh(3), makeProject(base)])
  }, 180_000)
  afterAll(async () => {
    await stopAll(mesh, dirs)
  })

  it('a. renders on the mesh pixel-identical to a direct render; b. a resubmit moves no file block', {
    timeout: 240_000,
  }, async () => {
    const dry = await rmeshIn(mesh[0].dir, ['submit', scene, '--dry-run', '--json'], {
      timeoutMs: 120_000,
    })
    expect(dry.code, dry.stderr).toBe(0)
    const plan = json<SubmitPlan>(dry)
    const byTree = new Map(plan.files.map((f) => [f.treePath, f]))
    for (const p of ['scene.blend', 'tex/rel.png', 'lib/lib.blend', 'lib/libtex.png'])
      expect(byTree.get(p)?.external, p).toBe(false)
    for (const n of [1, 2, 3]) expect(byTree.has(`seq/seq_000${n}.png`)).toBe(true)
    expect(byTree.get(`_external${base}/outside/abs.png`)?.external).toBe(true)
    // The symlink climbs out of the root: it travels like an external file.
    expect(byTree.get(`_external${base}/elsewhere/linked.png`)?.path).toBe('//tex/link.png')
    expect(byTree.has('tex/link.png')).toBe(false)
    expect(plan.missing).toEqual([])
    expect(plan.remapped).toBe(2)

    const refs = await directRenders(scene, base, [1, 2, 3])
    const sceneBytes = await readFile(scene)

    const out = join(base, 'out-a')
    const sub = await rmeshIn(mesh[0].dir, ['submit', scene, '--detach', '--json', '--out', out], {
      timeoutMs: 120_000,
    })
    expect(sub.code, sub.stderr).toBe(0)
    const { jobId } = json<{ jobId: string }>(sub)
    // Every node runs on this machine: with the files outside the root moved away, a
    // renderer that read the artist's paths instead of its tree would not find them.
    for (const d of ['outside', 'elsewhere']) await rename(join(base, d), join(base, `${d}.away`))
    let detail: JobDetail
    try {
      detail = await waitJobCollected(mesh[0], jobId, 180_000)
    } finally {
      for (const d of ['outside', 'elsewhere']) await rename(join(base, `${d}.away`), join(base, d))
    }
    expect(detail.files).toMatchObject({ count: plan.files.length, missing: 0 })
    const nodes = new Set(detail.frames.map((f) => f.node))
    console.log(`[scene-files] a. frames rendered by ${nodes.size} node(s)`)
    expect([...nodes].some((n) => n !== mesh[0].peerId)).toBe(true)
    for (const frame of [1, 2, 3]) {
      const got = join(out, frameFileName(frame, '.png'))
      expect(await psnr(got, refs.get(frame)!), `frame ${frame}`).toBe('inf')
    }
    // The sequence really changes with the frame, and the artist's file was never written.
    expect(await psnr(refs.get(1)!, refs.get(2)!)).not.toBe('inf')
    expect(Buffer.compare(await readFile(scene), sceneBytes)).toBe(0)

    // b. Every file is held by now: a second submit sends the job, not its files again.
    const before = await bytesMoved(mesh)
    const again = await rmeshIn(
      mesh[0].dir,
      ['submit', scene, '--detach', '--json', '--out', join(base, 'out-b')],
      { timeoutMs: 120_000 },
    )
    expect(again.code, again.stderr).toBe(0)
    const job2 = json<{ jobId: string }>(again).jobId
    await waitJobCollected(mesh[0], job2, 180_000)
    const moved = (await bytesMoved(mesh)) - before
    // Only outputs (three 64×64 PNGs, a few KiB each) and the render logs cross the mesh.
    console.log(`[scene-files] b. resubmit moved ${moved} bytes of blocks`)
    expect(moved).toBeLessThan(200_000)
  })

  it('c. a missing texture is refused at submit with exit 2; --allow-missing renders and is marked', {
    timeout: 180_000,
  }, async () => {
    const mbase = await makeTempDir('rmesh-scene-missing-')
    dirs.push(mbase)
    const mscene = await makeProject(mbase, true)
    const r = await rmeshIn(mesh[0].dir, ['submit', mscene, '--detach'], { timeoutMs: 120_000 })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('//tex/gone.png')
    expect(r.stderr).toContain(join(mbase, 'shot/tex/gone.png'))

    const ok = await rmeshIn(
      mesh[0].dir,
      ['submit', mscene, '--detach', '--json', '--allow-missing', '--frames', '1'],
      { timeoutMs: 120_000 },
    )
    expect(ok.code, ok.stderr).toBe(0)
    const { jobId } = json<{ jobId: string }>(ok)
    await waitJobCollected(mesh[0], jobId, 120_000)
    const st = await rmeshIn(mesh[0].dir, ['status', jobId, '--json'])
    const d = json<JobDetail>(st)
    expect(d.allowMissing).toBe(true)
    expect(d.files?.missing).toBe(1)
    expect(d.files?.missingPaths).toEqual(['//tex/gone.png'])
    expect((await jobDetail(mesh[1], jobId))?.allowMissing).toBe(true)
  })

  it('d. a .blend that is not a Blender file is bad input: exit 2', async () => {
    const fake = join(base, 'not-a-scene.blend')
    await writeFile(fake, 'this is text, not a Blender file\n')
    const r = await rmeshIn(mesh[0].dir, ['submit', fake, '--detach'], { timeoutMs: 60_000 })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('not a Blender file')
    await rm(fake, { force: true })
    expect((await readFile(scene)).subarray(0, 7).toString()).toBe('BLENDER')
  })
})
