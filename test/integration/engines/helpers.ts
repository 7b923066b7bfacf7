// Shared helpers for the engine integration tests (real Blender and ffmpeg).
import { chmod, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
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

/**
 * A fake second Blender for tests, named as such (`<releasesDir>/blender-wrapper-<version>/blender`):
 * it answers `--version` with `Blender <version>` and execs the real one otherwise; with
 * `marker`, each render it runs (`-f` in its arguments) appends a line there.
 */
export async function writeBlenderWrapper(
  releasesDir: string,
  version: string,
  real: string,
  marker?: string,
): Promise<string> {
  const dir = join(releasesDir, `blender-wrapper-${version}`)
  await mkdir(dir, { recursive: true })
  const path = join(dir, 'blender')
  const mark = marker ? `case " $* " in *" -f "*) echo "render -f" >> '${marker}' ;; esac\n` : ''
  await writeFile(
    path,
    `#!/bin/sh\n# A test wrapper standing for Blender ${version}: not a real release.\nif [ "$1" = "--version" ]; then echo "Blender ${version}"; exit 0; fi\n${mark}exec '${real}' "$@"\n`,
  )
  await chmod(path, 0o755)
  return path
}
