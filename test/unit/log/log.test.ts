import { describe, expect, it } from 'vitest'
import {
  createEntry,
  entryVerificationCount,
  forgetVerifiedEntries,
} from '../../../src/log/entry.js'
import { AUTH_PENDING_CODE } from '../../../src/log/log.js'
import { compareEntries, type EntryId, jobLogId, MESH_LOG } from '../../../src/log/types.js'
import { RmeshError } from '../../../src/util/errors.js'
import { cidOf } from '../../../src/util/hash.js'
import { newNode, newSigner, record, signRaw } from './helpers.js'

const log = jobLogId('j')
const sa = await newSigner()
const sb = await newSigner()

describe('log manager', () => {
  it('appends with Lamport clocks over the heads and joins on another replica', async () => {
    const a = newNode(sa)
    const b = newNode(sb)
    const e1 = await a.log.append(log, 'announce', { n: 1 })
    const e2 = await a.log.append(log, 'claim', { n: 2 })
    expect([e1.clock, e2.clock]).toEqual([1, 2])
    expect(e2.next).toEqual([e1.id])
    expect(e1.tok).toBe('tok-test')
    const r = await b.log.join([e2.bytes, e1.bytes])
    expect(r.added.map((e) => e.id)).toEqual([e1.id, e2.id])
    expect(r.rejected).toEqual([])
    const e3 = await b.log.append(log, 'claim', {})
    expect(e3.clock).toBe(3)
    expect(await b.log.heads(log)).toEqual([e3.id])
    expect(await b.log.logs()).toEqual([log])
    expect((await b.log.get(e1.id))?.body).toEqual({ n: 1 })
    expect(await b.log.has(e2.id)).toBe(true)
    const again = await b.log.join(e1.bytes)
    expect(again.duplicates).toBe(1)
    expect(again.added).toEqual([])
  })

  it('holds entries with missing parents, reports them, and releases them parents first', async () => {
    const a = newNode(sa)
    const b = newNode(sb)
    const seen = record(b.log)
    const e1 = await a.log.append(log, 'announce', 1)
    const e2 = await a.log.append(log, 'claim', 2)
    const e3 = await a.log.append(log, 'claim', 3)
    const r1 = await b.log.join(e3.bytes)
    expect(r1.pending).toBe(1)
    expect(r1.missing).toEqual([e2.id])
    const r2 = await b.log.join(e2.bytes)
    expect(r2.missing).toEqual([e1.id])
    expect(b.log.missing()).toEqual([e1.id])
    const r3 = await b.log.join(e1.bytes)
    expect(r3.added.map((e) => e.id)).toEqual([e1.id, e2.id, e3.id])
    expect(seen.map((e) => e.id)).toEqual([e1.id, e2.id, e3.id])
    expect(await b.log.heads(log)).toEqual([e3.id])
    expect(b.log.pendingCount).toBe(0)
  })

  it('merges concurrent heads and folds in the total order', async () => {
    const a = newNode(sa)
    const b = newNode(sb)
    const x = await a.log.append(log, 'announce', 0)
    await b.log.join(x.bytes)
    const ya = await a.log.append(log, 'claim', 'a')
    const yb = await b.log.append(log, 'claim', 'b')
    await a.log.join(yb.bytes)
    await b.log.join(ya.bytes)
    expect((await a.log.heads(log)).sort()).toEqual([ya.id, yb.id].sort())
    const m = await a.log.append(log, 'claim', 'merge')
    expect(m.clock).toBe(3)
    expect([...m.next].sort()).toEqual([ya.id, yb.id].sort())
    await b.log.join(m.bytes)
    const fa = (await a.log.entries(log)).map((e) => e.id)
    const fb = (await b.log.entries(log)).map((e) => e.id)
    expect(fa).toEqual(fb)
    expect(fa).toEqual([x, ya, yb, m].sort(compareEntries).map((e) => e.id))
  })

  it('rejects clocks that go backwards, parents in other logs, and unknown kinds', async () => {
    const a = newNode(sa)
    const b = newNode(sb, {}, { kinds: ['announce', 'claim', 'seal'] })
    const e1 = await a.log.append(log, 'announce', 1)
    const e2 = await a.log.append(log, 'claim', 2)
    await b.log.join([e1.bytes, e2.bytes])
    const back = await createEntry(sa, {
      log,
      kind: 'claim',
      body: 0,
      clock: 2,
      next: [e2.id],
      wall: 0,
      tok: '',
    })
    const equal = await createEntry(sa, {
      log,
      kind: 'claim',
      body: 0,
      clock: 1,
      next: [e1.id],
      wall: 0,
      tok: '',
    })
    const cross = await createEntry(sa, {
      log: MESH_LOG,
      kind: 'claim',
      body: 0,
      clock: 9,
      next: [e1.id],
      wall: 0,
      tok: '',
    })
    const unknown = await createEntry(sa, {
      log,
      kind: 'frobnicate',
      body: 0,
      clock: 9,
      next: [e2.id],
      wall: 0,
      tok: '',
    })
    const r = await b.log.join([back.bytes, equal.bytes, cross.bytes, unknown.bytes])
    expect(r.rejected.map((x) => x.error.code).sort()).toEqual(
      ['ERR_ENTRY_CLOCK', 'ERR_ENTRY_CLOCK', 'ERR_ENTRY_PARENT', 'ERR_ENTRY_KIND'].sort(),
    )
    expect(await b.log.heads(log)).toEqual([e2.id])
    expect(await b.log.heads(MESH_LOG)).toEqual([])
  })

  it('rejects a pending child whose parent turns out to have a greater clock (no cycles)', async () => {
    const a = newNode(sa)
    const b = newNode(sb)
    const p = await a.log.append(log, 'announce', 1)
    const hi = await createEntry(sa, {
      log,
      kind: 'claim',
      body: 0,
      clock: 50,
      next: [p.id],
      wall: 0,
      tok: '',
    })
    const lo = await createEntry(sa, {
      log,
      kind: 'claim',
      body: 0,
      clock: 10,
      next: [hi.id],
      wall: 0,
      tok: '',
    })
    const r = await b.log.join([lo.bytes, hi.bytes, p.bytes])
    expect(r.added.map((e) => e.id)).toEqual([p.id, hi.id])
    expect(r.rejected.map((x) => [x.id, x.error.code])).toEqual([[lo.id, 'ERR_ENTRY_CLOCK']])
  })

  it('never throws for garbage and reports each bad input', async () => {
    const b = newNode(sb)
    const good = await createEntry(sa, {
      log,
      kind: 'announce',
      body: 1,
      clock: 1,
      next: [],
      wall: 0,
      tok: '',
    })
    const bad = new Uint8Array(good.bytes)
    bad[bad.length - 2] ^= 0xff
    const unsigned = await signRaw(sb, [1, log, 'claim', 0, 1, sa.peerId, 0, [], ''])
    const r = await b.log.join([
      new Uint8Array([1, 2, 3]),
      bad,
      unsigned,
      good.bytes,
      new Uint8Array(70_000),
    ])
    expect(r.rejected.map((x) => x.error.code)).toEqual([
      'ERR_ENTRY_MALFORMED',
      'ERR_ENTRY_SIGNATURE',
      'ERR_ENTRY_SIGNATURE',
      'ERR_ENTRY_TOO_LARGE',
    ])
    expect(r.added.map((e) => e.id)).toEqual([good.id])
  })

  it('applies the authorization hook and retries entries whose token is not known yet', async () => {
    let known = false
    const b = newNode(sb, {
      authorize: async (e) => {
        if (e.body === 'deny') throw new RmeshError('ERR_CAPABILITY', 'no capability')
        if (!known) throw new RmeshError(AUTH_PENDING_CODE, 'token not known yet')
      },
    })
    const a = newNode(sa)
    const e1 = await a.log.append(log, 'announce', 'ok')
    const e2 = await a.log.append(log, 'claim', 'ok')
    const r = await b.log.join([e1.bytes, e2.bytes])
    expect(r.pending).toBeGreaterThanOrEqual(1)
    expect(r.added).toEqual([])
    expect((await b.log.join(e1.bytes)).duplicates).toBe(1)
    known = true
    const rr = await b.log.retryPending()
    expect(rr.added.map((e) => e.id)).toEqual([e1.id, e2.id])
    const denied = await a.log.append(log, 'claim', 'deny')
    const rd = await b.log.join(denied.bytes)
    expect(rd.rejected[0].error.code).toBe('ERR_ENTRY_UNAUTHORIZED')
    await expect(b.log.append(log, 'claim', 'deny')).rejects.toMatchObject({
      code: 'ERR_ENTRY_UNAUTHORIZED',
    })
  })

  it('bounds the pending set', async () => {
    const b = newNode(sb, {}, { maxPendingEntries: 5 })
    const ghosts = Array.from({ length: 20 }, (_, i) => cidOf(new Uint8Array([i])) as EntryId)
    const orphans = await Promise.all(
      ghosts.map((g, i) =>
        createEntry(sa, { log, kind: 'claim', body: i, clock: 5, next: [g], wall: 0, tok: '' }),
      ),
    )
    const r = await b.log.join(orphans.map((o) => o.bytes))
    expect(r.added).toEqual([])
    expect(b.log.pendingCount).toBe(5)
    expect(b.log.missing().length).toBe(5)
  })

  it('verifies a signature once per node: a copy of a stored entry is skipped before verify', async () => {
    const a = newNode(sa)
    const b = newNode(sb)
    const entries = [await a.log.append(log, 'claim', { n: 1 })]
    entries.push(await a.log.append(log, 'claim', { n: 2 }))
    const copies = () => entries.map((e) => new Uint8Array(e.bytes))
    forgetVerifiedEntries()
    const before = entryVerificationCount()
    expect((await b.log.join(copies())).added).toHaveLength(2)
    expect(entryVerificationCount() - before).toBe(2)
    forgetVerifiedEntries() // as if the id cache had long been evicted
    const again = await b.log.join(copies())
    expect(again.duplicates).toBe(2)
    expect(await b.log.validate(copies()[0])).toBeUndefined()
    expect(entryVerificationCount() - before).toBe(2)
    // A forged copy of a stored id cannot exist (the id is the hash of the bytes), and a
    // fresh entry with a bad signature is still refused.
    const bad = copies()[1]
    bad[bad.length - 1] ^= 1
    await expect(b.log.validate(bad)).rejects.toMatchObject({ code: 'ERR_ENTRY_SIGNATURE' })
    expect((await b.log.join([bad])).rejected).toHaveLength(1)
  })

  it('serialises concurrent appends to one log', async () => {
    const a = newNode(sa)
    const all = await Promise.all(
      Array.from({ length: 20 }, (_, i) => a.log.append(log, 'claim', i)),
    )
    expect(all.map((e) => e.clock)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1))
    expect(await a.log.heads(log)).toEqual([all[19].id])
  })
})

