/**
 * Frame previews with ffmpeg: a small thumbnail of every finished frame (made by the node
 * that rendered it, stored as a block next to the output) and a full-size PNG of an EXR
 * frame for the web viewer.
 *
 * Invariants:
 *  - argv only, paths chosen by the caller (never by a peer), bounded by a timeout and the
 *    caller's signal; a preview that cannot be made is `false`, never a failed frame;
 *  - a thumbnail is a JPEG of at most THUMB_MAX_PX on its long side and THUMB_MAX_BYTES;
 *    a PNG or JPEG output already that small is its own thumbnail (no ffmpeg run, the same
 *    block: most test frames and tiny scenes cost nothing extra);
 *  - EXR (scene-linear) goes through a view transform: Hable tone map, then the sRGB
 *    transfer, so highlights roll off instead of clipping.
 */
import { open, stat } from 'node:fs/promises'
import { FFMPEG_QUIET_ARGS } from './ffmpeg-args.js'
import { runCapture } from './process.js'
import type { OutputFormat } from './types.js'

export const THUMB_MAX_PX = 256
export const THUMB_MAX_BYTES = 64 * 1024
const TIMEOUT_MS = 15_000

/** Scene-linear → display: the filters that tone-map an EXR for an sRGB screen. */
const EXR_VIEW = [
  'zscale=tin=linear:t=linear:npl=100',
  'format=gbrpf32le',
  'tonemap=hable:desat=0',
  'zscale=tin=linear:t=iec61966-2-1',
  'format=rgb24',
]

/** ffmpeg's arguments for a preview of `input` (a thumbnail when maxPx is given). */
export function previewArgs(
  input: string,
  output: string,
  format: OutputFormat,
  maxPx?: number,
): string[] {
  const filters: string[] = []
  if (maxPx)
    filters.push(
      `scale='if(gt(iw,ih),min(${maxPx},iw),-2)':'if(gt(iw,ih),-2,min(${maxPx},ih))':flags=area`,
    )
  if (format === 'OPEN_EXR') filters.push(...EXR_VIEW)
  else filters.push('format=rgb24')
  return [
    ...FFMPEG_QUIET_ARGS,
    '-i',
    input,
    '-vf',
    filters.join(','),
    '-frames:v',
    '1',
    ...(maxPx ? ['-q:v', '5', '-f', 'mjpeg'] : ['-f', 'image2', '-c:v', 'png']),
    output,
  ]
}

/** Width and height from a PNG's IHDR, or undefined when `head` is not a PNG. */
export function pngSize(head: Uint8Array): { width: number; height: number } | undefined {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]
  if (head.length < 24 || !sig.every((b, i) => head[i] === b)) return undefined
  const v = new DataView(head.buffer, head.byteOffset, head.byteLength)
  return { width: v.getUint32(16), height: v.getUint32(20) }
}

/** True when the output at `path` may serve as its own thumbnail. */
export async function isOwnThumbnail(path: string, format: OutputFormat): Promise<boolean> {
  if (format !== 'PNG') return false
  const st = await stat(path)
  if (st.size > THUMB_MAX_BYTES) return false
  const fh = await open(path, 'r')
  try {
    const head = new Uint8Array(24)
    await fh.read(head, 0, 24, 0)
    const size = pngSize(head)
    return !!size && size.width <= THUMB_MAX_PX && size.height <= THUMB_MAX_PX
  } finally {
    await fh.close()
  }
}

/** Write a preview of `input` to `output`; false when ffmpeg could not (or it is too big). */
export async function makePreview(
  input: string,
  output: string,
  format: OutputFormat,
  options: { maxPx?: number; signal?: AbortSignal; ffmpeg?: string } = {},
): Promise<boolean> {
  const { outcome } = await runCapture(
    options.ffmpeg ?? 'ffmpeg',
    previewArgs(input, output, format, options.maxPx),
    { signal: options.signal, timeoutMs: TIMEOUT_MS },
  )
  if (outcome.spawnError || outcome.exitCode !== 0) return false
  const size = (await stat(output).catch(() => undefined))?.size ?? 0
  return size > 0 && (!options.maxPx || size <= THUMB_MAX_BYTES)
}
