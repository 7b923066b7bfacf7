/**
 * Preview videos with the real ffmpeg on real daemons (test engine): while a job renders,
 * its submitter makes a small H.264 of the frames it has so far and serves it; the last one
 * holds every frame; the output folder is unchanged (no preview in it); a delete removes it;
 * garbage ids get clear errors. Previews every 2 frames or 1 s to keep the test short.
 */
import { execFileSync } from 'node:child_process'
import { readdir, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { JobDetail, SubmitResponse } from '../../../src/api/types.js'
import {
  apiCall,
  type DaemonProc,
  makeTempDir,
  removeDir,
  startMesh,
  stopDaemonProc,
  waitFor,
} from '../../helpers/daemons.js'

let mesh: DaemonProc[] = []
let work = ''

function getBytes(
  socket: string,
  path: string,
): Promise<{ status: number; type: string; body: Buffer }> {
  return new Promise((resolve, reject) => {
    request({ socketPath: socket, path, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          type: String(res.headers['content-type']),
          body: Buffer.concat(chunks),
        }),
      )
    })
      .on('error', reject)
      .end()
  })
}

function probe(file: string): { codec_name: string; height: number; nb_read_frames: string } {
  const out = execFileSync('ffprobe', [
    '-v',
    'error',
    '-count_frames',
    '-select_streams',
    'v:0',
    '-show_entries',
    'stream=codec_name,height,nb_read_frames',
    '-of',
    'json',
    file,
  ])
  return JSON.parse(String(out)).streams[0]
}

beforeAll(async () => {
  mesh = await startMesh(2, {
    env: { RMESH_PREVIEW_EVERY_MS: '1000', RMESH_PREVIEW_EVERY_FRAMES: '2' },
  })
  work = await makeTempDir('rmesh-preview-')
  await writeFile(join(work, 'shot.blend'), 'BLENDER-v300 (the test engine renders any .blend)')
}, 60_000)

afterAll(async () => {
  await Promise.all(mesh.map((d) => stopDaemonProc(d)))
  await Promise.all([...mesh.map((d) => d.dir), work].map(removeDir))
}, 30_000)

describe('preview video', () => {
  it('is made while frames come in, holds every frame at the end, and goes with a delete', async () => {
    const [a] = mesh
    const sub = await apiCall<SubmitResponse>(a.socket, 'POST', '/v1/jobs', {
      scenePath: join(work, 'shot.blend'),
      frames: '1-8',
      engine: 'test',
      params: { frameMs: 400 },
    })
    expect(sub.status).toBe(200)
    const id = sub.body.jobId
    const detail = async () => (await apiCall<JobDetail>(a.socket, 'GET', `/v1/jobs/${id}`)).body
    let early: JobDetail | undefined
    await waitFor(
      async () => {
        const d = await detail()
        if (d.preview && !early) early = d
        return d.state === 'done' && d.localComplete === true && d.preview?.frames === 8
      },
      30_000,
      'a preview of all 8 frames',
    )
    // One was made before the last frame was in (the job took ≥ 1.6 s on 2 nodes).
    expect(early?.preview?.frames).toBeLessThan(8)

    const video = await getBytes(a.socket, `/v1/jobs/${id}/preview`)
    expect([video.status, video.type]).toEqual([200, 'video/mp4'])
    const file = join(work, 'preview.mp4')
    await writeFile(file, video.body)
    const p = probe(file)
    expect(p.codec_name).toBe('h264')
    expect(Number(p.nb_read_frames)).toBe(8)
    expect(p.height).toBeLessThanOrEqual(360)
    // The output folder holds the frames only.
    const out = await readdir((await detail()).outDir as string)
    expect(out.every((f) => f.endsWith('.png'))).toBe(true)

    // Another node has no preview of it; garbage ids are clear errors.
    const other = await getBytes(mesh[1].socket, `/v1/jobs/${id}/preview`)
    expect([other.status, JSON.parse(String(other.body)).error.code]).toEqual([
      404,
      'ERR_NOT_FOUND',
    ])
    const bad = await getBytes(a.socket, '/v1/jobs/%00%ff/preview')
    expect(bad.status).toBeGreaterThanOrEqual(400)
    expect(bad.status).toBeLessThan(500)

    expect((await apiCall(a.socket, 'DELETE', `/v1/jobs/${id}`)).status).toBe(200)
    await waitFor(
      async () =>
        !(await readdir(join(a.dir, 'previews')).catch(() => [])).some((f) => f.startsWith(id)),
      10_000,
      'the preview removed with the job',
    )
    expect((await apiCall(a.socket, 'GET', '/v1/node')).status).toBe(200)
  }, 60_000)
})