describe('seal', () => {
  it('replaces the entries it covers, keeps descendants, and ignores late old entries', async () => {
    const a = newNode(sa)
    const b = newNode(sb)
    const c = newNode(await newSigner())
    const olds = []
    for (let i = 0; i < 5; i++) olds.push(await a.log.append(log, 'claim', i))
    const s = await a.log.seal(log, { final: true })
    expect(s.kind).toBe('seal')
    expect(await a.log.heads(log)).toEqual([s.id])
    expect((await a.log.entries(log)).map((e) => e.id)).toEqual([s.id])
    expect(await a.store.listEntryIds(log)).toEqual([s.id])
    const after = await a.log.append(log, 'ack', {})
    // A replica that never saw the old entries needs only the seal and what follows.
    const r = await b.log.join([after.bytes, s.bytes])
    expect(r.added.map((e) => e.id)).toEqual([s.id, after.id])
    expect(r.missing).toEqual([])
    const late = await b.log.join(olds.map((e) => e.bytes))
    expect(late.added).toEqual([])
    expect(late.missing).toEqual([])
    expect(late.ignored).toBe(5)
    const entries = await b.log.entries(log)
    expect(entries[0].id).toBe(s.id)
    expect(entries[0].body).toEqual({ final: true })
    // A replica that saw everything in another order converges to the same content.
    await c.log.join([olds[0].bytes, olds[3].bytes, olds[1].bytes, olds[2].bytes, olds[4].bytes])
    await c.log.join([s.bytes, after.bytes])
    expect((await c.log.entries(log)).map((e) => e.id)).toEqual([s.id, after.id])
    expect(await c.log.heads(log)).toEqual([after.id])
  })

  it('drops entries concurrent with the seal and resolves concurrent seals deterministically', async () => {
    const a = newNode(sa)
    const b = newNode(sb)
    const base = await a.log.append(log, 'announce', 0)
    await b.log.join(base.bytes)
    const sA = await a.log.seal(log, 'A')
    const xB = await b.log.append(log, 'claim', 'concurrent')
    const sB = await b.log.seal(log, 'B')
    await a.log.join([xB.bytes, sB.bytes])
    await b.log.join(sA.bytes)
    const winner = [sA, sB].sort(compareEntries)[1]
    expect(await a.log.heads(log)).toEqual([winner.id])
    expect(await b.log.heads(log)).toEqual([winner.id])
  })
  it('with a one-log seal cache, a seal evicted by another log still covers late old entries', async () => {
    const a = newNode(sa)
    const b = newNode(sb, {}, { cachedSeals: 1, cachedLogs: 1 })
    const other = jobLogId('otherjob')
    const olds = [await a.log.append(log, 'claim', 1), await a.log.append(log, 'claim', 2)]
    const s1 = await a.log.seal(log, 'one')
    const s2 = await a.log.seal(other, 'two')
    await b.log.join([s1.bytes, s2.bytes])
    // The second seal evicted the first from the cache: the store still answers.
    const late = await b.log.join(olds.map((e) => e.bytes))
    expect(late.added).toEqual([])
    expect(late.ignored).toBe(2)
    expect((await b.log.entries(log)).map((e) => e.id)).toEqual([s1.id])
  })

  it('reports its bounded caches, each at or below its bound', async () => {
    const a = newNode(sa, {}, { maxDroppedIds: 5, cachedSeals: 2, cachedLogs: 2 })
    for (let j = 0; j < 4; j++) {
      const l = jobLogId(`cache-${j}`)
      for (let i = 0; i < 4; i++) await a.log.append(l, 'claim', { i })
      await a.log.seal(l, { j })
    }
    const caches = Object.fromEntries(a.log.caches().map((c) => [c.name, c]))
    expect(Object.keys(caches).sort()).toEqual([
      'dropped-ids',
      'entry-meta',
      'log-heads',
      'logs',
      'seals',
      'verified-ids',
    ])
    expect(caches['dropped-ids']).toEqual({ name: 'dropped-ids', size: 5, capacity: 5 })
    expect(caches.seals.size).toBeLessThanOrEqual(2)
    expect(caches.logs.size).toBeLessThanOrEqual(2)
    expect(caches['log-heads'].size).toBeLessThanOrEqual(2)
    for (const c of Object.values(caches)) expect(c.size).toBeLessThanOrEqual(c.capacity)
  })
})
