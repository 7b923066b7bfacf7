/**
 * Video encoding of finished frames with ffmpeg, and probing with ffprobe.
 *
 * Invariants: argv only; the frames are exposed to ffmpeg as a numbered sequence of
 * symlinks in a private temporary folder (so frame numbers may have gaps and paths may
 * hold any character); the output is written to a temporary name and renamed into place
 * only after ffmpeg succeeded and ffprobe sees the expected frame count, so a half-written
 * video never appears at `out`. Abort kills ffmpeg (process group) at once.
 */
import { mkdir, mkdtemp, rename, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, extname, join, resolve } from 'node:path'
import { runCapture, startProcess } from './process.js'
import { EngineError } from './types.js'

export type VideoCodec = 'h264' | 'vp9' | 'av1'
export const VIDEO_CODECS: readonly VideoCodec[] = ['h264', 'vp9', 'av1']
/** The container each codec is written in. */
export const VIDEO_EXTENSION: Record<VideoCodec, string> = { h264: 'mp4', vp9: 'webm', av1: 'mp4' }

export interface FfmpegTools {
  ffmpeg: string
  ffprobe: string
}
const DEFAULT_TOOLS: FfmpegTools = { ffmpeg: 'ffmpeg', ffprobe: 'ffprobe' }

const encoderCache = new Map<string, Promise<Set<string>>>()

/** The encoder names this ffmpeg has (`ffmpeg -encoders`), cached per executable. */
export function listEncoders(ffmpeg = 'ffmpeg'): Promise<Set<string>> {
  let p = encoderCache.get(ffmpeg)
  if (!p) {
    p = runCapture(ffmpeg, ['-hide_banner', '-encoders']).then(({ stdout, outcome }) => {
      if (outcome.spawnError || outcome.exitCode !== 0) {
        throw new EngineError(
          'ERR_ENGINE_NOT_FOUND',
          `cannot run ${ffmpeg}: install ffmpeg or configure its path`,
          {
            cause: outcome.spawnError,
          },
        )
      }
      const names = new Set<string>()
      for (const line of stdout.split('\n')) {
        const m = /^\s*[VAS][.A-Z]{5}\s+(\S+)/.exec(line)
        if (m) names.add(m[1])
      }
      return names
    })
    encoderCache.set(ffmpeg, p)
    p.catch(() => encoderCache.delete(ffmpeg))
  }
  return p
}

/** `ffmpeg version 5.1.6-0+deb12u1 ...` → `5.1.6`. */
export function parseFfmpegVersion(stdout: string): string | undefined {
  return /^ffmpeg version n?(\d+(?:\.\d+){0,2})/m.exec(stdout)?.[1]
}

/** The encoder arguments for a codec, given the encoders available. */
export function codecArgs(codec: VideoCodec, encoders: Set<string>): string[] {
  switch (codec) {
    case 'h264':
      if (!encoders.has('libx264')) break
      return [
        '-c:v',
        'libx264',
        '-preset',
        'medium',
        '-crf',
        '18',
        '-pix_fmt',
        'yuv420p',
        '-movflags',
        '+faststart',
      ]
    case 'vp9':
      if (!encoders.has('libvpx-vp9')) break
      return [
        '-c:v',
        'libvpx-vp9',
        '-b:v',
        '0',
        '-crf',
        '31',
        '-row-mt',
        '1',
        '-pix_fmt',
        'yuv420p',
      ]
    case 'av1':
      // SVT-AV1 is by far the fastest; libaom is the reference fallback.
      if (encoders.has('libsvtav1')) {
        return [
          '-c:v',
          'libsvtav1',
          '-preset',
          '8',
          '-crf',
          '35',
          '-pix_fmt',
          'yuv420p',
          '-movflags',
          '+faststart',
        ]
      }
      if (encoders.has('libaom-av1')) {
        return [
          '-c:v',
          'libaom-av1',
          '-cpu-used',
          '6',
          '-row-mt',
          '1',
          '-crf',
          '32',
          '-b:v',
          '0',
          '-pix_fmt',
          'yuv420p',
          '-movflags',
          '+faststart',
        ]
      }
      break
  }
  throw new EngineError(
    'ERR_ENGINE_NOT_FOUND',
    `this ffmpeg has no ${codec} encoder: install a full ffmpeg build`,
    {
      details: { codec },
    },
  )
}

