import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { jobLogId, type EntryId } from '../../../src/log/types.js'
import {
  decodeFrame,
  decodeGossip,
  encodeFrame,
  encodeGossip,
  MAX_FRAME_BYTES,
  SyncProtocolError,
} from '../../../src/sync/messages.js'
import { encode } from '../../../src/util/cbor.js'
import { cidOf } from '../../../src/util/hash.js'

const id = cidOf(new Uint8Array([1])) as EntryId

describe('log sync messages', () => {
  it('round-trips every frame', () => {
    const frames = [
      { t: 'heads', logs: [[jobLogId('a'), [id]]] },
      { t: 'entries', entries: [new Uint8Array([1, 2])] },
      { t: 'offer', log: jobLogId('a'), ids: [id] },
      { t: 'want', ids: [id] },
      { t: 'ack' },
      { t: 'end' },
    ] as const
    for (const f of frames) expect(decodeFrame(encodeFrame(f as never))).toEqual(f)
    expect(decodeGossip(encodeGossip([new Uint8Array([9])]))).toEqual([new Uint8Array([9])])
  })

  it('refuses garbage with SyncProtocolError only', () => {
    const bad = [
      encode(['heads', [['nope', [id]]]]),
      encode(['heads', [[jobLogId('a'), ['x']]]]),
      encode(['entries', ['not bytes']]),
      encode(['entries', [new Uint8Array(70_000)]]),
      encode(['want', [1]]),
      encode(['offer', 'bad log', []]),
      encode(['bogus']),
      encode({ t: 'end' }),
      new Uint8Array(MAX_FRAME_BYTES + 1),
    ]
    for (const b of bad) expect(() => decodeFrame(b)).toThrow(SyncProtocolError)
    for (const g of [encode([]), encode([1]), encode('x'), new Uint8Array(2 << 20)]) {
      expect(() => decodeGossip(g)).toThrow(SyncProtocolError)
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        for (const fn of [decodeFrame, decodeGossip]) {
          try {
            fn(b)
          } catch (err) {
            expect(err).toBeInstanceOf(SyncProtocolError)
          }
        }
      }),
      { numRuns: 500 },
    )
  })
})
