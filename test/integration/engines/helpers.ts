// Shared helpers for the engine integration tests (real Blender and ffmpeg).
import { execa } from 'execa'
import { ensureExampleScene } from '../../../src/engines/example-scene.js'

export const sceneCache = () => ensureExampleScene(process.env.RMESH_TEST_CACHE)

/** Decoded pixels of an image as raw RGB24, via ffmpeg (no image package needed). */
export async function rgb24(path: string): Promise<Buffer> {
  const r = await execa(
    'ffmpeg',
    ['-v', 'error', '-i', path, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'],
    {
      encoding: 'buffer',
    },
  )
  return Buffer.from(r.stdout)
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

export const never = () => new AbortController().signal