export interface EncodeOptions {
  frames: { frame: number; path: string }[]
  fps: number
  codec: VideoCodec
  out: string
  signal: AbortSignal
  onProgress?(p: { frame: number; total: number; fraction: number }): void
  onLog?(line: string): void
  logPath?: string
  timeoutMs?: number
  tools?: Partial<FfmpegTools>
}

export interface EncodeResult {
  out: string
  frames: number
  encodeMs: number
}

/** Encodes `frames` (PNG, JPEG or EXR, in frame order) into a video at `out`. */
export async function encodeVideo(opts: EncodeOptions): Promise<EncodeResult> {
  const tools = { ...DEFAULT_TOOLS, ...opts.tools }
  if (!VIDEO_CODECS.includes(opts.codec)) {
    throw new EngineError(
      'ERR_ENGINE_PARAMS',
      `video codec ${String(opts.codec)} is not one of ${VIDEO_CODECS.join(', ')}`,
    )
  }
  if (!Number.isFinite(opts.fps) || opts.fps <= 0 || opts.fps > 1000) {
    throw new EngineError('ERR_ENGINE_PARAMS', `fps ${opts.fps} is not in (0, 1000]`)
  }
  if (opts.frames.length === 0)
    throw new EngineError('ERR_ENGINE_PARAMS', 'a video needs at least one frame')
  const exts = new Set(opts.frames.map((f) => extname(f.path).toLowerCase()))
  if (exts.size !== 1 || ![...exts].every((e) => ['.png', '.exr', '.jpg', '.jpeg'].includes(e))) {
    throw new EngineError(
      'ERR_ENGINE_PARAMS',
      `frames must all be PNG, JPEG or EXR, not ${[...exts].join(', ')}`,
    )
  }
  const ext = [...exts][0]
  const codec = codecArgs(opts.codec, await listEncoders(tools.ffmpeg))
  const out = resolve(opts.out)
  await mkdir(dirname(out), { recursive: true })
  const seqDir = await mkdtemp(join(tmpdir(), 'rmesh-encode-'))
  const partial = join(
    dirname(out),
    `.${Date.now()}-${process.pid}.partial.${VIDEO_EXTENSION[opts.codec]}`,
  )
  const started = performance.now()
  try {
    const sorted = [...opts.frames].sort((a, b) => a.frame - b.frame)
    for (let i = 0; i < sorted.length; i++) {
      await symlink(resolve(sorted[i].path), join(seqDir, `f_${String(i).padStart(7, '0')}${ext}`))
    }
    const total = sorted.length
    const args = [
      '-hide_banner',
      '-nostdin',
      '-y',
      '-loglevel',
      'error',
      '-progress',
      'pipe:1',
      '-framerate',
      String(opts.fps),
      // EXR frames are linear: convert to sRGB like Blender's view transform's base.
      ...(ext === '.exr' ? ['-apply_trc', 'iec61966_2_1'] : []),
      '-start_number',
      '0',
      '-i',
      join(seqDir, `f_%07d${ext}`),
      // 4:2:0 needs even dimensions.
      '-vf',
      'scale=trunc(iw/2)*2:trunc(ih/2)*2',
      ...codec,
      '-r',
      String(opts.fps),
      '-frames:v',
      String(total),
      partial,
    ]
    const p = startProcess({
      file: tools.ffmpeg,
      args,
      signal: opts.signal,
      timeoutMs: opts.timeoutMs ?? 6 * 60 * 60_000,
      logPath: opts.logPath,
      onLine: (line, stream) => {
        opts.onLog?.(line)
        if (stream !== 'stdout') return
        const m = /^frame=(\d+)/.exec(line)
        if (m) {
          const frame = Number(m[1])
          opts.onProgress?.({ frame, total, fraction: Math.min(1, frame / total) })
        }
      },
    })
    const outcome = await p.done
    if (outcome.spawnError) {
      throw new EngineError('ERR_ENGINE_NOT_FOUND', `cannot run ${tools.ffmpeg}: install ffmpeg`, {
        cause: outcome.spawnError,
      })
    }
    if (outcome.canceled) throw new EngineError('ERR_RENDER_CANCELED', 'video encode canceled')
    if (outcome.timedOut) throw new EngineError('ERR_RENDER_TIMEOUT', 'video encode timed out')
    if (outcome.exitCode !== 0) {
      throw new EngineError(
        'ERR_ENCODE_FAILED',
        `ffmpeg exited with ${outcome.exitCode ?? outcome.signal}`,
        {
          details: { logTail: outcome.tail.filter((l) => !/^\w+=/.test(l)) },
        },
      )
    }
    const probe = await probeVideo(partial, { signal: opts.signal, tools })
    if (probe.frames !== total) {
      throw new EngineError(
        'ERR_ENCODE_FAILED',
        `the video has ${probe.frames} frames, expected ${total}`,
      )
    }
    await rename(partial, out)
    return { out, frames: total, encodeMs: performance.now() - started }
  } finally {
    await rm(seqDir, { recursive: true, force: true })
    await rm(partial, { force: true })
  }
}

