import { describe, expect, it } from 'vitest'
import {
  buildArgs,
  loadTemplateEngines,
  parseTemplateEngines,
  type TemplateEngineDecl,
  validateTemplateParams,
} from '../../../src/engines/template.js'
import { isEngineError } from '../../../src/engines/types.js'

const base = {
  name: 'thumb',
  extensions: ['png'],
  command: 'ffmpeg',
  args: ['-i', '{scene}', '-vf', 'scale={width}:-2', '-metadata', 'title={title}', '{output}'],
  params: {
    width: { type: 'natural', default: 64, min: 16, max: 4096 },
    title: { type: 'sentence', required: false },
    mode: { type: 'regex', pattern: 'fast|slow', default: 'fast' },
    lut: { type: 'file', required: false },
    ext: { type: 'extension', required: false },
    tag: { type: 'word', required: false },
    gain: { type: 'real', required: false },
    shift: { type: 'integer', required: false },
    sub: { type: 'path', required: false },
  },
}

function decl(over: Record<string, unknown> = {}): TemplateEngineDecl {
  return parseTemplateEngines([{ ...base, ...over }])[0]
}

function code(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return isEngineError(err) ? err.code : `untyped: ${String(err)}`
  }
  return undefined
}

describe('template engine config', () => {
  it('loads the example declarations', async () => {
    const url = new URL('../../../examples/engines.json', import.meta.url)
    const decls = await loadTemplateEngines(url.pathname)
    expect(decls.map((d) => d.name)).toEqual(['ffmpeg-still', 'magick-resize'])
    // a template string is split before substitution: the sentence stays one argument
    const magick = decls[1]
    const params = validateTemplateParams(magick, { comment: 'two words' })
    const args = buildArgs(magick, params, {
      scene: '/j/a.png',
      frame: 1,
      output: '/w/f.png',
      workDir: '/w',
    })
    expect(args).toEqual(['/j/a.png', '-resize', '50%', '-set', 'comment', 'two words', '/w/f.png'])
  })

  it.each([
    [{ name: 'Bad Name' }],
    [{ name: 'blender' }],
    [{ extensions: [] }],
    [{ command: 'bin/ffmpeg' }],
    [{ args: ['{scene}'] }],
    [{ args: ['{nope}', '{output}'] }],
    [{ params: { w: { type: 'nat' } } }],
    [{ params: { w: { type: 'regex', pattern: '(' } } }],
    [{ params: { w: { type: 'natural', default: -1 } } }],
    [{ params: { w: { type: 'word', min: 1 } } }],
    [{ params: { frame: { type: 'natural' } } }],
    [{ surprise: true }],
    [{ version: { args: [], pattern: '(' } }],
  ])('rejects a bad declaration %j with ERR_ENGINE_CONFIG', (over) => {
    expect(code(() => decl(over))).toBe('ERR_ENGINE_CONFIG')
  })

  it('rejects garbage configs', () => {
    for (const junk of [null, 1, 'x', { engines: 3 }, [null], [[]], [{ ...base }, { ...base }]]) {
      expect(code(() => parseTemplateEngines(junk))).toBe('ERR_ENGINE_CONFIG')
    }
  })

  it('rejects a file that is not JSON', async () => {
    const err = await loadTemplateEngines(new URL(import.meta.url).pathname).catch((e) => e)
    expect(isEngineError(err, 'ERR_ENGINE_CONFIG')).toBe(true)
  })
})

describe('template params', () => {
  const d = decl()

  it('applies defaults and coerces numbers', () => {
    expect(validateTemplateParams(d, { width: '128', gain: '1.5', shift: -3 })).toEqual({
      width: 128,
      mode: 'fast',
      gain: 1.5,
      shift: -3,
    })
  })

  it.each([
    [{ width: -5 }],
    [{ width: 8 }],
    [{ width: 1.5 }],
    [{ width: '12abc' }],
    [{ width: 1e300 }],
    [{ mode: 'medium' }],
    [{ mode: '-fast' }],
    [{ lut: '../etc/passwd' }],
    [{ lut: '/etc/passwd' }],
    [{ lut: '-rf' }],
    [{ sub: 'a//b' }],
    [{ ext: 'p.ng' }],
    [{ tag: 'two words' }],
    [{ tag: '-x' }],
    [{ title: 'line\nbreak' }],
    [{ title: '-o' }],
    [{ title: 'x'.repeat(2000) }],
    [{ gain: 'NaN' }],
    [{ shift: 'ten' }],
    [{ unknown: 1 }],
    [{ title: 5 }],
  ])('refuses %j with ERR_ENGINE_PARAMS', (params) => {
    expect(code(() => validateTemplateParams(d, params))).toBe('ERR_ENGINE_PARAMS')
  })

  it('refuses non-object params', () => {
    for (const junk of ['x', 3, [1]])
      expect(code(() => validateTemplateParams(d, junk))).toBe('ERR_ENGINE_PARAMS')
  })

  it('requires parameters without defaults', () => {
    const req = decl({ params: { q: { type: 'natural' } }, args: ['{q}', '{output}'] })
    expect(code(() => validateTemplateParams(req, {}))).toBe('ERR_ENGINE_PARAMS')
  })

  it('substitutes inside argv items, never splitting values', () => {
    const p = validateTemplateParams(d, {
      width: 100,
      title: 'a "quoted" ; rm -rf /',
      lut: 'luts/x.cube',
    })
    const args = buildArgs(d, p, {
      scene: '/job/s.png',
      frame: 3,
      output: '/w/frame_00003.png',
      workDir: '/w',
    })
    expect(args).toEqual([
      '-i',
      '/job/s.png',
      '-vf',
      'scale=100:-2',
      '-metadata',
      'title=a "quoted" ; rm -rf /',
      '/w/frame_00003.png',
    ])
  })
})
