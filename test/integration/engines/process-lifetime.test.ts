/**
 * A render never outlives its daemon: an engine process started by a daemon that is then
 * SIGKILLed (no exit hook runs) is killed by the kernel (limits.ts: setpriv --pdeathsig).
 * The stand-in daemon is a Node process running the built src/engines/process.js.
 */
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { REPO_ROOT } from '../../helpers/daemons.js'

const processJs = join(REPO_ROOT, 'dist', 'src', 'engines', 'process.js')

/** Alive and not a zombie waiting for its reaper. */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}

describe('an engine process dies with its daemon', () => {
  it.skipIf(process.platform !== 'linux' || !existsSync('/usr/bin/setpriv'))(
    'is killed by the kernel when the process that started it is SIGKILLed',
    async () => {
      const script = `
        const { startProcess } = await import(${JSON.stringify(processJs)})
        startProcess({ file: 'sleep', args: ['30'], onSpawn: (pid) => console.log('PID', pid) })
        setInterval(() => {}, 1000)`
      const parent = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      const pid = await new Promise<number>((resolve, reject) => {
        parent.stdout.on('data', (d: Buffer) => {
          const m = /PID (\d+)/.exec(String(d))
          if (m) resolve(Number(m[1]))
        })
        parent.on('exit', () => reject(new Error('the stand-in daemon exited early')))
      })
      expect(alive(pid)).toBe(true)
      parent.kill('SIGKILL')
      const deadline = Date.now() + 3_000
      while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      expect(alive(pid)).toBe(false)
    },
  )
})
