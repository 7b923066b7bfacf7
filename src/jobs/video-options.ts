/**
 * The video a job asks for (an announce's `output` video fields, protocols/job-entries.md):
 * codec, quality (CRF or bitrate), passes, bit depth, HDR and frame rate; their rules across
 * fields, and the encoder features a node needs to encode it. Pure.
 *
 * Invariants:
 *  - `checkVideoOutput` is total over decoded values: it returns a fresh object of known
 *    fields or throws the `fail` it is given (entries.ts turns that into a reason), so a
 *    peer's nonsense (a CRF of 99, 12-bit, a frame rate of 0/0) never reaches ffmpeg;
 *  - a frame rate is an exact rational (`24`, `24000/1001`) in [1, 240] fps, never a float;
 *  - `videoNeeds` and `nodeCanEncode` are the one place that decides which node can take an
 *    encode chunk; a node that does not list its features (older) is held to the codecs it
 *    always had (8-bit, one pass, no HDR).
 */

export type VideoCodec = 'h264' | 'h265' | 'vp9' | 'av1'
export const VIDEO_CODECS: readonly VideoCodec[] = ['h264', 'h265', 'vp9', 'av1']
/** The codecs every ffmpeg node could encode before nodes listed their features. */
export const LEGACY_VIDEO_FEATURES: readonly string[] = ['h264', 'vp9', 'av1']

/** CRF scale per codec: x264/x265 use 0..51, libvpx and AV1 encoders 0..63. */
export const CRF_MAX: Record<VideoCodec, number> = { h264: 51, h265: 51, vp9: 63, av1: 63 }
export const BITRATE_KBPS = { min: 16, max: 1_000_000 } as const
export const FPS_RANGE = { min: 1, max: 240 } as const

export interface VideoOutput {
  video?: VideoCodec
  /** The scene's integer frame rate (older announces; `frameRate` wins when present). */
  fps?: number
  /** Exact frame rate, ffmpeg's notation: `25`, `24000/1001`. */
  frameRate?: string
  crf?: number
  bitrateKbps?: number
  passes?: 1 | 2
  bitDepth?: 8 | 10
  /** HLG (BT.2100, BT.2020 primaries) from linear EXR frames; needs bitDepth 10. */
  hdr?: 'hlg'
}

const FRAME_RATE_RE = /^([1-9]\d{0,6})(?:\/([1-9]\d{0,4}))?$/

/** `24000/1001` → {num, den}; undefined when not a rational in [1, 240]. */
export function parseFrameRate(s: unknown): { num: number; den: number } | undefined {
  if (typeof s !== 'string') return undefined
  const m = FRAME_RATE_RE.exec(s)
  if (!m) return undefined
  const num = Number(m[1])
  const den = m[2] === undefined ? 1 : Number(m[2])
  const v = num / den
  return v >= FPS_RANGE.min && v <= FPS_RANGE.max ? { num, den } : undefined
}

/**
 * Blender's rate (`fps / fps_base`) as an exact rational: fps_base 1.001 (NTSC) gives
 * `24000/1001`; other bases are kept to 1/1000.
 */
export function frameRateOf(fps: number, fpsBase = 1): string | undefined {
  if (!Number.isFinite(fps) || !Number.isFinite(fpsBase) || fps <= 0 || fpsBase <= 0)
    return undefined
  let num: number
  let den: number
  if (Math.abs(fpsBase - 1.001) < 1e-6 && Number.isInteger(fps)) {
    num = fps * 1000
    den = 1001
  } else {
    num = Math.round((fps * 1000) / fpsBase)
    den = 1000
    const g = gcd(num, den)
    num /= g
    den /= g
  }
  const s = den === 1 ? String(num) : `${num}/${den}`
  return parseFrameRate(s) ? s : undefined
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b]
  return a
}

/** The frame rate to encode at, as ffmpeg takes it. */
export function encodeRate(o: VideoOutput): string {
  return o.frameRate ?? String(o.fps ?? 24)
}

/**
 * Checks the video fields of an announce's `output` (`raw`) given its image `format`, using
 * the caller's checkers so reasons read like every other field's.
 */