export interface VideoInfo {
  codec: string
  frames: number
  /** Seconds. */
  duration: number
  width: number
  height: number
  fps: number
  formatName: string
}

/** What ffprobe says about a video's first video stream (frames counted by decoding). */
export async function probeVideo(
  path: string,
  options: { signal?: AbortSignal; tools?: Partial<FfmpegTools> } = {},
): Promise<VideoInfo> {
  const ffprobe = options.tools?.ffprobe ?? DEFAULT_TOOLS.ffprobe
  const { stdout, outcome } = await runCapture(
    ffprobe,
    [
      '-v',
      'error',
      '-count_frames',
      '-select_streams',
      'v:0',
      '-show_entries',
      'stream=codec_name,nb_read_frames,width,height,avg_frame_rate,duration:format=duration,format_name',
      '-of',
      'json',
      path,
    ],
    { signal: options.signal, timeoutMs: 120_000 },
  )
  if (outcome.spawnError) {
    throw new EngineError('ERR_ENGINE_NOT_FOUND', `cannot run ${ffprobe}: install ffmpeg`, {
      cause: outcome.spawnError,
    })
  }
  let parsed: {
    streams?: Record<string, string | number>[]
    format?: Record<string, string>
  }
  try {
    parsed = JSON.parse(stdout)
  } catch (err) {
    throw new EngineError('ERR_ENCODE_FAILED', `ffprobe could not read ${path}`, { cause: err })
  }
  const s = parsed.streams?.[0]
  if (outcome.exitCode !== 0 || !s) {
    throw new EngineError('ERR_ENCODE_FAILED', `${path} has no video stream`, {
      details: { logTail: outcome.tail },
    })
  }
  const [num, den] = String(s.avg_frame_rate ?? '0/1')
    .split('/')
    .map(Number)
  return {
    codec: String(s.codec_name),
    frames: Number(s.nb_read_frames),
    duration: Number(parsed.format?.duration ?? s.duration),
    width: Number(s.width),
    height: Number(s.height),
    fps: den ? num / den : 0,
    formatName: String(parsed.format?.format_name ?? ''),
  }
}

/** ffmpeg's version, or undefined when it cannot run. */
export async function detectFfmpeg(ffmpeg = 'ffmpeg'): Promise<string | undefined> {
  const { stdout, outcome } = await runCapture(ffmpeg, ['-hide_banner', '-version'], {
    timeoutMs: 15_000,
  })
  if (outcome.exitCode !== 0) return undefined
  return parseFfmpegVersion(stdout)
}
