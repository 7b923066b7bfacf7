/**
 * Group commit under faults: random bursts of appends issued without awaiting, joins of
 * another author's entries interleaved in the same tick, and store batches that fail at
 * random. After every step: an append that resolved is stored and was announced once, in
 * call order; one that rejected is not stored; the heads (cached and stored) name stored
 * entries only; within a burst each stored append names the one before it. At the end a
 * retry works. At least 300 schedules (RMESH_PROPERTY_RUNS raises it).
 */
import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { createMemoryLogStore, type LogStore } from '../../../src/log/store.js'
import { jobLogId, type LogEntry, type Signer } from '../../../src/log/types.js'
import { newNode, newSigner } from '../../unit/log/helpers.js'

const RUNS = Math.max(300, Number(process.env.RMESH_PROPERTY_RUNS ?? 300))
const log = jobLogId('gc')
let me: Signer
let other: Signer

beforeAll(async () => {
  me = await newSigner()
  other = await newSigner()
})

type Step =
  | { t: 'burst'; size: number; failAt: number | null; joinAt: number | null }
  | { t: 'other' }

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant('burst' as const),
      size: fc.integer({ min: 1, max: 6 }),
      // Which store batch from the start of the burst fails (null: none).
      failAt: fc.option(fc.nat(2), { nil: null }),
      // Where in the burst a join of the other author's pending entry is issued.
      joinAt: fc.option(fc.nat(6), { nil: null }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ t: 'other' as const }) },
)

function faulty(): { store: LogStore; failAt(n: number | null): void } {
  const inner = createMemoryLogStore()
  let countdown: number | null = null
  return {
    store: {
      ...inner,
      async commit(l, change) {
        if (countdown !== null && countdown-- === 0) throw new Error('batch failed')
        return inner.commit(l, change)
      },
    },
    failAt(n) {
      countdown = n
    },
  }
}

describe('group commit under faults', () => {
  it(`keeps the log consistent and announces only what is stored (${RUNS} schedules)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { minLength: 1, maxLength: 12 }), async (steps) => {
        const f = faulty()
        const node = newNode(me, { store: f.store })
        const writer = newNode(other)
        const announced: LogEntry[] = []
        node.log.onEntry((e, origin) => {
          if (origin === 'append') announced.push(e)
        })
        const resolved: LogEntry[] = []
        let theirs: LogEntry | undefined
        for (const step of steps) {
          if (step.t === 'other') {
            theirs = await writer.log.append(log, 'claim', { other: true })
            continue
          }
          f.failAt(step.failAt)
          const calls: Array<Promise<LogEntry>> = []
          const joins: Array<Promise<unknown>> = []
          for (let i = 0; i < step.size; i++) {
            if (step.joinAt === i && theirs) joins.push(node.log.join(theirs.bytes).catch(() => 0))
            calls.push(node.log.append(log, 'claim', { i }))
          }
          const settled = await Promise.allSettled(calls)
          await Promise.all(joins)
          f.failAt(null)
          const ok: LogEntry[] = []
          for (const r of settled) if (r.status === 'fulfilled') ok.push(r.value)
          for (let i = 1; i < ok.length; i++) {
            expect(ok[i].clock).toBeGreaterThan(ok[i - 1].clock)
          }
          // Within a burst, consecutive stored appends are parent and child.
          for (let i = 1; i < settled.length; i++) {
            const a = settled[i - 1]
            const b = settled[i]
            if (a.status === 'fulfilled' && b.status === 'fulfilled')
              expect(b.value.next).toContain(a.value.id)
          }
          resolved.push(...ok)
          for (const e of resolved) expect(await f.store.hasEntry(e.id)).toBe(true)
          const stored = await f.store.getHeads(log)
          for (const h of stored) expect(await f.store.hasEntry(h)).toBe(true)
          expect([...(await node.log.heads(log))].sort()).toEqual([...stored].sort())
          expect(announced.map((e) => e.id)).toEqual(resolved.map((e) => e.id))
        }
        // A retry after everything builds on the stored heads.
        const heads = await node.log.heads(log)
        const retry = await node.log.append(log, 'claim', { retry: true })
        expect([...retry.next].sort()).toEqual([...heads].sort())
        const all = await node.log.entries(log)
        const ids = new Set(all.map((e) => e.id))
        for (const e of resolved) expect(ids.has(e.id)).toBe(true)
        // Only resolved appends (and joined entries) are stored: nothing of a failed batch.
        const mine = all.filter((e) => e.author === me.peerId)
        expect(mine.length).toBe(resolved.length + 1)
      }),
      { numRuns: RUNS },
    )
  })
})
