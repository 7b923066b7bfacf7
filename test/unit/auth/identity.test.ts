import { generateKeyPair } from '@libp2p/crypto/keys'
import { describe, expect, it } from 'vitest'
import {
  PUBLIC_KEY_CACHE_MAX,
  publicKeyCacheFill,
  signerFor,
  verifyByPeerId,
  verifyByRawKey,
} from '../../../src/auth/identity.js'

const data = new TextEncoder().encode('rmesh identity test')

describe('node identity signatures (cached node:crypto keys)', () => {
  it('signs exactly as libp2p does and verifies what libp2p verifies', async () => {
    const key = await generateKeyPair('Ed25519')
    const signer = signerFor(key)
    const sig = await signer.sign(data)
    // Ed25519 is deterministic: the same key and message give the same signature.
    expect(sig).toEqual(new Uint8Array(await key.sign(data)))
    expect(await key.publicKey.verify(data, sig)).toBe(true)
    expect(await verifyByPeerId(signer.peerId, data, sig)).toBe(true)
    expect(await verifyByRawKey(key.publicKey.raw, data, sig)).toBe(true)
  })

  it('answers false, never throws, for anything malformed or wrong', async () => {
    const key = await generateKeyPair('Ed25519')
    const other = signerFor(await generateKeyPair('Ed25519'))
    const sig = await signerFor(key).sign(data)
    const flipped = new Uint8Array(sig)
    flipped[0] ^= 1
    const pid = signerFor(key).peerId
    expect(await verifyByPeerId(pid, data, flipped)).toBe(false)
    expect(await verifyByPeerId(pid, data.subarray(1), sig)).toBe(false)
    expect(await verifyByPeerId(other.peerId, data, sig)).toBe(false)
    expect(await verifyByPeerId('not a peer id', data, sig)).toBe(false)
    expect(await verifyByPeerId(pid, data, sig.subarray(0, 63))).toBe(false)
    expect(await verifyByPeerId(pid, data, 'x' as unknown as Uint8Array)).toBe(false)
    expect(await verifyByRawKey(new Uint8Array(31), data, sig)).toBe(false)
    expect(await verifyByRawKey('k' as unknown as Uint8Array, data, sig)).toBe(false)
  })

  it('keeps at most PUBLIC_KEY_CACHE_MAX keys', async () => {
    const key = await generateKeyPair('Ed25519')
    const sig = await signerFor(key).sign(data)
    for (let i = 0; i < 40; i++) {
      const k = await generateKeyPair('Ed25519')
      await verifyByPeerId(signerFor(k).peerId, data, sig)
    }
    const fill = publicKeyCacheFill()
    expect(fill.capacity).toBe(PUBLIC_KEY_CACHE_MAX)
    expect(fill.size).toBeGreaterThan(0)
    expect(fill.size).toBeLessThanOrEqual(PUBLIC_KEY_CACHE_MAX)
  })
})
