// The dependency tracer's listing is checked before use (src/engines/blender-deps.ts).
import { describe, expect, it } from 'vitest'
import { parseTrace, traceScript } from '../../../src/engines/blender-deps.js'
import { isEngineError } from '../../../src/engines/types.js'

const good = {
  scene: '/p/a.blend',
  refs: [
    {
      kind: 'image',
      name: 'wood',
      owner: null,
      path: '//tex/wood.<UDIM>.png',
      absPath: '/p/tex/wood.<UDIM>.png',
      key: 'tex/wood.<UDIM>.png',
      mode: 'udim',
      files: ['/p/tex/wood.1001.png'],
      missing: ['/p/tex/wood.1002.png'],
    },
  ],
}

describe('dependency listing', () => {
  it('accepts a well-formed listing', () => {
    expect(parseTrace(JSON.stringify(good))).toEqual(good)
  })

  it('refuses garbage with ERR_SCENE_INVALID', () => {
    const r = good.refs[0]
    for (const bad of [
      'not json',
      'null',
      '[]',
      JSON.stringify({ scene: 1, refs: [] }),
      JSON.stringify({ scene: '/p', refs: {} }),
      JSON.stringify({ ...good, refs: [{ ...r, mode: 'weird' }] }),
      JSON.stringify({ ...good, refs: [{ ...r, files: [1] }] }),
      JSON.stringify({ ...good, refs: [{ ...r, path: 'a\u0000b' }] }),
      JSON.stringify({ ...good, refs: [{ ...r, owner: 5 }] }),
      JSON.stringify({ ...good, refs: [null] }),
    ]) {
      let caught: unknown
      try {
        parseTrace(bad)
      } catch (err) {
        caught = err
      }
      expect(isEngineError(caught, 'ERR_SCENE_INVALID'), bad.slice(0, 60)).toBe(true)
    }
  })

  it('passes its options as data, never as code', () => {
    const s = traceScript("/tmp/x'); import os; os.system('boom", '/p')
    expect(s).not.toContain("os.system('boom\n")
    expect(s).toContain('json.loads(')
  })
})
