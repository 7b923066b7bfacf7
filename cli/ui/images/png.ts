/**
 * A small PNG decoder for the dashboard's thumbnails (the sixel encoder needs pixels; the
 * thumbnails are ≤ 256 px PNGs the daemon serves). Pure: bytes in, 8-bit RGBA out.
 *
 * Invariants: bounded before work (file size, width × height ≤ MAX_PIXELS, inflated size
 * checked against the size the header implies); any malformed input is a DecodeError,
 * never a throw of another kind or an out-of-bounds read. Supports bit depths 8 and 16
 * (16 keeps the high byte) of every colour type, palettes with tRNS; not interlaced (Adam7)
 * or bit depths below 8, which the thumbnails never use: those are refused, not guessed.
 */
import { inflateSync } from 'node:zlib'
import { DecodeError } from '../../../src/util/errors.js'

export interface Rgba {
  width: number
  height: number
  /** width × height × 4 bytes, row by row. */
  data: Uint8Array
}

export const MAX_PNG_BYTES = 4 * 1024 * 1024
export const MAX_PIXELS = 4096 * 4096
const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]
/** Channels per colour type: grey, -, RGB, palette, grey+alpha, -, RGBA. */
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }

const bad = (why: string) => new DecodeError(`the PNG image (${why})`)

export function decodePng(bytes: Uint8Array): Rgba {
  if (bytes.length > MAX_PNG_BYTES) throw bad(`${bytes.length} bytes, over ${MAX_PNG_BYTES}`)
  if (bytes.length < 8 || !SIGNATURE.every((b, i) => bytes[i] === b)) throw bad('no signature')
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let width = 0
  let height = 0
  let depth = 0
  let type = -1
  let palette: Uint8Array | undefined
  let alpha: Uint8Array | undefined
  const idat: Uint8Array[] = []
  for (let at = 8; ; ) {
    if (at + 8 > bytes.length) throw bad('truncated')
    const len = view.getUint32(at)
    const kind = String.fromCharCode(...bytes.subarray(at + 4, at + 8))
    const body = at + 8
    if (len > bytes.length || body + len + 4 > bytes.length) throw bad(`chunk ${kind} truncated`)
    const data = bytes.subarray(body, body + len)
    if (kind === 'IHDR') {
      if (len < 13) throw bad('short header')
      width = view.getUint32(body)
      height = view.getUint32(body + 4)
      depth = data[8]
      type = data[9]
      if (data[12] !== 0) throw bad('interlaced images are not supported')
      if (!(type in CHANNELS) || (depth !== 8 && depth !== 16) || (type === 3 && depth !== 8))
        throw bad(`colour type ${type} at ${depth} bits is not supported`)
      if (width === 0 || height === 0 || width * height > MAX_PIXELS)
        throw bad(`${width}×${height} pixels`)
    } else if (kind === 'PLTE') palette = data
    else if (kind === 'tRNS') alpha = data
    else if (kind === 'IDAT') idat.push(data)
    else if (kind === 'IEND') break
    at = body + len + 4
  }
  if (!width) throw bad('no header')
  if (type === 3 && !palette) throw bad('no palette')
  const bpp = (CHANNELS[type] * depth) / 8
  const stride = width * bpp
  const expected = (stride + 1) * height
  let raw: Buffer
  try {
    raw = inflateSync(Buffer.concat(idat), { maxOutputLength: expected + 1 })
  } catch (err) {
    throw new DecodeError('the PNG image data', err)
  }
  if (raw.length < expected) throw bad('image data too short')
  const px = unfilter(raw, height, stride, bpp)
  const out = new Uint8Array(width * height * 4)
  const step = depth / 8 // 16-bit samples: keep the high byte
  for (let i = 0, o = 0; i < width * height; i++, o += 4) {
    const s = i * bpp
    const c = (k: number) => px[s + k * step]
    if (type === 0) out.set([c(0), c(0), c(0), 255], o)
    else if (type === 2) out.set([c(0), c(1), c(2), 255], o)
    else if (type === 4) out.set([c(0), c(0), c(0), c(1)], o)
    else if (type === 6) out.set([c(0), c(1), c(2), c(3)], o)
    else {
      const p = px[s]
      if (p * 3 + 2 >= (palette as Uint8Array).length) throw bad(`palette index ${p}`)
      const pal = palette as Uint8Array
      out.set(
        [pal[p * 3], pal[p * 3 + 1], pal[p * 3 + 2], alpha && p < alpha.length ? alpha[p] : 255],
        o,
      )
    }
  }
  return { width, height, data: out }
}

/** Undoes the per-row filters (PNG spec §9) into a fresh buffer of rows without filter bytes. */
function unfilter(raw: Uint8Array, height: number, stride: number, bpp: number): Uint8Array {
  const out = new Uint8Array(stride * height)
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)]
    const src = y * (stride + 1) + 1
    const row = y * stride
    const up = row - stride
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? out[row + x - bpp] : 0
      const b = y > 0 ? out[up + x] : 0
      const c = x >= bpp && y > 0 ? out[up + x - bpp] : 0
      let v = raw[src + x]
      if (f === 1) v += a
      else if (f === 2) v += b
      else if (f === 3) v += (a + b) >> 1
      else if (f === 4) {
        const p = a + b - c
        const pa = Math.abs(p - a)
        const pb = Math.abs(p - b)
        const pc = Math.abs(p - c)
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c
      } else if (f !== 0) throw bad(`filter ${f}`)
      out[row + x] = v & 0xff
    }
  }
  return out
}

/**
 * The image scaled to fit maxW × maxH, keeping its aspect: averaged when it shrinks, pixels
 * repeated when it grows (a tiny thumbnail stays sharp); alpha over black.
 */
export function fitRgba(img: Rgba, maxW: number, maxH: number): Rgba {
  const scale = Math.min(maxW / img.width, maxH / img.height)
  const width = Math.max(1, Math.floor(img.width * scale))
  const height = Math.max(1, Math.floor(img.height * scale))
  const data = new Uint8Array(width * height * 4)
  for (let y = 0; y < height; y++) {
    const y0 = Math.floor((y * img.height) / height)
    const y1 = Math.max(y0 + 1, Math.floor(((y + 1) * img.height) / height))
    for (let x = 0; x < width; x++) {
      const x0 = Math.floor((x * img.width) / width)
      const x1 = Math.max(x0 + 1, Math.floor(((x + 1) * img.width) / width))
      let r = 0
      let g = 0
      let b = 0
      let n = 0
      for (let sy = y0; sy < y1; sy++)
        for (let sx = x0; sx < x1; sx++) {
          const i = (sy * img.width + sx) * 4
          const a = img.data[i + 3] / 255
          r += img.data[i] * a
          g += img.data[i + 1] * a
          b += img.data[i + 2] * a
          n++
        }
      const o = (y * width + x) * 4
      data[o] = Math.round(r / n)
      data[o + 1] = Math.round(g / n)
      data[o + 2] = Math.round(b / n)
      data[o + 3] = 255
    }
  }
  return { width, height, data }
}
