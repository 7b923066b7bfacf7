/**
 * Group commit of appends (src/log/append.ts): appends issued together are written in one
 * store batch, built one on top of the other, announced in call order and gossiped in one
 * message; a failed batch fails every append of it, leaves the log consistent, and a retry
 * works (memory store with injected faults, and a real LevelDB closed mid-burst).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { afterEach, describe, expect, it } from 'vitest'
import { MAX_GROUP } from '../../../src/log/append.js'
import { createLevelLogStore, createMemoryLogStore, type LogStore } from '../../../src/log/store.js'
import { jobLogId, type LogEntry } from '../../../src/log/types.js'
import type { RmeshLibp2p } from '../../../src/net/host.js'
import { decodeGossip } from '../../../src/sync/messages.js'
import { createLogSync } from '../../../src/sync/sync.js'
import { FakeClock } from '../../../src/util/clock.js'
import { silentLogger } from '../../../src/util/logger.js'
import { newNode, newSigner, record } from './helpers.js'

const log = jobLogId('g')
const signer = await newSigner()

class StoreFault extends Error {
  readonly code = 'ERR_TEST_STORE'
}

/** A memory store counting commits; `fail` makes the next commits throw. */
function faultyStore(): { store: LogStore; commits: () => number; fail: (on: boolean) => void } {
  const inner = createMemoryLogStore()
  let commits = 0
  let failing = false
  return {
    store: {
      ...inner,
      async commit(l, change) {
        commits++
        if (failing) throw new StoreFault('disk gone')
        return inner.commit(l, change)
      },
    },
    commits: () => commits,
    fail: (on) => {
      failing = on
    },
  }
}

/** Every head of the log is a stored entry, and every stored entry id decodes. */
async function consistent(store: LogStore): Promise<void> {
  for (const h of await store.getHeads(log)) expect(await store.hasEntry(h)).toBe(true)
}

const dirs: string[] = []
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

