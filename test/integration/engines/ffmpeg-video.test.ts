// The encode step with the job's video options, on EXR frames made by the real ffmpeg:
// 10-bit HLG, two passes, exact NTSC frame rate, and what a build without an encoder says.
import { mkdtemp, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { beforeAll, describe, expect, it } from 'vitest'
import { pickEncoder, videoFeatures } from '../../../src/engines/ffmpeg-args.js'
import { encodeVideo, probeCaps, probeVideo } from '../../../src/engines/ffmpeg.js'
import { never } from './helpers.js'

let root: string
let exr: { frame: number; path: string }[]

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'rmesh-video-it-'))
  // 6 linear float frames, 64x64, like Blender's EXR output.
  await execa('ffmpeg', [
    '-v',
    'error',
    '-f',
    'lavfi',
    '-i',
    'testsrc2=size=64x64:rate=24',
    '-frames:v',
    '6',
    '-pix_fmt',
    'gbrpf32le',
    '-start_number',
    '1',
    join(root, 'frame_%05d.exr'),
  ])
  exr = (await readdir(root)).sort().map((f, i) => ({ frame: i + 1, path: join(root, f) }))
})

async function colorOf(path: string) {
  const r = await execa('ffprobe', [
    '-v',
    'error',
    '-select_streams',
    'v:0',
    '-show_entries',
    'stream=pix_fmt,color_transfer,color_primaries,profile',
    '-of',
    'default=noprint_wrappers=1',
    path,
  ])
  return r.stdout
}

describe('video options (real ffmpeg)', () => {
  it('encodes 10-bit HLG H.265 from EXR frames at 24000/1001', async () => {
    const out = join(root, 'hlg.mp4')
    const r = await encodeVideo({
      frames: exr,
      fps: 24,
      frameRate: '24000/1001',
      codec: 'h265',
      hdr: 'hlg',
      crf: 22,
      out,
      signal: never(),
    })
    expect(r.encoder).toBe('libx265')
    const text = await colorOf(out)
    expect(text).toContain('color_transfer=arib-std-b67')
    expect(text).toContain('color_primaries=bt2020')
    expect(text).toContain('pix_fmt=yuv420p10le')
    const info = await probeVideo(out)
    expect(info).toMatchObject({ frames: 6, pixFmt: 'yuv420p10le', colorTransfer: 'arib-std-b67' })
    expect(info.fps).toBeCloseTo(23.976, 2)
  })

  it('encodes two passes (VP9 constant quality, H.264 at a bitrate) with progress to the end', async () => {
    const progress: number[] = []
    const out = join(root, '2pass.webm')
    const r = await encodeVideo({
      frames: exr,
      fps: 24,
      codec: 'vp9',
      passes: 2,
      bitDepth: 10,
      crf: 40,
      out,
      signal: never(),
      onProgress: (p) => progress.push(p.fraction),
    })
    expect(r.encoder).toBe('libvpx-vp9')
    expect(await probeVideo(out)).toMatchObject({ codec: 'vp9', frames: 6, pixFmt: 'yuv420p10le' })
    expect(progress.at(-1)).toBe(1)
    expect(progress.some((f) => f <= 0.5)).toBe(true)
    const h264 = join(root, '2pass.mp4')
    await encodeVideo({
      frames: exr,
      fps: 24,
      codec: 'h264',
      passes: 2,
      bitrateKbps: 200,
      out: h264,
      signal: never(),
    })
    expect(await probeVideo(h264)).toMatchObject({ codec: 'h264', frames: 6, pixFmt: 'yuv420p' })
  })

  it('says which encoder is missing, and this build lists what it can do', async () => {
    const caps = await probeCaps()
    const features = videoFeatures(caps)
    for (const f of ['h264', 'h265:10bit', 'vp9:2pass', 'hlg']) expect(features).toContain(f)
    const bare = {
      encoders: new Set(['libx264']),
      tenBit: new Set<string>(),
      filters: new Set<string>(),
    }
    expect(() => pickEncoder({ video: 'h265', bitDepth: 10 }, bare)).toThrow(
      expect.objectContaining({ code: 'ERR_ENCODER_MISSING' }),
    )
    expect(() => pickEncoder({ video: 'h264', bitDepth: 10 }, bare)).toThrow(/h264:10bit/)
    // SVT-AV1 cannot take frames under 64 px, nor two passes in ffmpeg 5.1: libaom does.
    const av1 = {
      encoders: new Set(['libsvtav1', 'libaom-av1']),
      tenBit: new Set(),
      filters: new Set(),
    }
    expect(pickEncoder({ video: 'av1' }, av1 as never, { width: 32, height: 32 })).toBe(
      'libaom-av1',
    )
    expect(pickEncoder({ video: 'av1', passes: 2 }, av1 as never)).toBe('libaom-av1')
    expect(pickEncoder({ video: 'av1' }, av1 as never, { width: 64, height: 64 })).toBe('libsvtav1')
  })
})
