import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { encodePng } from '../../../src/engines/test-engine.js'
import { frameFileName, type ServiceContext } from '../../../src/service/context.js'
import { createPreviewVideos, previewVideoArgs } from '../../../src/service/preview-video.js'
import { FakeClock } from '../../../src/util/clock.js'

describe('preview video arguments', () => {
  it('are a small, one-thread H.264 of the numbered frames (recorded); EXR gets the sRGB curve', () => {
    expect(previewVideoArgs('/t', '.png', '24000/1001', '/t/p.mp4')).toEqual([
      '-hide_banner',
      '-loglevel',
      'error',
      '-nostdin',
      '-y',
      '-framerate',
      '24000/1001',
      '-i',
      '/t/%06d.png',
      '-vf',
      "scale=-2:'2*trunc(min(360,ih)/2)':flags=bilinear,format=yuv420p",
      '-c:v',
      'libx264',
      '-preset',
      'veryfast',
      '-crf',
      '28',
      '-threads',
      '1',
      '-movflags',
      '+faststart',
      '-an',
      '-f',
      'mp4',
      '/t/p.mp4',
    ])
    const exr = previewVideoArgs('/t', '.exr', '25', '/t/p.mp4')
    expect(exr.slice(5, 11)).toEqual([
      '-framerate',
      '25',
      '-apply_trc',
      'iec61966_2_1',
      '-i',
      '/t/%06d.exr',
    ])
  })
})

describe('preview video pace', () => {
  it('first frame at once, then every N frames or T ms (one timer per job), last frame at once; real ffmpeg', async () => {
    const root = await mkdtemp(join(tmpdir(), 'rmesh-pv-'))
    try {
      const outDir = join(root, 'out')
      await mkdir(outDir)
      const frame = encodePng(8, 8, new Uint8Array(8 * 8 * 3).fill(128))
      const total = 12
      const chunks = Array.from({ length: total }, (_, i) => ({
        kind: 'frames',
        frames: [i + 1],
        outputs: [{ frame: i + 1, name: `frame_${i + 1}.png` }],
      }))
      const state = {
        jobId: 'job1',
        deleted: false,
        framesTotal: total,
        chunks,
        job: { output: { format: 'PNG', fps: 24 } },
      }
      const lj = { jobId: 'job1', outDir, scenePath: '/x.blend', written: [] as number[] }
      const clock = new FakeClock(1_000)
      const ctx = {
        c: { clock, leases: { job: (id: string) => (id === 'job1' ? state : undefined) } },
        localJobs: new Map([['job1', lj]]),
        resolveId: (id: string) => id,
        logger: { debug() {} },
      } as unknown as ServiceContext
      const updates: number[] = []
      const pv = createPreviewVideos(ctx, {
        dir: join(root, 'previews'),
        everyFrames: 5,
        everyMs: 10_000,
        onUpdated: () => updates.push(pv.info('job1')?.frames ?? -1),
      })
      const write = async (upTo: number) => {
        for (let f = lj.written.length + 1; f <= upTo; f++) {
          await writeFile(join(outDir, frameFileName(f, '.png')), frame)
          lj.written.push(f - 1)
        }
        pv.noteWritten('job1')
      }
      const settle = () => waitUntil(() => updates.length, 10_000)
      await write(1) // the first frame: at once
      await settle()
      expect(updates).toEqual([1])
      await write(2)
      await write(3) // 2 new, under 5 and under 10 s: waits (one timer)
      await new Promise((r) => setTimeout(r, 300))
      expect(updates).toEqual([1])
      expect(clock.nextTimerAt()).toBe(11_000)
      clock.advanceTo(11_000) // T passed
      await waitUntil(() => (updates.length >= 2 ? updates.length : 0), 10_000)
      expect(updates).toEqual([1, 3])
      await write(8) // 5 new: at once
      await waitUntil(() => (updates.length >= 3 ? updates.length : 0), 10_000)
      await write(total) // the last frame: at once
      await waitUntil(() => (updates.length >= 4 ? updates.length : 0), 10_000)
      expect(updates).toEqual([1, 3, 8, 12])
      expect((await pv.file('job1')).contentType).toBe('video/mp4')
      await pv.forget('job1')
      await expect(pv.file('job1')).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' })
      await pv.stop()
    } finally {
      await rm(root, { recursive: true, force: true })
    }
  }, 60_000)
})

async function waitUntil(f: () => number, ms: number): Promise<void> {
  const end = Date.now() + ms
  while (!f()) {
    if (Date.now() > end) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 20))
  }
}
