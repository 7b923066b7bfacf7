import { describe, expect, it } from 'vitest'
import { jobLogId } from '../../../src/log/types.js'
import { answerRanges, fingerprint, rangesToRequest, summarize } from '../../../src/sync/summary.js'
import { newNode, newSigner } from '../log/helpers.js'

const log = jobLogId('s')

describe('per-author summaries and ranges', () => {
  it('asks for exactly what follows its prefix of each author', async () => {
    const sa = await newSigner()
    const sb = await newSigner()
    const a = newNode(sa)
    const b = newNode(sb)
    const shared = [await a.log.append(log, 'claim', { n: 0 })]
    for (let i = 1; i < 6; i++) shared.push(await a.log.append(log, 'claim', { n: i }))
    await b.log.join(shared.slice(0, 3).map((e) => e.bytes))
    const own = await b.log.append(log, 'claim', { b: 1 }) // B holds something A lacks
    const summary = summarize(log, await a.log.entries(log))
    expect(summary.authors).toHaveLength(1)
    expect(summary.authors[0]).toMatchObject({ author: sa.peerId, max: 6, count: 6 })
    const wanted = rangesToRequest(await b.log.entries(log), summary)
    expect(wanted).toEqual([
      { author: sa.peerId, max: 3, count: 3, fp: fingerprint(shared.slice(0, 3)) },
    ])
    const sent = answerRanges(await a.log.entries(log), wanted)
    expect(sent.map((e) => e.id)).toEqual(shared.slice(3).map((e) => e.id))
    // B's own entry is not in A's summary: B is not asked about it, A pulls it later.
    expect(sent.some((e) => e.id === own.id)).toBe(false)
  })

  it('sends all of a forked author (two entries at one clock): more bytes, nothing missed', async () => {
    const s = await newSigner() // one key on two machines: an author that forks
    const a = newNode(s)
    const b = newNode(s)
    const a1 = await a.log.append(log, 'claim', { a: 1 })
    const b1 = await b.log.append(log, 'claim', { b: 1 })
    const b2 = await b.log.append(log, 'claim', { b: 2 })
    expect([a1.clock, b1.clock]).toEqual([1, 1])
    const wanted = rangesToRequest(
      await a.log.entries(log),
      summarize(log, await b.log.entries(log)),
    )
    expect(wanted).toEqual([{ author: s.peerId, max: 1, count: 1, fp: fingerprint([a1]) }])
    const sent = answerRanges(await b.log.entries(log), wanted)
    expect(sent.map((e) => e.id)).toEqual([b1.id, b2.id])
    await a.log.join(sent.map((e) => e.bytes))
    expect((await a.log.entries(log)).length).toBe(3)
    // A request for an author the holder does not know, or a garbled one, costs nothing.
    expect(
      answerRanges(await b.log.entries(log), [{ ...wanted[0], author: 'x' as never }]),
    ).toEqual([])
    const garbled = answerRanges(await b.log.entries(log), [{ ...wanted[0], max: 99, count: 0 }])
    expect(garbled.map((e) => e.id)).toEqual([b1.id, b2.id])
  })

  it('a newer seal asks for all of the sealed log; an older one asks for nothing', async () => {
    const s = await newSigner()
    const a = newNode(s)
    const b = newNode(await newSigner())
    const e1 = await a.log.append(log, 'claim', { n: 1 })
    await b.log.join(e1.bytes)
    await a.log.seal(log, { done: true })
    const after = await a.log.append(log, 'claim', { n: 2 })
    const wanted = rangesToRequest(
      await b.log.entries(log),
      summarize(log, await a.log.entries(log)),
    )
    expect(wanted.every((r) => r.max === -1 && r.count === 0)).toBe(true)
    await b.log.join(answerRanges(await a.log.entries(log), wanted).map((e) => e.bytes))
    expect((await b.log.entries(log)).map((e) => e.id)).toEqual(
      (await a.log.entries(log)).map((e) => e.id),
    )
    expect(await b.log.has(after.id)).toBe(true)
    const c = newNode(await newSigner())
    await c.log.join(e1.bytes)
    expect(
      rangesToRequest(await a.log.entries(log), summarize(log, await c.log.entries(log))),
    ).toEqual([])
  })
})
