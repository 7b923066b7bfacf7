/** The log-sync 2.0.0 frames and fingerprint match protocols/vectors/sync/frames.json. */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { EntryId } from '../../../src/log/types.js'
import { decodeFrame, encodeFrame, type Frame } from '../../../src/sync/messages.js'
import { fingerprint } from '../../../src/sync/summary.js'
import { packageRoot } from '../../../src/version.js'

const vectors = JSON.parse(
  readFileSync(join(packageRoot(), 'protocols', 'vectors', 'sync', 'frames.json'), 'utf8'),
)

/** JSON → frame: {"hex": ...} objects are byte strings. */
function revive(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(revive)
  if (x && typeof x === 'object') {
    const o = x as Record<string, unknown>
    if (typeof o.hex === 'string' && Object.keys(o).length === 1)
      return new Uint8Array(Buffer.from(o.hex, 'hex'))
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, revive(v)]))
  }
  return x
}

describe('log-sync 2.0.0 vectors', () => {
  it('fingerprints', () => {
    const ids = (vectors.fingerprint.ids as string[]).map((id) => ({ id: id as EntryId }))
    expect(Buffer.from(fingerprint(ids)).toString('hex')).toBe(vectors.fingerprint.hex)
    expect(Buffer.from(fingerprint([])).toString('hex')).toBe(vectors.fingerprint.empty)
  })

  it('every frame encodes to its bytes and decodes back', () => {
    expect(vectors.frames.length).toBeGreaterThanOrEqual(7)
    for (const v of vectors.frames) {
      const frame = revive(v.value) as Frame
      expect(Buffer.from(encodeFrame(frame)).toString('hex'), v.description).toBe(v.hex)
      expect(decodeFrame(new Uint8Array(Buffer.from(v.hex, 'hex'))), v.description).toEqual(frame)
    }
  })
})