export function checkVideoOutput(
  raw: Record<string, unknown>,
  format: string,
  fail: (why: string) => never,
): VideoOutput {
  const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x)
  const out: VideoOutput = {}
  if (raw.video !== undefined) {
    if (!(VIDEO_CODECS as readonly unknown[]).includes(raw.video))
      fail(`output.video: not one of ${VIDEO_CODECS.join('|')}`)
    out.video = raw.video as VideoCodec
  }
  if (raw.fps !== undefined) {
    if (!isInt(raw.fps) || raw.fps < FPS_RANGE.min || raw.fps > FPS_RANGE.max)
      fail(`output.fps: not an integer in [${FPS_RANGE.min}, ${FPS_RANGE.max}]`)
    out.fps = raw.fps as number
  }
  if (raw.frameRate !== undefined) {
    if (!parseFrameRate(raw.frameRate))
      fail('output.frameRate: not a frame rate like 25 or 24000/1001 within 1..240 fps')
    out.frameRate = raw.frameRate as string
  }
  const encodeFields = ['crf', 'bitrateKbps', 'passes', 'bitDepth', 'hdr'] as const
  const given = encodeFields.filter((k) => raw[k] !== undefined)
  if (!out.video) {
    if (given.length > 0) fail(`output.${given[0]}: needs output.video`)
    return out
  }
  const codec = out.video
  if (raw.crf !== undefined) {
    if (!isInt(raw.crf) || raw.crf < 0 || raw.crf > CRF_MAX[codec])
      fail(`output.crf: not an integer in [0, ${CRF_MAX[codec]}] for ${codec}`)
    out.crf = raw.crf as number
  }
  if (raw.bitrateKbps !== undefined) {
    if (
      !isInt(raw.bitrateKbps) ||
      raw.bitrateKbps < BITRATE_KBPS.min ||
      raw.bitrateKbps > BITRATE_KBPS.max
    )
      fail(`output.bitrateKbps: not an integer in [${BITRATE_KBPS.min}, ${BITRATE_KBPS.max}]`)
    if (out.crf !== undefined) fail('output.bitrateKbps: give either crf or bitrateKbps')
    out.bitrateKbps = raw.bitrateKbps as number
  }
  if (raw.passes !== undefined) {
    if (raw.passes !== 1 && raw.passes !== 2) fail('output.passes: not 1 or 2')
    out.passes = raw.passes as 1 | 2
  }
  // x264 and x265 refuse CRF in two passes: their second pass aims at a bitrate.
  if (out.passes === 2 && (codec === 'h264' || codec === 'h265') && out.bitrateKbps === undefined)
    fail(`output.passes: 2 passes of ${codec} need output.bitrateKbps`)
  if (raw.bitDepth !== undefined) {
    if (raw.bitDepth !== 8 && raw.bitDepth !== 10) fail('output.bitDepth: not 8 or 10')
    out.bitDepth = raw.bitDepth as 8 | 10
  }
  if (raw.hdr !== undefined) {
    if (raw.hdr !== 'hlg') fail('output.hdr: not hlg')
    if (format !== 'OPEN_EXR') fail('output.hdr: HLG needs linear frames: output.format OPEN_EXR')
    if (out.bitDepth !== 10) fail('output.hdr: HLG needs output.bitDepth 10')
    out.hdr = 'hlg'
  }
  return out
}

/** The encoder features a node needs for this video (see `videoFeatures` in engines/ffmpeg). */
export function videoNeeds(o: VideoOutput): string[] {
  if (!o.video) return []
  const needs: string[] = [o.video]
  if (o.bitDepth === 10) needs.push(`${o.video}:10bit`)
  if (o.passes === 2) needs.push(`${o.video}:2pass`)
  if (o.hdr) needs.push(o.hdr)
  return needs
}

/** Whether a node listing `features` (undefined: an older node) can encode `o`. */
export function nodeCanEncode(o: VideoOutput, features: readonly string[] | undefined): boolean {
  const have = features ?? LEGACY_VIDEO_FEATURES
  return videoNeeds(o).every((n) => have.includes(n))
}

/** In words, for "no node of the mesh has …": `ffmpeg that encodes h265 10-bit HLG`. */
export function describeNeeds(o: VideoOutput): string {
  const words = [o.video ?? 'video']
  if (o.bitDepth === 10) words.push('10-bit')
  if (o.passes === 2) words.push('2-pass')
  if (o.hdr) words.push(o.hdr.toUpperCase())
  return `ffmpeg that encodes ${words.join(' ')}`
}
