import { describe, expect, it } from 'vitest'
import {
  capabilityFor,
  chunkLayout,
  JOB_KINDS,
  newJobId,
  parseBody,
  validateBody,
} from '../../../src/jobs/entries.js'
import { versionSatisfies } from '../../../src/jobs/version.js'
import { isRmeshError } from '../../../src/util/errors.js'
import { announceBody, cid } from './fixtures.js'

describe('job entry bodies', () => {
  it('accepts a valid announce and drops unknown fields', () => {
    const r = validateBody('announce', { ...announceBody(), evil: 'x' })
    expect(r.ok).toBe(true)
    if (r.ok) expect((r.body as unknown as Record<string, unknown>).evil).toBeUndefined()
  })

  it('rejects bad announces with a reason', () => {
    const bad: unknown[] = [
      { ...announceBody(), jobId: 'UPPER123' },
      { ...announceBody(), frames: [] },
      { ...announceBody(), frames: [1, 1] },
      { ...announceBody(), frames: [1.5] },
      { ...announceBody(), frames: new Array(100_001).fill(0).map((_, i) => i) },
      { ...announceBody(), chunkSize: 0 },
      { ...announceBody(), output: { format: 'TIFF' } },
      { ...announceBody(), output: { format: 'PNG', video: 'mpeg2' } },
      // Video options (jobs/video-options.ts): nonsense from a peer never reaches ffmpeg.
      { ...announceBody(), output: { format: 'PNG', video: 'h264', crf: 52 } },
      { ...announceBody(), output: { format: 'PNG', video: 'vp9', crf: -1 } },
      { ...announceBody(), output: { format: 'PNG', video: 'av1', crf: 1.5 } },
      { ...announceBody(), output: { format: 'PNG', crf: 20 } },
      { ...announceBody(), output: { format: 'PNG', video: 'h264', bitDepth: 12 } },
      { ...announceBody(), output: { format: 'PNG', video: 'h264', bitDepth: '10' } },
      { ...announceBody(), output: { format: 'PNG', video: 'h264', bitDepth: 10, hdr: 'hlg' } },
      { ...announceBody(), output: { format: 'OPEN_EXR', video: 'h265', hdr: 'hlg' } },
      { ...announceBody(), output: { format: 'OPEN_EXR', video: 'h265', bitDepth: 10, hdr: 'pq' } },
      { ...announceBody(), output: { format: 'PNG', video: 'h264', passes: 3 } },
      { ...announceBody(), output: { format: 'PNG', video: 'h265', passes: 2 } },
      { ...announceBody(), output: { format: 'PNG', video: 'vp9', crf: 30, bitrateKbps: 900 } },
      { ...announceBody(), output: { format: 'PNG', video: 'vp9', bitrateKbps: 1e9 } },
      { ...announceBody(), output: { format: 'PNG', video: 'h264', frameRate: '0/1' } },
      { ...announceBody(), output: { format: 'PNG', video: 'h264', frameRate: '24/0' } },
      { ...announceBody(), output: { format: 'PNG', video: 'h264', frameRate: '1000' } },
      { ...announceBody(), output: { format: 'PNG', video: 'h264', frameRate: '23.976' } },
      { ...announceBody(), output: { format: 'PNG', video: 'h264', frameRate: 24 } },
      { ...announceBody(), output: { format: 'PNG', video: 'h264', fps: 23.976 } },
      { ...announceBody(), engine: { name: 'Blender; rm -rf' } },
      { ...announceBody(), engine: { name: 'blender', version: 'latest' } },
      { ...announceBody(), scene: { manifest: 'not-a-cid', name: 's', size: 1 } },
      { ...announceBody(), params: { x: { nested: true } } },
      { ...announceBody(), name: 'x'.repeat(201) },
      { ...announceBody(), priority: 1e12 },
      // The file tree (protocols/file-tree.md): garbage in every field.
      { ...announceBody(), files: 'tree' },
      { ...announceBody(), files: [] },
      { ...announceBody(), files: { tree: 'not-a-cid', count: 1, size: 1 } },
      { ...announceBody(), files: { tree: cid('t'), count: 0, size: 1 } },
      { ...announceBody(), files: { tree: cid('t'), count: 100_001, size: 1 } },
      { ...announceBody(), files: { tree: cid('t'), count: 1.5, size: 1 } },
      { ...announceBody(), files: { tree: cid('t'), count: 1, size: -1 } },
      { ...announceBody(), files: { tree: cid('t'), count: 1, size: '9' } },
      { ...announceBody(), files: { tree: cid('t'), count: 1, size: 1, missing: 0 } },
      { ...announceBody(), files: { tree: cid('t'), count: 1, size: 1, missing: true } },
      { ...announceBody(), files: { count: 1, size: 1 } },
    ]
    for (const b of bad) {
      const r = validateBody('announce', b)
      expect(r.ok, JSON.stringify(b).slice(0, 120)).toBe(false)
    }
  })

  it('says why video options are refused, and keeps valid ones', () => {
    const reason = (output: unknown) => {
      const r = validateBody('announce', { ...announceBody(), output })
      return r.ok ? 'ok' : r.reason
    }
    expect(reason({ format: 'PNG', video: 'h264', crf: 52 })).toBe(
      'output.crf: not an integer in [0, 51] for h264',
    )
    expect(reason({ format: 'PNG', video: 'h264', bitDepth: 12 })).toBe(
      'output.bitDepth: not 8 or 10',
    )
    expect(reason({ format: 'PNG', video: 'h264', frameRate: '0/1' })).toMatch(
      /^output\.frameRate: not a frame rate like 25 or 24000\/1001/,
    )
    expect(reason({ format: 'PNG', video: 'h265', bitDepth: 10, hdr: 'hlg' })).toBe(
      'output.hdr: HLG needs linear frames: output.format OPEN_EXR',
    )
    expect(reason({ format: 'PNG', video: 'h264', passes: 2 })).toBe(
      'output.passes: 2 passes of h264 need output.bitrateKbps',
    )
    const hlg = {
      format: 'OPEN_EXR',
      video: 'h265',
      frameRate: '24000/1001',
      crf: 18,
      bitDepth: 10,
      hdr: 'hlg',
    }
    const r = validateBody('announce', { ...announceBody(), output: { ...hlg, pixFmt: 'x' } })
    expect(r.ok && r.body.output).toEqual(hlg)
    expect(reason({ format: 'PNG', video: 'vp9', passes: 2, crf: 40, bitDepth: 10 })).toBe('ok')
  })

  it('keeps a valid file tree reference, and only its known fields', () => {
    const files = { tree: cid('t'), count: 3, size: 1234, missing: 1 }
    const r = validateBody('announce', { ...announceBody(), files: { ...files, path: '/etc' } })
    expect(r.ok && r.body.files).toEqual(files)
    const plain = validateBody('announce', announceBody())
    expect(plain.ok && 'files' in plain.body).toBe(false)
  })

  it('never throws on garbage, for every kind', () => {
    const garbage: unknown[] = [
      null,
      undefined,
      0,
      'x',
      [],
      [1],
      new Uint8Array(3),
      { chunk: -1 },
      { chunk: 'a' },
      { chunk: 0, attempt: 0 },
      { chunks: 'all' },
      { outputs: {} },
      { state: 3 },
      Object.create(null),
    ]
    for (const kind of [...JOB_KINDS, 'bogus']) {
      for (const g of garbage) expect(() => validateBody(kind, g)).not.toThrow()
    }
  })

  it('validates the small bodies', () => {
    expect(validateBody('claim', { chunk: 0, attempt: 1 }).ok).toBe(true)
    expect(validateBody('claim', { chunk: 0, attempt: 0 }).ok).toBe(false)
    expect(
      validateBody('complete', {
        chunk: 0,
        attempt: 1,
        outputs: [{ frame: 1, manifest: cid('o'), size: 1, name: 'a' }],
        renderMs: 5,
      }).ok,
    ).toBe(true)
    expect(
      validateBody('complete', {
        chunk: 0,
        attempt: 1,
        outputs: [{ frame: 1, manifest: 'x', size: 1, name: 'a' }],
        renderMs: 5,
      }).ok,
    ).toBe(false)
    expect(validateBody('fail', { chunk: 0, attempt: 1, reason: 'x'.repeat(1001) }).ok).toBe(false)
    expect(validateBody('retry', {}).ok).toBe(true)
    expect(validateBody('ack', { chunks: [0, 1] }).ok).toBe(true)
    expect(validateBody('cancel', {}).ok).toBe(true)
  })

  it('parseBody throws a typed error', () => {
    try {
      parseBody('claim', { chunk: 'x' })
      expect.unreachable()
    } catch (err) {
      expect(isRmeshError(err, 'ERR_INVALID_INPUT')).toBe(true)
    }
  })

  it('maps kinds to capabilities', () => {
    expect(capabilityFor('job/abcdefgh', 'announce')).toBe('submit')
    expect(capabilityFor('job/abcdefgh', 'seal')).toBe('submit')
    expect(capabilityFor('job/abcdefgh', 'claim')).toBe('render')
    expect(capabilityFor('job/abcdefgh', 'complete')).toBe('render')
    expect(capabilityFor('job/abcdefgh', 'nope')).toBeNull()
    expect(capabilityFor('mesh', 'claim')).toBeNull()
  })

  it('makes short job ids and chunk layouts', () => {
    const id = newJobId((n) => new Uint8Array(n).fill(7))
    expect(validateBody('announce', announceBody({ jobId: id })).ok).toBe(true)
    const layout = chunkLayout({
      frames: [1, 2, 3, 4, 5],
      chunkSize: 2,
      output: { format: 'PNG', video: 'vp9' },
    })
    expect(layout.map((c) => c.frames)).toEqual([[1, 2], [3, 4], [5], [1, 2, 3, 4, 5]])
    expect(layout[3].kind).toBe('encode')
  })

  it('matches engine versions', () => {
    expect(versionSatisfies('3.4.1', '>=3.4')).toBe(true)
    expect(versionSatisfies('3.3.9', '>=3.4')).toBe(false)
    expect(versionSatisfies('4.1.0', '>=3.4 <4')).toBe(false)
    expect(versionSatisfies('3.6.2', '^3.4')).toBe(true)
    expect(versionSatisfies('3.6.2', '~3.4')).toBe(false)
    expect(versionSatisfies('3.4.7', '3.4')).toBe(true)
    expect(versionSatisfies('garbage', '>=1')).toBe(false)
    expect(versionSatisfies('1.0', undefined)).toBe(true)
  })
})
