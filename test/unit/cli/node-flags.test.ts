import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../../cli/local-mesh.js'
import { packageRoot } from '../../../src/version.js'

describe("the daemon's V8 flags and environment", () => {
  const bin = join(packageRoot(), 'bin', 'rmesh.js')
  it('are the same on the #! line of bin/rmesh.js as where daemons are spawned', () => {
    const shebang = readFileSync(bin, 'utf8').split('\n')[0]
    const env = Object.entries(DAEMON_ENV).map(([k, v]) => `${k}=${v} `)
    expect(shebang).toBe(`#!/usr/bin/env -S ${env.join('')}node ${DAEMON_NODE_FLAGS.join(' ')}`)
  })
  it('are flags this Node accepts', () => {
    const out = execFileSync(process.execPath, [
      ...DAEMON_NODE_FLAGS,
      '-e',
      'process.stdout.write("ok")',
    ])
    expect(String(out)).toBe('ok')
  })
})
