import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { cidFromDigest, cidOf, isCidString, parseCid, sha256 } from '../../../src/util/hash.js'

describe('cidOf', () => {
  it('is the multiformats CIDv1 (raw, sha2-256) string of the digest', () => {
    for (let i = 0; i < 300; i++) {
      const bytes = randomBytes(i)
      const id = cidOf(bytes)
      expect(id).toBe(cidFromDigest(sha256(bytes)).toString())
      expect(isCidString(id)).toBe(true)
    }
  })

  it('isCidString accepts what CID.parse accepts, fast for the raw sha2-256 form', () => {
    const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
    const parses = (t: string) => {
      try {
        parseCid(t)
        return true
      } catch {
        return false
      }
    }
    for (let i = 0; i < 2000; i++) {
      const id = cidOf(randomBytes(8))
      // Change one character: valid or not, isCidString must agree with the parser.
      const at = 7 + (i % 52)
      const t = id.slice(0, at) + alphabet[i % 32] + id.slice(at + 1)
      expect(isCidString(t)).toBe(parses(t))
    }
    expect(isCidString(cidOf(new Uint8Array()).toUpperCase())).toBe(false)
    expect(isCidString('bafkrei')).toBe(false)
  })
})
