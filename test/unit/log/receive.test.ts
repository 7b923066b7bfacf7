/**
 * The receiver path per entry: a copy of an entry this node holds is recognised by its
 * hash before it is decoded; two copies checked at once share one Ed25519 verification;
 * the size is still checked first and garbage still gets typed errors.
 */
import { describe, expect, it } from 'vitest'
import {
  entryIdOf,
  entryVerificationCount,
  forgetVerifiedEntries,
  MAX_ENTRY_BYTES,
  readEntry,
} from '../../../src/log/entry.js'
import { jobLogId } from '../../../src/log/types.js'
import { newNode, newSigner } from './helpers.js'

const log = jobLogId('r')
const sa = await newSigner()
const sb = await newSigner()

describe('receiving entries', () => {
  it('entryIdOf checks the size first and names the same id as a decode', async () => {
    const a = newNode(sa)
    const e = await a.log.append(log, 'claim', { n: 1 })
    expect(entryIdOf(new Uint8Array(e.bytes))).toBe(e.id)
    expect(() => entryIdOf(new Uint8Array(MAX_ENTRY_BYTES + 1))).toThrow(
      expect.objectContaining({ code: 'ERR_ENTRY_TOO_LARGE' }),
    )
    expect(() => entryIdOf('garbage' as unknown as Uint8Array)).toThrow(
      expect.objectContaining({ code: 'ERR_ENTRY_MALFORMED' }),
    )
  })

  it('a copy of a held entry is skipped before decoding, by join and by validate', async () => {
    const a = newNode(sa)
    const b = newNode(sb)
    const e = await a.log.append(log, 'claim', { n: 1 })
    expect((await b.log.join(e.bytes)).added).toHaveLength(1)
    forgetVerifiedEntries()
    const before = entryVerificationCount()
    const again = await b.log.join([new Uint8Array(e.bytes), new Uint8Array(e.bytes)])
    expect(again.duplicates).toBe(2)
    expect(again.rejected).toEqual([])
    expect(await b.log.validate(new Uint8Array(e.bytes))).toBeUndefined()
    expect(entryVerificationCount()).toBe(before)
    // Garbage beside a copy is still refused with typed errors, the copy still skipped.
    const r = await b.log.join([
      new Uint8Array(e.bytes),
      new Uint8Array([0xff, 1]),
      new Uint8Array(70_000),
    ])
    expect(r.duplicates).toBe(1)
    expect(r.rejected.map((x) => x.error.code)).toEqual([
      'ERR_ENTRY_MALFORMED',
      'ERR_ENTRY_TOO_LARGE',
    ])
  })

  it('two copies checked at once cost one verification, and a bad one fails both', async () => {
    const a = newNode(sa)
    const e = await a.log.append(log, 'claim', { n: 2 })
    forgetVerifiedEntries()
    const before = entryVerificationCount()
    const [x, y] = await Promise.all([
      readEntry(new Uint8Array(e.bytes)).verify(),
      readEntry(new Uint8Array(e.bytes)).verify(),
    ])
    expect([x.id, y.id]).toEqual([e.id, e.id])
    expect(entryVerificationCount() - before).toBe(1)
    const bad = new Uint8Array(e.bytes)
    bad[bad.length - 1] ^= 1
    const both = await Promise.allSettled([
      readEntry(new Uint8Array(bad)).verify(),
      readEntry(new Uint8Array(bad)).verify(),
    ])
    expect(both.map((r) => r.status)).toEqual(['rejected', 'rejected'])
    expect(entryVerificationCount() - before).toBe(2)
  })
})
