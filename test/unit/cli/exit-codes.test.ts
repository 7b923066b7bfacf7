// Exit codes are stable for scripts: errors map by their code (cli/exit-codes.ts).
import { describe, expect, it } from 'vitest'
import { EXIT, exitCodeFor } from '../../../cli/exit-codes.js'
import { EngineError } from '../../../src/engines/types.js'
import { RmeshError } from '../../../src/util/errors.js'

describe('exit codes', () => {
  it('a bad scene is bad input (2): not a .blend, or files it uses are missing', () => {
    expect(exitCodeFor(new EngineError('ERR_SCENE_INVALID', 'x is not a Blender file'))).toBe(
      EXIT.USAGE,
    )
    expect(exitCodeFor(new RmeshError('ERR_SCENE_MISSING_ASSET', 'missing'))).toBe(EXIT.USAGE)
    expect(exitCodeFor(new RmeshError('ERR_INVALID_INPUT', 'bad'))).toBe(EXIT.USAGE)
  })

  it('maps the rest by code, unknown codes and non-errors to a daemon error (7)', () => {
    expect(exitCodeFor(new RmeshError('ERR_NOT_FOUND', 'x'))).toBe(EXIT.NOT_FOUND)
    expect(exitCodeFor(new RmeshError('ERR_FORBIDDEN', 'x'))).toBe(EXIT.NOT_ADMITTED)
    expect(exitCodeFor(new RmeshError('ERR_RENDER_FAILED', 'x'))).toBe(EXIT.DAEMON_ERROR)
    expect(exitCodeFor(new Error('plain'))).toBe(EXIT.DAEMON_ERROR)
  })
})
