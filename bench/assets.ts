/**
 * Scene files sent once (issue 21), measured side by side in one run on real daemons and
 * the real Blender: a project of a tiny scene and `textureMiB` of textures (random-noise
 * PNGs, in the scene as image data-blocks) is submitted twice, unchanged, then once more
 * with one texture replaced. A submitter with
 * no render slot and one renderer: every byte the renderer fetches is what the job moved.
 *
 * Figures: the renderer's fetched block bytes for the first submit and for the second
 * (`assets.resubmit.bytes`, aim < 1 MiB), and for a third after one texture is replaced
 * (only that texture moves), the block store's growth on the submitter for
 * each (the second stores nothing new), and both submit times (the second reads no
 * unchanged file again: the import cache).
 *
 * Run: `npm run build && node dist/bench/assets.js [textureMiB]`.
 */
import { execFile } from 'node:child_process'
import { mkdir, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { admitDirs } from '../cli/local-mesh.js'
import type { SubmitResponse } from '../src/api/types.js'
import {
  apiCall,
  type DaemonProc,
  makeTempDir,
  startDaemonProc,
  stopDaemonProc,
} from '../test/helpers/daemons.js'
import {
  type BenchResult,
  isMain,
  round,
  runStandalone,
  waitJobDone,
  waitMeshReady,
} from './common.js'

const execFileAsync = promisify(execFile)
const MiB = 1 << 20

export interface AssetsBenchOptions {
  /** Total size of the textures (default 200 MiB). */
  textureMiB?: number
  log?: (line: string) => void
}

const COUNT = 4
/** A noise PNG barely compresses: side × side × 3 bytes is about its size. */
const side = (textureMiB: number) => Math.ceil(Math.sqrt((textureMiB * MiB) / COUNT / 3))

/** A PNG of random pixels (from /dev/urandom: every call makes other bytes). */
async function noisePng(path: string, px: number): Promise<void> {
  await execFileAsync(
    'ffmpeg',
    ['-v', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${px}x${px}`].concat([
      '-i',
      '/dev/urandom',
      '-frames:v',
      '1',
      path,
    ]),
    { timeout: 300_000 },
  )
}

/** The project: `scene.blend` using COUNT textures under tex/, each a noise PNG. */
async function makeProject(dir: string, textureMiB: number): Promise<string> {
  await mkdir(join(dir, 'tex'), { recursive: true })
  for (let i = 0; i < COUNT; i++) await noisePng(join(dir, 'tex', `big_${i}.png`), side(textureMiB))
  const script = join(dir, 'make.py')
  await writeFile(
    script,
    `import bpy, os
bpy.context.preferences.filepaths.save_version = 0
bpy.ops.wm.read_homefile(use_empty=True)
out = ${JSON.stringify(join(dir, 'scene.blend'))}
bpy.ops.wm.save_as_mainfile(filepath=out)
s = bpy.context.scene
s.render.engine = 'CYCLES'
s.cycles.samples = 1
s.cycles.use_denoising = False
s.render.resolution_x = s.render.resolution_y = 32
s.frame_start = s.frame_end = 1
for vl in s.view_layers:
    vl.cycles.use_denoising = False
for i in range(${COUNT}):
    im = bpy.data.images.load('//tex/big_%d.png' % i)
    im.use_fake_user = True
bpy.ops.object.camera_add(location=(0, 0, 5))
s.camera = bpy.context.active_object
bpy.ops.wm.save_as_mainfile(filepath=out)
`,
  )
  await execFileAsync(
    'blender',
    ['-b', '--factory-startup', '--python-exit-code', '3', '--python', script],
    {
      timeout: 120_000,
    },
  )
  return join(dir, 'scene.blend')
}

async function gauge(d: DaemonProc, name: string): Promise<number> {
  const r = await apiCall<string>(d.socket, 'GET', '/metrics', undefined, 30_000)
  const m = new RegExp(`^${name.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(
    String(r.body),
  )
  return m ? Number(m[1]) : Number.NaN
}

export async function benchAssets(o: AssetsBenchOptions = {}): Promise<BenchResult[]> {
  const textureMiB = o.textureMiB ?? 200
  const log = o.log ?? (() => {})
  const base = await makeTempDir('rmesh-bench-assets-')
  const procs: DaemonProc[] = []
  try {
    log(`making a project with ${textureMiB} MiB of textures`)
    const scene = await makeProject(join(base, 'project'), textureMiB)
    const dirs = [join(base, 'submitter'), join(base, 'renderer')]
    for (const d of dirs) await mkdir(d)
    await admitDirs(dirs)
    const submitter = await startDaemonProc({
      dir: dirs[0],
      name: 'submitter',
      testEngine: false,
      env: { RMESH_SLOTS: '0' },
    })
    procs.push(submitter)
    const boot = submitter.addresses.filter((a) => a.includes('/ip4/127.0.0.1/'))
    const renderer = await startDaemonProc({
      dir: dirs[1],
      name: 'renderer',
      testEngine: false,
      bootstrap: boot,
    })
    procs.push(renderer)
    await waitMeshReady(procs)

    const fetched = () => gauge(renderer, 'rmesh_bytes_moved_total{direction="in"}')
    const collected = () => gauge(submitter, 'rmesh_bytes_moved_total{direction="in"}')
    const stored = () => gauge(submitter, 'rmesh_blocks_bytes')
    const run = async (label: string) => {
      const in0 = await fetched()
      const out0 = await collected()
      const st0 = await stored()
      const t0 = performance.now()
      const r = await apiCall<SubmitResponse>(
        submitter.socket,
        'POST',
        '/v1/jobs',
        { scenePath: scene, outDir: join(base, `out-${label}`) },
        600_000,
      )
      if (r.status >= 300) throw new Error(`submit: ${r.status} ${JSON.stringify(r.body)}`)
      const submitMs = performance.now() - t0
      await waitJobDone(submitter, r.body.jobId, 300_000, true)
      const bytes = (await fetched()) - in0
      const outputs = (await collected()) - out0
      const storedBytes = (await stored()) - st0
      log(`${label}: renderer fetched ${bytes} bytes, submitter stored ${storedBytes} more`)
      return { bytes, outputs, storedBytes, submitMs }
    }
    const first = await run('first')
    const second = await run('resubmit')
    // A new version of one texture (the next shot of a sequence): only it travels.
    const one = join(base, 'project', 'tex', 'big_0.png')
    const oneBytes = (await stat(one)).size
    await noisePng(one, side(textureMiB))
    const changed = await run('one-changed')
    const note = `${textureMiB} MiB of textures + scene, 1 submitter (no slot) → 1 renderer`
    return [
      {
        name: 'assets.first.bytes',
        value: first.bytes,
        unit: 'bytes',
        note: `first submit; ${note}`,
      },
      {
        name: 'assets.resubmit.bytes',
        value: second.bytes,
        unit: 'bytes',
        note: 'second submit of the unchanged project (aim < 1 MiB)',
      },
      {
        name: 'assets.resubmit.outputs',
        value: second.outputs,
        unit: 'bytes',
        note: 'the other way meanwhile: the frame and its render log, pulled by the submitter',
      },
      {
        name: 'assets.resubmit.ratio',
        value: round(second.bytes / Math.max(1, first.bytes), 6),
        unit: 'ratio',
        note: 'resubmit bytes / first bytes',
      },
      {
        name: 'assets.changed.bytes',
        value: changed.bytes,
        unit: 'bytes',
        note: `third submit, one texture replaced (${oneBytes} bytes): only it moves`,
      },
      {
        name: 'assets.first.stored',
        value: first.storedBytes,
        unit: 'bytes',
        note: "the submitter's block store growth",
      },
      {
        name: 'assets.resubmit.stored',
        value: second.storedBytes,
        unit: 'bytes',
        note: 'nothing stored again',
      },
      {
        name: 'assets.first.submit',
        value: Math.round(first.submitMs),
        unit: 'ms',
        note: 'trace + import + announce',
      },
      {
        name: 'assets.resubmit.submit',
        value: Math.round(second.submitMs),
        unit: 'ms',
        note: 'unchanged files are not read again (import cache); one Blender run (trace + metadata) remains',
      },
    ]
  } finally {
    await Promise.all(procs.map((p) => stopDaemonProc(p).catch(() => {})))
    await rm(base, { recursive: true, force: true })
  }
}

if (isMain(import.meta.url)) {
  const mib = Number(process.argv[2]) || undefined
  runStandalone(() => benchAssets({ textureMiB: mib, log: (l) => console.error(l) }))
}
