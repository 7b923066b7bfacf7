/**
 * Is this file a complete image of the format we asked for? Engines judge success by
 * their output files, not by exit codes (Blender exits 0 after some errors), so this
 * checks the signature and, where the format has one, the end marker: a truncated write
 * is not a frame.
 */
import { open, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { FORMAT_EXTENSION, type OutputFormat } from './types.js'

const PNG_SIG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]
const JPEG_SIG = [0xff, 0xd8, 0xff]
const EXR_SIG = [0x76, 0x2f, 0x31, 0x01]

function startsWith(buf: Uint8Array, sig: number[]): boolean {
  return sig.every((b, i) => buf[i] === b)
}

/** Pure check on a file's first and last bytes. */
export function checkImageBytes(head: Uint8Array, tail: Uint8Array, format: OutputFormat): boolean {
  switch (format) {
    case 'PNG': {
      if (!startsWith(head, PNG_SIG)) return false
      // The last chunk is IEND: 4 length bytes, 'IEND', 4 CRC bytes.
      const t = tail.subarray(tail.length - 8, tail.length - 4)
      return String.fromCharCode(...t) === 'IEND'
    }
    case 'JPEG':
      return (
        startsWith(head, JPEG_SIG) &&
        tail[tail.length - 2] === 0xff &&
        tail[tail.length - 1] === 0xd9
      )
    case 'OPEN_EXR':
      return startsWith(head, EXR_SIG)
  }
}

/** True when `path` exists, is non-empty and is a complete image of `format`. */
export async function isValidImage(path: string, format: OutputFormat): Promise<boolean> {
  try {
    const st = await stat(path)
    if (!st.isFile() || st.size < 16) return false
    const fh = await open(path, 'r')
    try {
      const head = new Uint8Array(16)
      await fh.read(head, 0, 16, 0)
      const tail = new Uint8Array(16)
      await fh.read(tail, 0, 16, st.size - 16)
      return checkImageBytes(head, tail, format)
    } finally {
      await fh.close()
    }
  } catch {
    return false
  }
}

/** The file an engine writes for `frame` (Blender's `workDir/frame_#####` numbering). */
export function frameOutputPath(workDir: string, frame: number, format: OutputFormat): string {
  return framePath(workDir, frame, FORMAT_EXTENSION[format])
}

export function framePath(workDir: string, frame: number, extension: string): string {
  return join(workDir, `frame_${String(frame).padStart(5, '0')}.${extension}`)
}

/** The image format written with this extension, if `isValidImage` can check it. */
export function formatOfExtension(extension: string): OutputFormat | undefined {
  const e = extension.toLowerCase()
  if (e === 'jpeg') return 'JPEG'
  return (Object.keys(FORMAT_EXTENSION) as OutputFormat[]).find((f) => FORMAT_EXTENSION[f] === e)
}
