/**
 * Issue 19 (devices, several Blenders) with a real daemon and the real Blender on loopback.
 * The node has two "Blenders": Debian's 3.4 on PATH and, in its releases folder
 * (`blenderReleasesDir`), a wrapper script named as such (blender-wrapper-4.2.0) that says
 * "Blender 4.2.0" and runs the real one, noting each render it runs in a marker file.
 *  a. the wrapper is unpacked after the daemon started: `rmesh node detect` finds it, and
 *     `rmesh status` lists both, with path, version and the devices detected by Blender's own
 *     Python (the real detection: CPU only on this machine);
 *  b. a job pinned to 'blender>=4.2 <4.3' renders with the wrapper; a job with the default
 *     requirement (the submitter's Blender's major.minor: the scene was read by 3.4) renders
 *     with the real 3.4, not the newest;
 *  c. a job needing `--device optix` waits, and says why: no node has an OptiX device.
 * Skipped, with the reason printed, where Blender or ffmpeg is not installed.
 */
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DetectResponse, NodeInfo } from '../../../src/api/types.js'
import { findOnPath } from '../../../src/engines/process.js'
import { frameFileName } from '../../../src/service/jobs.js'
import { json, rmeshIn } from '../../e2e/run-cli.js'
import { apiCall, type DaemonProc, makeTempDir, waitFor } from '../../helpers/daemons.js'
import {
  blenderSkipReason,
  jobDetail,
  startFaultMesh,
  stopAll,
  waitJobCollected,
} from '../../helpers/faults.js'
import { sceneCache, writeBlenderWrapper } from '../engines/helpers.js'

const skipReason = await blenderSkipReason()
if (skipReason) console.log(`[blender-versions] skipped: ${skipReason}`)

const marks = async (file: string) =>
  (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean)

describe.skipIf(!!skipReason)('several Blenders and devices on one node (real Blender)', () => {
  let node: DaemonProc
  let base: string
  let marker: string
  let wrapper: string
  let scene: string
  let real: string

  beforeAll(async () => {
    base = await makeTempDir('rmesh-blender-versions-')
    marker = join(base, 'wrapper-renders.txt')
    real = (await findOnPath('blender'))[0]
    await mkdir(join(base, 'releases'))
    scene = (await sceneCache()).scenePath
    ;[node] = await startFaultMesh(1, {
      // '' : the real detection, not the recorded report test daemons take by default.
      env: { RMESH_BLENDER_RELEASES_DIR: join(base, 'releases'), RMESH_TEST_BLENDER_DEVICES: '' },
    })
  }, 120_000)

  afterAll(async () => {
    await stopAll([node], base ? [base] : [])
  })

  it('a. node detect finds a new release; status lists both with path, version and devices', {
    timeout: 60_000,
  }, async () => {
    wrapper = await writeBlenderWrapper(join(base, 'releases'), '4.2.0', real, marker)
    const det = await rmeshIn(node.dir, ['node', 'detect', '--json'], { timeoutMs: 60_000 })
    expect(det.code, det.stderr).toBe(0)
    expect(json<DetectResponse>(det).blenders.map((b) => [b.version, b.devices?.kinds])).toEqual([
      ['4.2.0', ['cpu']],
      [expect.stringMatching(/^3\.4/), ['cpu']],
    ])
    const info = await waitFor(
      async () => {
        const n = json<NodeInfo>(await rmeshIn(node.dir, ['status', '--json']))
        return n.blenders?.length === 2 && n.blenders.every((b) => b.devices) ? n : undefined
      },
      30_000,
      'both Blenders detected with their devices',
    )
    expect(info.blenders?.[0]).toEqual({
      version: '4.2.0',
      path: wrapper,
      devices: { kinds: ['cpu'], names: [] },
    })
    expect(info.blenders?.[1]).toMatchObject({ version: expect.stringMatching(/^3\.4/) })
    const text = await rmeshIn(node.dir, ['status'])
    expect(text.stdout).toMatch(
      /blender\s+4\.2\.0 {2}\S*blender-wrapper-4\.2\.0\/blender {2}devices: cpu/,
    )
  })

  it('b. a pinned job renders with the matching Blender; the default with the submitter’s', {
    timeout: 120_000,
  }, async () => {
    const pinned = await rmeshIn(
      node.dir,
      ['submit', scene, '--frames', '1', '--require', 'blender>=4.2 <4.3', '--detach', '--json'],
      { timeoutMs: 60_000, env: {} },
    )
    expect(pinned.code, pinned.stderr).toBe(0)
    const a = json<{ jobId: string; outDir: string }>(pinned)
    await waitJobCollected(node, a.jobId, 90_000)
    await readFile(join(a.outDir, frameFileName(1, '.png')))
    expect((await marks(marker)).length).toBe(1)

    const dflt = await rmeshIn(node.dir, ['submit', scene, '--frames', '2', '--detach', '--json'], {
      timeoutMs: 60_000,
    })
    expect(dflt.code, dflt.stderr).toBe(0)
    const b = json<{ jobId: string; outDir: string }>(dflt)
    await waitJobCollected(node, b.jobId, 90_000)
    await readFile(join(b.outDir, frameFileName(2, '.png')))
    // The wrapper ran no render for it: the 3.4 that read the scene did.
    expect((await marks(marker)).length).toBe(1)
    expect((await jobDetail(node, a.jobId))?.require).toEqual(['blender>=4.2 <4.3'])
    expect((await jobDetail(node, b.jobId))?.require).toEqual(['blender>=3.4 <3.5'])
  })

  it('c. a job needing an OptiX device waits and says why', { timeout: 60_000 }, async () => {
    const r = await rmeshIn(
      node.dir,
      ['submit', scene, '--frames', '1', '--device', 'optix', '--detach', '--json'],
      { timeoutMs: 60_000 },
    )
    expect(r.code, r.stderr).toBe(0)
    const { jobId } = json<{ jobId: string }>(r)
    const d = await waitFor(
      async () => {
        const j = await jobDetail(node, jobId)
        return j?.reason?.startsWith('waiting:') ? j : undefined
      },
      15_000,
      'the waiting reason',
    )
    expect(d.state).toBe('queued')
    expect(d.reason).toMatch(/no node of the mesh has an OptiX device/)
    const st = await rmeshIn(node.dir, ['status', jobId])
    expect(st.stdout).toMatch(/renderer +blender>=3\.4 <3\.5 +device optix/)
    const bad = await rmeshIn(node.dir, ['submit', scene, '--device', 'tpu'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/--device must be one of/)
    // The API refuses nonsense with the field named, and the daemon stays up.
    const api = await apiCall<{ error: { code: string; details?: { field?: string } } }>(
      node.socket,
      'POST',
      '/v1/jobs',
      { scenePath: scene, device: 'tpu' },
    )
    expect(api.status).toBe(400)
    expect(api.body.error).toMatchObject({
      code: 'ERR_INVALID_INPUT',
      details: { field: 'device' },
    })
    const det = await apiCall(node.socket, 'POST', '/v1/node/detect', { paths: ['/bin/sh'] })
    expect(det.status).toBe(400)
    await rmeshIn(node.dir, ['cancel', jobId])
  })
})
