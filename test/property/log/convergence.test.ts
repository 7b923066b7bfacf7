/**
 * Convergence of the log CRDT under arbitrary delivery: several authors append, entries
 * are delivered in random order with duplication, delay and loss, then everything is
 * resent; every replica must end with the same heads and the same fold. Runs at least
 * 1,000 schedules (RMESH_PROPERTY_RUNS raises it); fast-check prints the seed on failure.
 */
import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import type { LogManager } from '../../../src/log/log.js'
import { jobLogId, type LogEntry, type Signer } from '../../../src/log/types.js'
import { newNode, newSigner } from '../../unit/log/helpers.js'
import { logOpArb, playOps } from './ops.js'

const RUNS = Number(process.env.RMESH_PROPERTY_RUNS ?? 1000)
const log = jobLogId('p')
let signers: Signer[] = []

beforeAll(async () => {
  signers = await Promise.all([0, 1, 2].map(() => newSigner()))
})

async function snapshot(m: LogManager): Promise<string> {
  const heads = (await m.heads(log)).sort()
  const fold = (await m.entries(log)).map((e) => `${e.kind}:${JSON.stringify(e.body)}:${e.id}`)
  return JSON.stringify({ heads, fold })
}

const opArb = logOpArb({ deliverTo: 2, deliverWeight: 6, sealWeight: 1 })

describe('log CRDT convergence', () => {
  it(`replicas converge under random delivery, duplication, delay and loss (${RUNS} schedules)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { minLength: 1, maxLength: 24 }),
        fc.array(fc.array(fc.nat(), { minLength: 64, maxLength: 64 }), {
          minLength: 3,
          maxLength: 3,
        }),
        async (ops, resendOrders) => {
          const nodes = signers.map((s) => newNode(s))
          const pool = await playOps(nodes, log, ops)
          // Loss followed by resend: every replica gets everything, in its own order, twice.
          for (let r = 0; r < nodes.length; r++) {
            const order = pool.map((e, i) => [resendOrders[r][i % 64] + i * 0.001, e] as const)
            order.sort((a, b) => a[0] - b[0])
            for (const [, e] of order) await nodes[r].log.join(e.bytes)
            await nodes[r].log.join(pool.map((e) => e.bytes))
          }
          const snaps = await Promise.all(nodes.map((x) => snapshot(x.log)))
          expect(snaps[1]).toBe(snaps[0])
          expect(snaps[2]).toBe(snaps[0])
          for (const x of nodes) expect(x.log.pendingCount).toBe(0)
        },
      ),
      { numRuns: RUNS },
    )
  }, 120_000)
})

describe('join algebra', () => {
  let pool: LogEntry[] = []

  beforeAll(async () => {
    // One fixed DAG with concurrency among three authors (and no seal, so every entry counts).
    const nodes = signers.map((s) => newNode(s))
    for (let i = 0; i < 30; i++) {
      const who = (i * 7) % 3
      const e = await nodes[who].log.append(log, 'claim', { i })
      pool.push(e)
      if (i % 4 === 0) for (const x of nodes) await x.log.join(e.bytes)
    }
    pool = [...pool]
  })

  const subset = () =>
    fc
      .subarray([...Array(30).keys()])
      .chain((ix) => fc.shuffledSubarray(ix, { minLength: ix.length }))

  async function state(batches: number[][]): Promise<string> {
    const node = newNode(signers[0])
    for (const b of batches) await node.log.join(b.map((i) => pool[i].bytes))
    return snapshot(node.log)
  }

  it('is commutative, associative and idempotent', async () => {
    await fc.assert(
      fc.asyncProperty(subset(), subset(), subset(), async (x, y, z) => {
        expect(await state([x, y])).toBe(await state([y, x]))
        expect(await state([[...x, ...y], z])).toBe(await state([x, [...y, ...z]]))
        expect(await state([x, x])).toBe(await state([x]))
      }),
      { numRuns: Math.max(200, RUNS / 5) },
    )
  }, 60_000)
})
