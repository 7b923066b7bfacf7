/**
 * ffmpeg's argument vectors for a job's video, and what an ffmpeg build can encode. Pure:
 * it is given what the build has (`FfmpegCaps`, probed once by engines/ffmpeg.ts).
 *
 * Invariants:
 *  - the encoder for a codec is chosen from what the build has, never assumed: libx264,
 *    libx265, libvpx-vp9; for AV1 SVT-AV1 (fast) unless the video needs two passes or is
 *    smaller than 64 px (SVT's minimum), then libaom-av1. A video this build cannot make
 *    is ERR_ENCODER_MISSING, naming what is missing, before ffmpeg starts;
 *  - `videoFeatures` (what presence announces) and `pickEncoder` (what the encode uses)
 *    follow the same rules, so a node that announces a feature can encode it;
 *  - two-pass state files are named relative to ffmpeg's working directory (a private
 *    temporary folder), so no path is spliced into x265's `key=value:…` option string.
 */
import type { VideoCodec, VideoOutput } from '../jobs/video-options.js'
import { encodeRate, videoNeeds } from '../jobs/video-options.js'
import { EngineError } from './types.js'

/** An ffmpeg that says only errors, never reads stdin and overwrites its output. */
export const FFMPEG_QUIET_ARGS = ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y'] as const

export interface FfmpegCaps {
  encoders: Set<string>
  /** Encoders that take yuv420p10le. */
  tenBit: Set<string>
  filters: Set<string>
}

/** The container each codec is written in. */
export const VIDEO_EXTENSION: Record<VideoCodec, string> = {
  h264: 'mp4',
  h265: 'mp4',
  vp9: 'webm',
  av1: 'mp4',
}

/** Default CRF per encoder: visually transparent-ish for renders, not archival. */
const DEFAULT_CRF: Record<string, number> = {
  libx264: 18,
  libx265: 20,
  'libvpx-vp9': 31,
  libsvtav1: 35,
  'libaom-av1': 32,
}

const SVT_MIN_SIZE = 64

/** The encode settings of a job: its video fields with the codec set. */
export type EncodeSettings = VideoOutput & { video: VideoCodec }

function candidates(codec: VideoCodec): string[] {
  switch (codec) {
    case 'h264':
      return ['libx264']
    case 'h265':
      return ['libx265']
    case 'vp9':
      return ['libvpx-vp9']
    case 'av1':
      return ['libsvtav1', 'libaom-av1']
  }
}

/** Whether `encoder` can make this video (size aside). */
function encoderFits(encoder: string, s: EncodeSettings, caps: FfmpegCaps): boolean {
  if (!caps.encoders.has(encoder)) return false
  if (s.bitDepth === 10 && !caps.tenBit.has(encoder)) return false
  // ffmpeg 5.1's SVT-AV1 wrapper ignores -pass: two passes need libaom.
  if (s.passes === 2 && encoder === 'libsvtav1') return false
  return true
}

/** The features this build can encode (presence `video`; jobs/video-options.ts `videoNeeds`). */
export function videoFeatures(caps: FfmpegCaps): string[] {
  const out: string[] = []
  for (const codec of ['h264', 'h265', 'vp9', 'av1'] as const) {
    const variants: [string, EncodeSettings][] = [
      [codec, { video: codec }],
      [`${codec}:10bit`, { video: codec, bitDepth: 10 }],
      [`${codec}:2pass`, { video: codec, passes: 2 }],
    ]
    for (const [feature, s] of variants)
      if (candidates(codec).some((e) => encoderFits(e, s, caps))) out.push(feature)
  }
  if (caps.filters.has('zscale')) out.push('hlg')
  return out
}

