import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { cidFromDigest, cidOf, isCidString, sha256 } from '../../../src/util/hash.js'

describe('cidOf', () => {
  it('is the multiformats CIDv1 (raw, sha2-256) string of the digest', () => {
    for (let i = 0; i < 300; i++) {
      const bytes = randomBytes(i)
      const id = cidOf(bytes)
      expect(id).toBe(cidFromDigest(sha256(bytes)).toString())
      expect(isCidString(id)).toBe(true)
    }
  })
})
