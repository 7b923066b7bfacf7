import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { jobLogId, type EntryId, type PeerIdString } from '../../../src/log/types.js'
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
const author = '12D3KooWHxJuh4QRDXZ5zwUxuwf8tSrALqBERUcBD9vWZVdZ4kAp' as PeerIdString
const range = { author, max: 7, count: 3, fp: new Uint8Array(16).fill(2) }

describe('log sync messages', () => {
  it('round-trips every frame', () => {
    const frames = [
      { t: 'heads', logs: [[jobLogId('a'), [id]]] },
      { t: 'entries', entries: [new Uint8Array([1, 2])] },
      { t: 'summary', log: jobLogId('a'), seal: null, authors: [range] },
      { t: 'summary', log: jobLogId('a'), seal: { id, clock: 4, author }, authors: [] },
      { t: 'ranges', log: jobLogId('a'), ranges: [range, { ...range, max: -1, count: 0 }] },
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
      encode(['want', [id]]), // v1 frames are gone
      encode(['offer', jobLogId('a'), [id]]),
      encode(['summary', 'bad log', null, []]),
      encode(['summary', jobLogId('a'), 'seal', []]),
      encode(['summary', jobLogId('a'), [id, -1, author], []]),
      encode(['summary', jobLogId('a'), null, [[author, 1, 1]]]),
      encode(['summary', jobLogId('a'), null, [['not/an author', 1, 1, range.fp]]]),
      encode(['summary', jobLogId('a'), null, [[author, -2, 1, range.fp]]]),
      encode(['summary', jobLogId('a'), null, [[author, 1.5, 1, range.fp]]]),
      encode(['summary', jobLogId('a'), null, [[author, 1, -1, range.fp]]]),
      encode(['summary', jobLogId('a'), null, [[author, 1, 1, new Uint8Array(15)]]]),
      encode(['summary', jobLogId('a'), null, Array(4097).fill([author, 1, 1, range.fp])]),
      encode(['ranges', jobLogId('a')]),
      encode(['ranges', jobLogId('a'), [[author, 1, 1, 'fp']]]),
      encode(['ranges', jobLogId('a'), { author }]),
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
