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

describe('engine processes: failures are outcomes, never crashes', () => {
  it('a child that cannot start (missing working folder) reports spawnError, no exit code', async () => {
    const outcome = await startProcess({
      file: process.execPath,
      args: ['-e', ''],
      cwd: join(tmpdir(), 'rmesh-no-such-folder-for-cwd'),
    }).done
    expect(outcome.spawnError).toBeInstanceOf(Error)
    expect((outcome.spawnError as NodeJS.ErrnoException).code).toBe('ENOENT')
    expect(outcome.exitCode).toBeUndefined()
  })

  it('writing to a child that closed its stdin (EPIPE) does not throw', async () => {
    const run = startProcess({
      file: process.execPath,
      args: ['-e', 'require("node:fs").closeSync(0); setTimeout(() => {}, 400)'],
      stdin: true,
    })
    await new Promise((r) => setTimeout(r, 200))
    run.write('x'.repeat(1 << 20))
    const outcome = await run.done
    expect(outcome.exitCode).toBe(0)
  })

  it('decodes UTF-8 split across reads and reports a signal with no exit code', async () => {
    const lines: string[] = []
    const run = startProcess({
      file: process.execPath,
      args: [
        '-e',
        'const b = Buffer.from("héllo wörld\\n"); process.stdout.write(b.subarray(0, 2)); setTimeout(() => { process.stdout.write(b.subarray(2)); setTimeout(() => {}, 10000) }, 50)',
      ],
      onLine: (l) => {
        lines.push(l)
        run.kill()
      },
    })
    const outcome = await run.done
    expect(lines).toEqual(['héllo wörld'])
    expect(outcome.canceled).toBe(true)
    expect(outcome.exitCode).toBeUndefined()
    expect(outcome.signal).toBe('SIGTERM')
  })
})
