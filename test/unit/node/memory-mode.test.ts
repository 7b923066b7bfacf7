import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  createMemoryMode,
  MEMORY_SAVER_FLAG,
  NO_MEMORY_SAVER_FLAG,
} from '../../../src/node/memory-mode.js'
import { REPO_ROOT } from '../../helpers/daemons.js'

describe('memory mode (V8 memory saver at rest)', () => {
  it('tells V8 only on a change: memory at rest, speed at work', () => {
    const told: string[] = []
    const m = createMemoryMode({ setFlags: (f) => told.push(f) })
    expect(m.current()).toBeUndefined()
    m.atRest(true)
    m.atRest(true)
    expect(told).toEqual([MEMORY_SAVER_FLAG])
    expect(m.current()).toBe('memory')
    m.atRest(false)
    m.atRest(false)
    m.atRest(true)
    expect(told).toEqual([MEMORY_SAVER_FLAG, NO_MEMORY_SAVER_FLAG, MEMORY_SAVER_FLAG])
  })

  it('a flag V8 refuses is logged once and then left alone, never thrown', () => {
    const warnings: string[] = []
    const logger = { warn: (msg: string) => warnings.push(msg) } as never
    let calls = 0
    const m = createMemoryMode({
      logger,
      setFlags: () => {
        calls++
        throw new Error('frozen flags')
      },
    })
    expect(() => m.atRest(true)).not.toThrow()
    m.atRest(false)
    m.atRest(true)
    expect(calls).toBe(1)
    expect(warnings).toHaveLength(1)
    expect(m.current()).toBeUndefined()
  })

  it('this Node accepts the flag at run time, both ways, with no warning', () => {
    // A fresh process, with V8's own setter: a Node that froze its flags after start-up
    // would abort here rather than throw.
    const helper = JSON.stringify(join(REPO_ROOT, 'dist', 'src', 'node', 'memory-mode.js'))
    const script = `
      const { createMemoryMode } = await import(${helper})
      const m = createMemoryMode({ logger: { warn: (msg) => { throw new Error(msg) } } })
      m.atRest(true)
      globalThis.keep = Array.from({ length: 100_000 }, (_, i) => ({ i }))
      m.atRest(false)
      console.log(m.current())`
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
    })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout.trim()).toBe('speed')
    expect(r.stderr).toBe('')
  })
})
