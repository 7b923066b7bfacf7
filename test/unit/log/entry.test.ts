import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createEntry, decodeEntry, MAX_ENTRY_BYTES } from '../../../src/log/entry.js'
import { EntryError } from '../../../src/log/errors.js'
import { type EntryId, jobLogId, type LogId, MESH_LOG } from '../../../src/log/types.js'
import { encode } from '../../../src/util/cbor.js'
import { cidOf } from '../../../src/util/hash.js'
import { newSigner, signRaw } from './helpers.js'

const signer = await newSigner()
const other = await newSigner()
const log = jobLogId('j1')
const fields = {
  log,
  kind: 'announce',
  body: { frames: [1, 2] },
  clock: 1,
  next: [],
  wall: 5,
  tok: 't',
}

function payload(over: Partial<Record<string, unknown>> = {}): unknown[] {
  const f = {
    v: 1,
    log,
    kind: 'claim',
    body: null,
    clock: 3,
    author: signer.peerId,
    wall: 1,
    next: [],
    tok: '',
    ...over,
  }
  return [f.v, f.log, f.kind, f.body, f.clock, f.author, f.wall, f.next, f.tok]
}

async function codeOf(bytes: Uint8Array): Promise<string> {
  try {
    await decodeEntry(bytes)
    return 'ok'
  } catch (err) {
    expect(err).toBeInstanceOf(EntryError)
    return (err as EntryError).code
  }
}

describe('log entry', () => {
  it('round-trips and its id is the CID of the exact bytes', async () => {
    const e = await createEntry(signer, fields)
    expect(e.id).toBe(cidOf(e.bytes))
    const d = await decodeEntry(e.bytes)
    expect(d).toMatchObject({
      id: e.id,
      log,
      kind: 'announce',
      body: { frames: [1, 2] },
      clock: 1,
      author: signer.peerId,
    })
    expect(d.bytes).toEqual(e.bytes)
  })

  it('rejects a tampered signature, truncated bytes and oversized entries', async () => {
    const e = await createEntry(signer, fields)
    const t = new Uint8Array(e.bytes)
    t[t.length - 1] ^= 1
    expect(await codeOf(t)).toBe('ERR_ENTRY_SIGNATURE')
    for (let n = 0; n < e.bytes.length; n += 7)
      expect(await codeOf(e.bytes.subarray(0, n))).toBe('ERR_ENTRY_MALFORMED')
    expect(await codeOf(new Uint8Array(MAX_ENTRY_BYTES + 1))).toBe('ERR_ENTRY_TOO_LARGE')
    await expect(
      createEntry(signer, { ...fields, body: 'x'.repeat(MAX_ENTRY_BYTES) }),
    ).rejects.toMatchObject({
      code: 'ERR_ENTRY_TOO_LARGE',
    })
  })

  it('rejects a signature by someone else than the author', async () => {
    const bytes = await signRaw(other, payload())
    expect(await codeOf(bytes)).toBe('ERR_ENTRY_SIGNATURE')
  })

  it('rejects bad schemas with typed errors', async () => {
    const cases: Array<[Partial<Record<string, unknown>>, string]> = [
      [{ v: 2 }, 'ERR_ENTRY_VERSION'],
      [{ v: 'x' }, 'ERR_ENTRY_MALFORMED'],
      [{ log: 'jobs/x' }, 'ERR_ENTRY_MALFORMED'],
      [{ log: 'job/' }, 'ERR_ENTRY_MALFORMED'],
      [{ kind: 'Claim' }, 'ERR_ENTRY_MALFORMED'],
      [{ kind: 'a'.repeat(40) }, 'ERR_ENTRY_MALFORMED'],
      [{ clock: -1 }, 'ERR_ENTRY_MALFORMED'],
      [{ clock: 1.5 }, 'ERR_ENTRY_MALFORMED'],
      [{ clock: 2 ** 60 }, 'ERR_ENTRY_MALFORMED'],
      [{ author: 42 }, 'ERR_ENTRY_MALFORMED'],
      [{ wall: 'now' }, 'ERR_ENTRY_MALFORMED'],
      [{ next: ['not-a-cid'] }, 'ERR_ENTRY_MALFORMED'],
      [{ next: 'x' }, 'ERR_ENTRY_MALFORMED'],
      [
        { next: Array.from({ length: 65 }, (_, i) => cidOf(new Uint8Array([i]))) },
        'ERR_ENTRY_MALFORMED',
      ],
      [{ next: [cidOf(new Uint8Array([1])), cidOf(new Uint8Array([1]))] }, 'ERR_ENTRY_MALFORMED'],
      [{ tok: 7 }, 'ERR_ENTRY_MALFORMED'],
    ]
    for (const [over, code] of cases)
      expect([over, await codeOf(await signRaw(signer, payload(over)))]).toEqual([over, code])
    expect(await codeOf(await signRaw(signer, payload({ log: MESH_LOG, kind: 'revoke' })))).toBe(
      'ok',
    )
    expect(await codeOf(encode([1, 2]))).toBe('ERR_ENTRY_MALFORMED')
    expect(await codeOf(encode([encode([1, 2, 3]), new Uint8Array(64)]))).toBe(
      'ERR_ENTRY_MALFORMED',
    )
    expect(await codeOf(encode([encode(payload()), new Uint8Array(10)]))).toBe(
      'ERR_ENTRY_MALFORMED',
    )
  })

  it('survives arbitrary garbage with typed errors only', async () => {
    const good = await createEntry(signer, fields)
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc
            .tuple(fc.nat(good.bytes.length - 1), fc.integer({ min: 1, max: 255 }))
            .map(([i, x]) => {
              const b = new Uint8Array(good.bytes)
              b[i] ^= x
              return b
            }),
        ),
        async (bytes) => {
          const code = await codeOf(bytes)
          expect(code).not.toBe('ok')
        },
      ),
      { numRuns: 300 },
    )
  })

  it('sorts and de-duplicates next when creating', async () => {
    const a = cidOf(new Uint8Array([1])) as EntryId
    const b = cidOf(new Uint8Array([2])) as EntryId
    const e = await createEntry(signer, {
      ...fields,
      log: 'mesh' as LogId,
      next: [b, a, b],
      clock: 2,
    })
    expect(e.next).toEqual([a, b].sort())
  })
})
