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
import type { VideoCodec, VideoOutput } from '../jobs/video-options.js'
import { VIDEO_CODECS } from '../jobs/video-options.js'
import { type EncodeSettings, type FfmpegCaps, passArgs, pickEncoder } from './ffmpeg-args.js'
import { VIDEO_EXTENSION } from './ffmpeg-args.js'
import { runCapture, startProcess } from './process.js'
import { EngineError } from './types.js'

export type { VideoCodec } from '../jobs/video-options.js'
export { VIDEO_CODECS } from '../jobs/video-options.js'
export { VIDEO_EXTENSION } from './ffmpeg-args.js'

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

/** What this ffmpeg can encode: encoders, which take 10-bit input, filters; cached per executable. */
export function probeCaps(ffmpeg = 'ffmpeg'): Promise<FfmpegCaps> {
  let p = capsCache.get(ffmpeg)
  if (!p) {
    p = (async () => {
      const encoders = await listEncoders(ffmpeg)
      const tenBit = new Set<string>()
      for (const e of TEN_BIT_CANDIDATES) {
        if (!encoders.has(e)) continue
        const { stdout } = await runCapture(ffmpeg, ['-hide_banner', '-h', `encoder=${e}`], {
          timeoutMs: 15_000,
        })
        if (/pixel formats:.*\byuv420p10le\b/i.test(stdout)) tenBit.add(e)
      }
      const { stdout } = await runCapture(ffmpeg, ['-hide_banner', '-filters'], {
        timeoutMs: 15_000,
      })
      const filters = new Set<string>()
      for (const line of stdout.split('\n')) {
        const m = /^\s*[.A-Z|]{3}\s+(\w+)\s/.exec(line)
        if (m) filters.add(m[1])
      }
      return { encoders, tenBit, filters }
    })()
    capsCache.set(ffmpeg, p)
    p.catch(() => capsCache.delete(ffmpeg))
  }
  return p
}
const capsCache = new Map<string, Promise<FfmpegCaps>>()
const TEN_BIT_CANDIDATES = ['libx264', 'libx265', 'libvpx-vp9', 'libsvtav1', 'libaom-av1']

export interface EncodeOptions extends Omit<VideoOutput, 'video' | 'fps'> {
  frames: { frame: number; path: string }[]
  /** Integer frame rate; `frameRate` (exact, e.g. 24000/1001) wins when given. */
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
  /** The ffmpeg encoder used, e.g. libx265. */
  encoder: string
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
  if (opts.hdr && ext !== '.exr')
    throw new EngineError('ERR_ENGINE_PARAMS', 'HLG video needs EXR (linear) frames')
  const settings: EncodeSettings = {
    video: opts.codec,
    fps: Number.isInteger(opts.fps) ? opts.fps : undefined,
    frameRate: opts.frameRate ?? (Number.isInteger(opts.fps) ? undefined : String(opts.fps)),
    crf: opts.crf,
    bitrateKbps: opts.bitrateKbps,
    passes: opts.passes,
    bitDepth: opts.bitDepth ?? (opts.hdr ? 10 : undefined),
    hdr: opts.hdr,
  }
  const caps = await probeCaps(tools.ffmpeg)
  const sorted = [...opts.frames].sort((a, b) => a.frame - b.frame)
  const size =
    opts.codec === 'av1'
      ? await probeVideo(sorted[0].path, { signal: opts.signal, tools, countFrames: false })
      : undefined
  const encoder = pickEncoder(settings, caps, size)
  const out = resolve(opts.out)
  await mkdir(dirname(out), { recursive: true })
  const seqDir = await mkdtemp(join(tmpdir(), 'rmesh-encode-'))
  const partial = join(
    dirname(out),
    `.${Date.now()}-${process.pid}.partial.${VIDEO_EXTENSION[opts.codec]}`,
  )
  const started = performance.now()
  try {
    for (let i = 0; i < sorted.length; i++) {
      await symlink(resolve(sorted[i].path), join(seqDir, `f_${String(i).padStart(7, '0')}${ext}`))
    }
    const total = sorted.length
    const passes: (1 | 2 | undefined)[] = settings.passes === 2 ? [1, 2] : [undefined]
    for (const [i, pass] of passes.entries()) {
      const plan = passArgs(settings, encoder, ext, pass)
      await runPass({
        args: [
          '-hide_banner',
          '-nostdin',
          '-y',
          '-loglevel',
          'error',
          '-progress',
          'pipe:1',
          ...plan.input,
          '-start_number',
          '0',
          '-i',
          join(seqDir, `f_%07d${ext}`),
          '-vf',
          plan.filter,
          ...plan.output,
          '-frames:v',
          String(total),
          pass === 1 ? '-' : partial,
        ],
        // Two-pass state files land here, named relative to it (see ffmpeg-args.ts).
        cwd: seqDir,
        opts,
        tools,
        onFrame: (frame) => {
          const f = Math.min(1, frame / total)
          opts.onProgress?.({ frame, total, fraction: (i + f) / passes.length })
        },
      })
    }
    const probe = await probeVideo(partial, { signal: opts.signal, tools })
    if (probe.frames !== total) {
      throw new EngineError(
        'ERR_ENCODE_FAILED',
        `the video has ${probe.frames} frames, expected ${total}`,
      )
    }
    await rename(partial, out)
    return { out, frames: total, encodeMs: performance.now() - started, encoder }
  } finally {
    await rm(seqDir, { recursive: true, force: true })
    await rm(partial, { force: true })
  }
}

async function runPass(p: {
  args: string[]
  cwd: string
  opts: EncodeOptions
  tools: FfmpegTools
  onFrame(frame: number): void
}): Promise<void> {
  const { opts, tools } = p
  const proc = startProcess({
    file: tools.ffmpeg,
    args: p.args,
    cwd: p.cwd,
    signal: opts.signal,
    timeoutMs: opts.timeoutMs ?? 6 * 60 * 60_000,
    logPath: opts.logPath,
    onLine: (line, stream) => {
      opts.onLog?.(line)
      if (stream !== 'stdout') return
      const m = /^frame=(\d+)/.exec(line)
      if (m) p.onFrame(Number(m[1]))
    },
  })
  const outcome = await proc.done
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
  /** e.g. yuv420p10le. */
  pixFmt: string
  /** e.g. arib-std-b67 (HLG); '' when untagged. */
  colorTransfer: string
  colorPrimaries: string
}

/** What ffprobe says about a video's first video stream (frames counted by decoding). */
export async function probeVideo(
  path: string,
  options: { signal?: AbortSignal; tools?: Partial<FfmpegTools>; countFrames?: boolean } = {},
): Promise<VideoInfo> {
  const ffprobe = options.tools?.ffprobe ?? DEFAULT_TOOLS.ffprobe
  const { stdout, outcome } = await runCapture(
    ffprobe,
    [
      '-v',
      'error',
      ...(options.countFrames === false ? [] : ['-count_frames']),
      '-select_streams',
      'v:0',
      '-show_entries',
      'stream=codec_name,nb_read_frames,width,height,avg_frame_rate,duration,pix_fmt,color_transfer,color_primaries:format=duration,format_name',
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
    pixFmt: String(s.pix_fmt ?? ''),
    colorTransfer: s.color_transfer === undefined ? '' : String(s.color_transfer),
    colorPrimaries: s.color_primaries === undefined ? '' : String(s.color_primaries),
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
