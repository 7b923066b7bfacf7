/**
 * RGBA pixels → a sixel image (DEC VT340's bitmap format, drawn by xterm -ti vt340, foot,
 * mlterm, WezTerm, Windows Terminal, Konsole…). Pure and deterministic: the same pixels give
 * the same bytes (the tests compare recorded output).
 *
 * Invariants: at most MAX_COLORS colour registers (256 is what VT340-class terminals
 * promise), chosen by median cut over the image's own colours; pixels are opaque (fitRgba
 * composites alpha first); the sequence is DCS … ST with 1:1 pixel aspect and the image's
 * exact size in its raster attributes, so the terminal reserves exactly that area.
 */
import type { Rgba } from './png.js'

export const MAX_COLORS = 255

export interface Quantized {
  /** RGB triples, 0..255. */
  palette: [number, number, number][]
  /** One palette index per pixel. */
  indices: Uint16Array
}

/** Median cut: split the box with the widest channel range at its median until `max` boxes. */
export function quantize(img: Rgba, max = MAX_COLORS): Quantized {
  const n = img.width * img.height
  const counts = new Map<number, number>()
  for (let i = 0; i < n; i++) {
    const o = i * 4
    const key = (img.data[o] << 16) | (img.data[o + 1] << 8) | img.data[o + 2]
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
  const colors = [...counts.keys()].sort((a, b) => a - b)
  const ch = (c: number, k: number) => (c >> (16 - 8 * k)) & 0xff
  let boxes: number[][] = [colors]
  while (boxes.length < max) {
    let best = -1
    let bestRange = 0
    let bestCh = 0
    boxes.forEach((box, bi) => {
      if (box.length < 2) return
      for (let k = 0; k < 3; k++) {
        let lo = 255
        let hi = 0
        for (const c of box) {
          const v = ch(c, k)
          if (v < lo) lo = v
          if (v > hi) hi = v
        }
        if (hi - lo > bestRange) {
          bestRange = hi - lo
          best = bi
          bestCh = k
        }
      }
    })
    if (best < 0) break
    const box = boxes[best].slice().sort((a, b) => ch(a, bestCh) - ch(b, bestCh) || a - b)
    const mid = box.length >> 1
    boxes = [...boxes.slice(0, best), box.slice(0, mid), box.slice(mid), ...boxes.slice(best + 1)]
  }
  const palette: [number, number, number][] = []
  const indexOf = new Map<number, number>()
  boxes.forEach((box, bi) => {
    let r = 0
    let g = 0
    let b = 0
    let w = 0
    for (const c of box) {
      const k = counts.get(c) ?? 0
      r += ch(c, 0) * k
      g += ch(c, 1) * k
      b += ch(c, 2) * k
      w += k
      indexOf.set(c, bi)
    }
    palette.push([Math.round(r / w), Math.round(g / w), Math.round(b / w)])
  })
  const indices = new Uint16Array(n)
  for (let i = 0; i < n; i++) {
    const o = i * 4
    indices[i] = indexOf.get((img.data[o] << 16) | (img.data[o + 1] << 8) | img.data[o + 2]) ?? 0
  }
  return { palette, indices }
}

/** `c` repeated `n` times, run-length encoded the sixel way (`!n` from 4 on). */
function run(c: string, n: number): string {
  return n >= 4 ? `!${n}${c}` : c.repeat(n)
}

export function encodeSixel(img: Rgba): string {
  const { palette, indices } = quantize(img)
  const { width, height } = img
  const pct = (v: number) => Math.round((v * 100) / 255)
  let out = `\x1bP0;1;0q"1;1;${width};${height}`
  palette.forEach(([r, g, b], i) => {
    out += `#${i};2;${pct(r)};${pct(g)};${pct(b)}`
  })
  for (let top = 0; top < height; top += 6) {
    const rows = Math.min(6, height - top)
    // Which colours appear in this band, in palette order (deterministic output).
    const used = new Set<number>()
    for (let y = top; y < top + rows; y++)
      for (let x = 0; x < width; x++) used.add(indices[y * width + x])
    const layers: string[] = []
    for (const color of [...used].sort((a, b) => a - b)) {
      let line = `#${color}`
      let prev = ''
      let count = 0
      for (let x = 0; x < width; x++) {
        let bits = 0
        for (let k = 0; k < rows; k++) if (indices[(top + k) * width + x] === color) bits |= 1 << k
        const c = String.fromCharCode(63 + bits)
        if (c === prev) count++
        else {
          if (count) line += run(prev, count)
          prev = c
          count = 1
        }
      }
      // Trailing empty sixels draw nothing: leave them out.
      if (prev !== '?') line += run(prev, count)
      layers.push(line)
    }
    out += `${layers.join('$')}${top + 6 < height ? '-' : ''}`
  }
  return `${out}\x1b\\`
}
