/**
 * A node's render limits on the real Blender: render threads (`-t`), niceness (`nice`) and
 * an address-space ceiling (`prlimit --as`) are those of the Blender process that renders,
 * and a ceiling too small for Blender fails the render cleanly (an EngineError, no process
 * left), so the chunk is retried elsewhere.
 */
import { readFile } from 'node:fs/promises'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { renderChunk } from '../../../src/engines/blender.js'
import { findOnPath } from '../../../src/engines/process.js'
import { isAlive, never, sceneCache } from './helpers.js'

const skip =
  (await findOnPath('blender')).length === 0 || (await findOnPath('prlimit')).length === 0

describe.skipIf(skip)('blender render limits (real Blender)', { timeout: 120_000 }, () => {
  let scenePath: string
  let root: string
  beforeAll(async () => {
    scenePath = (await sceneCache()).scenePath
    root = await mkdtemp(join(tmpdir(), 'rmesh-limits-it-'))
  }, 120_000)

  it('threads, niceness and memory ceiling are the rendering process’s own', async () => {
    const blender = (await findOnPath('blender'))[0]
    let seen: { nice: number; as: string; comm: string } | undefined
    let probing: Promise<void> | undefined
    const result = await renderChunk(
      { blender, limits: { threads: 1, nice: 7, memoryMiB: 4096 } },
      { scenePath, frames: [1], workDir: join(root, 'ok'), format: 'PNG', params: {} },
      {
        signal: never(),
        onSpawn: (pid) => {
          // The wrappers exec Blender in the same pid: look once it is Blender.
          probing = (async () => {
            for (let i = 0; i < 200 && !seen; i++) {
              const comm = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim()
              if (comm.startsWith('blender')) {
                const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
                const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
                const limits = await readFile(`/proc/${pid}/limits`, 'utf8')
                seen = {
                  comm,
                  nice: Number(fields[16]),
                  as: /Max address space\s+(\S+)/.exec(limits)?.[1] ?? '',
                }
              }
              await new Promise((r) => setTimeout(r, 10))
            }
          })()
        },
      },
    )
    await probing
    expect(result.outputs).toHaveLength(1)
    expect(seen).toMatchObject({ nice: 7, as: String(4096 * 1024 * 1024) })
    const log = await readFile(result.logPath, 'utf8')
    expect(log.split('\n')[0]).toMatch(/ -t 1 -b /)
  })

  it('a ceiling too small for Blender fails the render with an engine error, nothing left running', async () => {
    const blender = (await findOnPath('blender'))[0]
    let pid: number | undefined
    const err = await renderChunk(
      { blender, limits: { memoryMiB: 256 } },
      { scenePath, frames: [1], workDir: join(root, 'small'), format: 'PNG', params: {} },
      { signal: never(), onSpawn: (p) => (pid = p) },
    ).catch((e) => e)
    expect(err).toMatchObject({ name: 'EngineError' })
    expect(['ERR_RENDER_FAILED', 'ERR_SCENE_INVALID']).toContain(err.code)
    expect(err.message).toMatch(/256 MiB.*rmesh node limits --memory/)
    expect(pid !== undefined && isAlive(pid)).toBe(false)
  })
})
