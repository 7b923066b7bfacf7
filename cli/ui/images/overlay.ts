/**
 * Draws one image over the dashboard without breaking Ink. Ink rewrites the whole frame on
 * every change (erasing lines, which also erases sixel and iTerm2 pixels), so the image is
 * drawn again right after each frame Ink writes: Ink is given a proxy of stdout whose write
 * appends the image's sequence to every frame (a write with a newline; cursor-only moves
 * and synchronized-output markers pass untouched). The image goes into a box the layout
 * reserves, placed relative to the line below the frame, where Ink leaves the cursor,
 * inside save/restore cursor, so Ink's idea of the cursor stays true.
 *
 * Invariants: with no image shown the proxy writes exactly what Ink writes (images off
 * changes nothing); one image at a time; teardown (kitty's delete) is sent when it goes.
 */
import { atCell, type PreparedImage } from './protocols.js'

export interface Placement {
  image: PreparedImage
  /** Cell of the box's top-left corner within the frame (0-based). */
  row: number
  col: number
  /** Lines in Ink's frame. */
  frameRows: number
}

export interface ImageOverlay {
  /** Give this to Ink as its stdout. */
  readonly stdout: NodeJS.WriteStream
  show(p: Placement | undefined): void
  close(): void
}

export function createImageOverlay(real: NodeJS.WriteStream): ImageOverlay {
  let current: Placement | undefined
  const write = real.write.bind(real)
  const draw = () => {
    if (current) write(atCell(current.image.draw, current.row, current.col, current.frameRows))
  }
  const proxyWrite = (chunk: unknown, ...rest: unknown[]) => {
    const ok = (write as (...a: unknown[]) => boolean)(chunk, ...rest)
    if (current && typeof chunk === 'string' && chunk.includes('\n')) draw()
    return ok
  }
  const stdout = new Proxy(real, {
    get(target, prop) {
      if (prop === 'write') return proxyWrite
      const v = Reflect.get(target, prop, target)
      return typeof v === 'function' ? v.bind(target) : v
    },
  })
  return {
    stdout,
    show(p) {
      const same =
        p &&
        current &&
        p.image === current.image &&
        p.row === current.row &&
        p.col === current.col &&
        p.frameRows === current.frameRows
      if (same) return
      if (current && current.image !== p?.image && current.image.teardown)
        write(current.image.teardown)
      if (p && p.image !== current?.image && p.image.setup) write(p.image.setup)
      current = p
      draw()
    },
    close() {
      if (current?.image.teardown) write(current.image.teardown)
      current = undefined
    },
  }
}
