/**
 * Escape sequences that draw an image in a terminal: the kitty graphics protocol, iTerm2's
 * inline images (OSC 1337, also WezTerm and others) and sixel (./sixel.ts), and the cursor
 * moves that put one at a cell of the dashboard. Pure string builders; no I/O.
 *
 * Invariants: every sequence is complete and self-terminated (APC/OSC/DCS … ST or BEL), so
 * a terminal that does not know it skips it; kitty payloads are sent in chunks of at most
 * 4096 base64 bytes (the protocol's limit) and with q=2 (the terminal answers nothing: an
 * answer would arrive on stdin, which Ink reads as keys); placement never moves the text
 * cursor (kitty C=1; the others inside DECSC/DECRC).
 */
import { decodePng, fitRgba } from './png.js'
import { encodeSixel } from './sixel.js'

export type ImageProtocol = 'kitty' | 'iterm' | 'sixel'
export const IMAGE_MODES = ['auto', 'kitty', 'iterm', 'sixel', 'off'] as const
export type ImageMode = (typeof IMAGE_MODES)[number]

/** Cell size in pixels assumed for sixel (terminals do not tell without a query on stdin). */
export interface CellPx {
  width: number
  height: number
}
export const DEFAULT_CELL_PX: CellPx = { width: 8, height: 16 }

const ESC = '\x1b'
const ST = `${ESC}\\`
const KITTY_CHUNK = 4096

export function kittyTransmit(id: number, png: Uint8Array): string {
  const b64 = Buffer.from(png).toString('base64')
  const parts: string[] = []
  for (let i = 0; i < b64.length || i === 0; i += KITTY_CHUNK) {
    const more = i + KITTY_CHUNK < b64.length ? 1 : 0
    const keys = i === 0 ? `a=t,f=100,t=d,i=${id},q=2,m=${more}` : `m=${more}`
    parts.push(`${ESC}_G${keys};${b64.slice(i, i + KITTY_CHUNK)}${ST}`)
  }
  return parts.join('')
}

/** Shows image `id` at the cursor over cols × rows cells (placement 1: a new one replaces it). */
export function kittyPlace(id: number, cols: number, rows: number): string {
  return `${ESC}_Ga=p,i=${id},p=1,c=${cols},r=${rows},C=1,q=2${ST}`
}

/** Deletes image `id`, its placements and its data. */
export function kittyDelete(id: number): string {
  return `${ESC}_Ga=d,d=I,i=${id},q=2${ST}`
}

export function itermImage(bytes: Uint8Array, cols: number, rows: number): string {
  const b64 = Buffer.from(bytes).toString('base64')
  return `${ESC}]1337;File=inline=1;size=${bytes.length};width=${cols};height=${rows};preserveAspectRatio=1:${b64}\x07`
}

/**
 * `seq` drawn at (row, col) of a frame `frameRows` high whose last line ends just above the
 * cursor (where Ink leaves it), the cursor saved and restored around it.
 */
export function atCell(seq: string, row: number, col: number, frameRows: number): string {
  const up = frameRows - row
  return `${ESC}7${up > 0 ? `${ESC}[${up}A` : ''}\r${col > 0 ? `${ESC}[${col}C` : ''}${seq}${ESC}8`
}

/** The cells an image of w × h pixels covers inside cols × rows, keeping its aspect. */
export function fitCells(
  w: number,
  h: number,
  cols: number,
  rows: number,
  cell: CellPx = DEFAULT_CELL_PX,
): { cols: number; rows: number } {
  const scale = Math.min((cols * cell.width) / w, (rows * cell.height) / h)
  return {
    cols: Math.max(1, Math.min(cols, Math.round((w * scale) / cell.width))),
    rows: Math.max(1, Math.min(rows, Math.round((h * scale) / cell.height))),
  }
}

export interface PreparedImage {
  /** Sent once when the image changes (kitty: the data; others: nothing). */
  setup: string
  /** Drawn at the cursor after every frame Ink writes. */
  draw: string
  /** Sent when the image goes away (kitty: delete it). */
  teardown: string
  cols: number
  rows: number
}

/**
 * The sequences that show a PNG in a box of cols × rows cells with `protocol`. Throws a
 * DecodeError for a PNG it cannot read (the caller shows no image).
 */
export function prepareImage(
  protocol: ImageProtocol,
  png: Uint8Array,
  cols: number,
  rows: number,
  o: { id?: number; cell?: CellPx } = {},
): PreparedImage {
  const img = decodePng(png)
  const cell = o.cell ?? DEFAULT_CELL_PX
  const fit = fitCells(img.width, img.height, cols, rows, cell)
  if (protocol === 'kitty') {
    const id = o.id ?? 1
    return {
      setup: kittyTransmit(id, png),
      draw: kittyPlace(id, fit.cols, fit.rows),
      teardown: kittyDelete(id),
      ...fit,
    }
  }
  if (protocol === 'iterm')
    return { setup: '', draw: itermImage(png, fit.cols, fit.rows), teardown: '', ...fit }
  const px = fitRgba(img, fit.cols * cell.width, fit.rows * cell.height)
  return { setup: '', draw: encodeSixel(px), teardown: '', ...fit }
}
