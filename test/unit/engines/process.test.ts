import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { startProcess } from '../../../src/engines/process.js'

describe('engine processes: the render log', () => {
  const dirs: string[] = []
  afterAll(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })))
  })

  it('appends every output line to the log', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rmesh-proc-'))
    dirs.push(dir)
    const logPath = join(dir, 'render.log')
    const run = startProcess({
      file: process.execPath,
      args: ['-e', 'console.log("one"); console.error("two")'],
      logPath,
    })
    const outcome = await run.done
    expect(outcome.exitCode).toBe(0)
    const lines = (await readFile(logPath, 'utf8')).split('\n').filter(Boolean).sort()
    expect(lines).toEqual(['one', 'two'])
  })

  it('a log that cannot be written (full disk, folder gone) does not throw: the process runs on', async () => {
    // An unwritable log emits 'error' on its stream; unhandled, that would take the whole
    // daemon down in the middle of a render.
    const run = startProcess({
      file: process.execPath,
      args: ['-e', 'for (let i = 0; i < 100; i++) console.log("line " + i)'],
      logPath: join(tmpdir(), 'rmesh-no-such-folder', 'deeper', 'render.log'),
    })
    const outcome = await run.done
    expect(outcome.exitCode).toBe(0)
    expect(outcome.tail.at(-1)).toBe('line 99')
  })
})
