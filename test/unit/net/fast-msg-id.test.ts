import { describe, expect, it } from 'vitest'
import { fastMsgId } from '../../../src/net/host.js'

const bytes = (...xs: number[]) => new Uint8Array(xs)

describe('gossipsub fast message id', () => {
  const msg = {
    from: bytes(1, 2, 3),
    seqno: bytes(4, 5),
    data: bytes(6, 7, 8),
    signature: bytes(9),
    key: undefined,
    topic: 'rmesh/log/1.0.0',
  }

  it('is the same for a copy of a message', () => {
    expect(fastMsgId({ ...msg, data: bytes(6, 7, 8) })).toBe(fastMsgId(msg))
  })

  it('differs when any field differs, so a forged copy cannot shadow the genuine one', () => {
    const id = fastMsgId(msg)
    expect(fastMsgId({ ...msg, data: bytes(6, 7, 9) })).not.toBe(id)
    expect(fastMsgId({ ...msg, signature: bytes(8) })).not.toBe(id)
    expect(fastMsgId({ ...msg, seqno: bytes(4, 6) })).not.toBe(id)
    expect(fastMsgId({ ...msg, topic: 'rmesh/have/1.0.0' })).not.toBe(id)
    // The same bytes cut at another field boundary.
    expect(fastMsgId({ ...msg, seqno: bytes(4, 5, 6), data: bytes(7, 8) })).not.toBe(id)
    expect(fastMsgId({ ...msg, signature: undefined })).not.toBe(id)
  })
})
