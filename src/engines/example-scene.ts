/**
 * The example scene, built by examples/make-scene.py on first use and cached, so no
 * binary .blend lives in git. The cache key includes the script's hash: editing the
 * script rebuilds the scene. Concurrent callers in one process share one build; across
 * processes the build goes to a temporary folder that is renamed into place.
 */
import { existsSync } from 'node:fs'
import { mkdir, readFile, rename, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sha256 } from '../util/hash.js'
import { startProcess } from './process.js'
import { EngineError } from './types.js'

export interface ExampleScene {
  dir: string
  scenePath: string
  texturePath: string
}

/** examples/make-scene.py, found from this module whether it runs from src/ or dist/. */
export function makeSceneScriptPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 6; i++) {
    const p = join(dir, 'examples', 'make-scene.py')
    if (existsSync(p)) return p
    dir = dirname(dir)
  }
  throw new EngineError('ERR_ENGINE_NOT_FOUND', 'examples/make-scene.py not found next to rmesh')
}

const building = new Map<string, Promise<ExampleScene>>()

/** Builds (once) and returns the example scene; `dir` defaults to a cache in the OS temp dir. */
export function ensureExampleScene(
  dir?: string,
  options: { blender?: string } = {},
): Promise<ExampleScene> {
  const key = `${dir ?? ''}|${options.blender ?? ''}`
  let p = building.get(key)
  if (!p) {
    p = build(dir, options.blender ?? 'blender')
    building.set(key, p)
    p.catch(() => building.delete(key))
  }
  return p
}

async function build(dir: string | undefined, blender: string): Promise<ExampleScene> {
  const script = makeSceneScriptPath()
  const hash = Buffer.from(sha256(await readFile(script)))
    .toString('hex')
    .slice(0, 16)
  const target = resolve(dir ?? join(tmpdir(), 'rmesh-example-scene'), hash)
  const scene: ExampleScene = {
    dir: target,
    scenePath: join(target, 'example.blend'),
    texturePath: join(target, 'texture.png'),
  }
  if (existsSync(scene.scenePath) && existsSync(scene.texturePath)) return scene
  const staging = `${target}.tmp-${process.pid}-${Date.now()}`
  await mkdir(staging, { recursive: true })
  const run = startProcess({
    file: blender,
    args: [
      '-b',
      '--factory-startup',
      '--python-exit-code',
      '3',
      '--python',
      script,
      '--',
      join(staging, 'example.blend'),
    ],
    timeoutMs: 120_000,
  })
  const outcome = await run.done
  if (outcome.exitCode !== 0 || !existsSync(join(staging, 'example.blend'))) {
    await rm(staging, { recursive: true, force: true })
    throw new EngineError('ERR_RENDER_FAILED', 'could not build the example scene with Blender', {
      cause: outcome.spawnError,
      details: { exitCode: outcome.exitCode, logTail: outcome.tail },
    })
  }
  await mkdir(dirname(target), { recursive: true })
  try {
    await rename(staging, target)
  } catch {
    // Another process won the race; its scene is identical.
    await rm(staging, { recursive: true, force: true })
  }
  return scene
}