/** The encoder for this video on this build; ERR_ENCODER_MISSING when it has none. */
export function pickEncoder(
  s: EncodeSettings,
  caps: FfmpegCaps,
  size?: { width: number; height: number },
): string {
  const missing = videoNeeds(s).filter((n) => !videoFeatures(caps).includes(n))
  const small = size !== undefined && Math.min(size.width, size.height) < SVT_MIN_SIZE
  const pick = candidates(s.video).find(
    (e) => encoderFits(e, s, caps) && !(small && e === 'libsvtav1'),
  )
  if (missing.length > 0 || !pick) {
    throw new EngineError(
      'ERR_ENCODER_MISSING',
      `this node's ffmpeg cannot encode ${missing.length ? missing.join(', ') : `${s.video} at ${size?.width}x${size?.height}`}: install an ffmpeg with ${candidates(s.video).join(' or ')}${s.hdr ? ' and the zscale filter' : ''}, or leave the encode to a node that has it`,
      { details: { needs: videoNeeds(s), missing } },
    )
  }
  return pick
}

export interface PassPlan {
  /** Arguments before `-i` (input options). */
  input: string[]
  /** The filter chain (`-vf`). */
  filter: string
  /** Encoder and output options for this pass (before the output path). */
  output: string[]
}

/** Blender's linear EXR scene light, 1.0 = diffuse white, goes to 203 cd/m² (BT.2408: 75 % HLG). */
const HLG_FILTER =
  'zscale=w=trunc(iw/2)*2:h=trunc(ih/2)*2:tin=linear:pin=bt709:min=gbr:npl=203' +
  ':t=arib-std-b67:p=bt2020:m=bt2020nc:r=tv,format=yuv420p10le'
const HLG_TAGS = [
  '-color_primaries',
  'bt2020',
  '-color_trc',
  'arib-std-b67',
  '-colorspace',
  'bt2020nc',
  '-color_range',
  'tv',
]

/**
 * The arguments of one pass (`pass` 1 of 2, 2 of 2, or undefined for a single pass) of
 * encoding frames with extension `ext` (`.png`, `.exr`, …) using `encoder`.
 */
export function passArgs(s: EncodeSettings, encoder: string, ext: string, pass?: 1 | 2): PassPlan {
  const exr = ext === '.exr'
  const pixFmt = s.bitDepth === 10 ? 'yuv420p10le' : 'yuv420p'
  const rate = encodeRate(s)
  const input = ['-framerate', rate]
  // EXR frames are linear: SDR gets sRGB's curve (the base of Blender's view transform);
  // HLG takes the linear light itself.
  if (exr && !s.hdr) input.push('-apply_trc', 'iec61966_2_1')
  const filter = s.hdr ? HLG_FILTER : 'scale=trunc(iw/2)*2:trunc(ih/2)*2'
  const crf = s.bitrateKbps === undefined ? (s.crf ?? DEFAULT_CRF[encoder]) : undefined
  const rateControl = crf !== undefined ? ['-crf', String(crf)] : ['-b:v', `${s.bitrateKbps}k`]
  const out: string[] = ['-c:v', encoder]
  switch (encoder) {
    case 'libx264':
      out.push('-preset', 'medium', ...rateControl)
      break
    case 'libx265': {
      out.push('-preset', 'medium', ...rateControl, '-tag:v', 'hvc1')
      const params = ['log-level=error', ...(pass ? [`pass=${pass}`, 'stats=x265-pass.log'] : [])]
      out.push('-x265-params', params.join(':'))
      break
    }
    case 'libvpx-vp9':
      // -b:v 0 with a CRF is libvpx's constant quality mode.
      out.push(...rateControl, ...(crf !== undefined ? ['-b:v', '0'] : []), '-row-mt', '1')
      break
    case 'libsvtav1':
      out.push('-preset', '8', ...rateControl)
      break
    case 'libaom-av1':
      out.push('-cpu-used', '6', '-row-mt', '1', ...rateControl)
      if (crf !== undefined) out.push('-b:v', '0')
      break
  }
  if (pass && encoder !== 'libx265') out.push('-pass', String(pass), '-passlogfile', 'ffmpeg-pass')
  out.push('-pix_fmt', pixFmt, ...(s.hdr ? HLG_TAGS : []), '-r', rate)
  if (VIDEO_EXTENSION[s.video] === 'mp4' && pass !== 1) out.push('-movflags', '+faststart')
  if (pass === 1) out.push('-an', '-f', 'null')
  // -framerate/-r take the rational as is; ffmpeg keeps 24000/1001 exact in the container.
  return { input, filter, output: out }
}