describe('group commit of appends', () => {
  it('two appends without await: one batch, B on top of A, announced A then B', async () => {
    const f = faultyStore()
    const n = newNode(signer, { store: f.store })
    const seen = record(n.log)
    const pa = n.log.append(log, 'claim', { n: 1 })
    const pb = n.log.append(log, 'claim', { n: 2 })
    const [a, b] = await Promise.all([pa, pb])
    expect(f.commits()).toBe(1)
    expect(b.next).toEqual([a.id])
    expect(b.clock).toBeGreaterThan(a.clock)
    expect(seen.map((e) => e.id)).toEqual([a.id, b.id])
    expect(await n.log.heads(log)).toEqual([b.id])
    expect(await f.store.getHeads(log)).toEqual([b.id])
  })

  it('appends issued while a batch is in flight go together in the next batch', async () => {
    const f = faultyStore()
    const n = newNode(signer, { store: f.store })
    const first = n.log.append(log, 'claim', { n: 0 })
    await Promise.resolve() // the first group has started
    const rest = Array.from({ length: 10 }, (_, i) => n.log.append(log, 'claim', { n: i + 1 }))
    const all = await Promise.all([first, ...rest])
    expect(f.commits()).toBeLessThanOrEqual(2)
    for (let i = 1; i < all.length; i++) expect(all[i].next).toEqual([all[i - 1].id])
  })

  it('a burst larger than a group is written in bounded batches, in order', async () => {
    const f = faultyStore()
    const n = newNode(signer, { store: f.store })
    const count = MAX_GROUP * 2 + 3
    const all = await Promise.all(
      Array.from({ length: count }, (_, i) => n.log.append(log, 'claim', { i })),
    )
    expect(f.commits()).toBe(3)
    for (let i = 1; i < all.length; i++) expect(all[i].clock).toBe(all[i - 1].clock + 1)
    expect((await n.log.entries(log)).length).toBe(count)
  })

  it('one refused append fails alone; the next is built as if it had not been called', async () => {
    const f = faultyStore()
    const n = newNode(signer, {
      store: f.store,
      authorize: async (e) => {
        if ((e.body as { bad?: boolean }).bad) throw new Error('not allowed')
      },
    })
    const pa = n.log.append(log, 'claim', { n: 1 })
    const pbad = n.log.append(log, 'claim', { bad: true })
    const pc = n.log.append(log, 'claim', { n: 3 })
    const [a, bad, c] = await Promise.allSettled([pa, pbad, pc])
    expect(a.status).toBe('fulfilled')
    expect(bad.status).toBe('rejected')
    if (bad.status === 'rejected') expect(bad.reason.code).toBe('ERR_ENTRY_UNAUTHORIZED')
    expect(c.status).toBe('fulfilled')
    if (a.status === 'fulfilled' && c.status === 'fulfilled')
      expect(c.value.next).toEqual([a.value.id])
    expect(f.commits()).toBe(1)
  })

  it('a failed batch fails every append of it, leaves the log consistent, and a retry works', async () => {
    const f = faultyStore()
    const n = newNode(signer, { store: f.store })
    const seen = record(n.log)
    const a = await n.log.append(log, 'claim', { n: 0 })
    f.fail(true)
    const burst = await Promise.allSettled(
      [1, 2, 3].map((i) => n.log.append(log, 'claim', { n: i })),
    )
    for (const r of burst) {
      expect(r.status).toBe('rejected')
      if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(StoreFault)
    }
    expect(seen.map((e) => e.id)).toEqual([a.id]) // nothing unwritten was announced
    expect(await n.log.heads(log)).toEqual([a.id])
    await consistent(f.store)
    f.fail(false)
    const [b, c] = await Promise.all([
      n.log.append(log, 'claim', { n: 1 }),
      n.log.append(log, 'claim', { n: 2 }),
    ])
    expect(b.next).toEqual([a.id])
    expect(c.next).toEqual([b.id])
    expect((await n.log.entries(log)).map((e) => e.id)).toEqual([a.id, b.id, c.id])
    await consistent(f.store)
  })

  it('LevelDB closed mid-burst: what resolved is stored, heads name stored entries, a retry works', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rmesh-group-commit-'))
    dirs.push(dir)
    const db = new Level(join(dir, 'db'))
    await db.open()
    const n = newNode(signer, { store: createLevelLogStore(db) })
    await n.log.append(log, 'claim', { n: -1 })
    const burst = Promise.allSettled(
      Array.from({ length: 600 }, (_, i) => n.log.append(log, 'claim', { i })),
    )
    await new Promise((r) => setImmediate(r)) // the first batch is under way
    await db.close()
    const settled = await burst
    const ok = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
    expect(ok.length).toBeLessThan(600) // the close cut the burst
    const db2 = new Level(join(dir, 'db'))
    await db2.open()
    try {
      const store = createLevelLogStore(db2)
      await consistent(store)
      for (const e of ok) expect(await store.hasEntry(e.id)).toBe(true)
      const again = newNode(signer, { store })
      const heads = await again.log.heads(log)
      const retry = await again.log.append(log, 'claim', { retry: true })
      expect(retry.next).toEqual(heads)
      // A batch is atomic: an append that rejected stored nothing.
      expect((await again.log.entries(log)).length).toBe(1 + ok.length + 1)
    } finally {
      await db2.close()
    }
  })

  it('the appends of one group go out in one gossip message', async () => {
    const clock = new FakeClock()
    const published: Uint8Array[] = []
    const n = newNode(signer)
    const sync = createLogSync(
      { libp2p: fakeLibp2p(published), log: n.log, logger: silentLogger, clock },
      { intervalMs: 60_000 },
    )
    await sync.start()
    try {
      const [a, b] = await Promise.all([
        n.log.append(log, 'complete', { chunk: 1 }),
        n.log.append(log, 'claim', { chunk: 2 }),
      ])
      clock.advanceTo(50)
      expect(published.length).toBe(1)
      const sent = decodeGossip(published[0])
      expect(sent.map((bytes) => Buffer.from(bytes).toString('hex'))).toEqual(
        [a, b].map((e: LogEntry) => Buffer.from(e.bytes).toString('hex')),
      )
    } finally {
      await sync.stop()
    }
  })
})

/** What createLogSync touches of a libp2p host, with publish recorded. */
function fakeLibp2p(published: Uint8Array[]): RmeshLibp2p {
  const events = new EventTarget()
  const pubsub = Object.assign(events, {
    topicValidators: new Map(),
    subscribe: () => undefined,
    unsubscribe: () => undefined,
    publish: async (_topic: string, data: Uint8Array) => {
      published.push(data)
      return { recipients: [] }
    },
  })
  return Object.assign(new EventTarget(), {
    peerId: { toString: () => 'self' },
    services: { pubsub },
    handle: async () => undefined,
    unhandle: async () => undefined,
    getPeers: () => [],
  }) as unknown as RmeshLibp2p
}
