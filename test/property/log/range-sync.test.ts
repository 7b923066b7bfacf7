/**
 * The anti-entropy exchange of /rmesh/log-sync/2.0.0 (heads → exact entries, or per-author
 * summary → ranges → entries), run on two replicas that hold arbitrary divergent sets of
 * one log (three authors, random delivery and loss, seals): after sessions both ways
 * (the responder that finds itself behind pulls back), both hold the union, i.e. the fold
 * of a fresh replica that joined everything either of them was given (an entry held
 * pending for a parent at the other replica needs one more round). Without seals nothing
 * a replica already holds is ever sent to it. Runs RMESH_PROPERTY_RUNS schedules
 * (default 500); fast-check prints the seed on failure.
 */
import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import type { LogManager } from '../../../src/log/log.js'
import { jobLogId, type LogEntry, type Signer } from '../../../src/log/types.js'
import { planResponse } from '../../../src/sync/session.js'
import { answerRanges, rangesToRequest } from '../../../src/sync/summary.js'
import { newNode, newSigner } from '../../unit/log/helpers.js'
import { type LogOp, logOpArb, playOps } from './ops.js'

const RUNS = Number(process.env.RMESH_PROPERTY_RUNS ?? 500)
const log = jobLogId('r')
let signers: Signer[] = []

beforeAll(async () => {
  signers = await Promise.all([0, 1, 2].map(() => newSigner()))
})

async function snapshot(m: LogManager): Promise<string> {
  const heads = (await m.heads(log)).sort()
  const fold = (await m.entries(log)).map((e) => e.id)
  return JSON.stringify({ heads, fold })
}

/** One session, initiator `i` pulling from responder `r`, as session.ts runs it. */
async function pull(i: LogManager, r: LogManager): Promise<{ behind: boolean; resent: number }> {
  const plan = await planResponse(r, log, await i.heads(log))
  let sent: LogEntry[] = plan.entries ?? []
  if (plan.summary) {
    const wanted = rangesToRequest(await i.entries(log), plan.summary)
    sent = answerRanges(await r.entries(log), wanted)
  }
  const mine = new Set((await i.entries(log)).map((e) => e.id))
  const resent = sent.filter((e) => mine.has(e.id)).length
  for (let k = 0; k < sent.length; k += 512) {
    await i.join(sent.slice(k, k + 512).map((e) => new Uint8Array(e.bytes)))
  }
  return { behind: plan.behind, resent }
}

const opArb = (seals: boolean) =>
  logOpArb({ deliverTo: 1, deliverWeight: 6, sealWeight: seals ? 1 : 0 })

async function run(ops: LogOp[], withSeals: boolean): Promise<void> {
  const nodes = signers.map((s) => newNode(s))
  const given: Array<Map<string, LogEntry>> = [new Map(), new Map()]
  await playOps(nodes, log, ops, {
    delivered: (to, e) => given[to].set(e.id, e),
    written: (who, e) => {
      if (who < 2) given[who].set(e.id, e)
    },
  })
  const [a, b] = [nodes[0].log, nodes[1].log]
  const reference = newNode(signers[2]).log
  const all = new Map([...given[0], ...given[1]])
  for (let k = 0; k < 3; k++) await reference.join([...all.values()].map((e) => e.bytes))

  // A session serves stored entries only: an entry pending at one replica (its parent is
  // only at the other) travels in the next round, once the parent released it. Each round
  // is what the periodic anti-entropy does: a session, and the pull back when behind.
  const want = await snapshot(reference)
  let resent = 0
  for (let round = 0; round < 2 * ops.length + 2; round++) {
    const [i, r] = round % 2 === 0 ? [a, b] : [b, a]
    const s = await pull(i, r)
    resent += s.resent
    if (s.behind) resent += (await pull(r, i)).resent
    if ((await snapshot(a)) === want && (await snapshot(b)) === want) break
  }
  expect(await snapshot(a)).toBe(want)
  expect(await snapshot(b)).toBe(want)
  if (!withSeals) expect(resent).toBe(0)
}

describe('range sync (log-sync 2.0.0)', () => {
  it(`two divergent replicas converge to the union, nothing resent (${RUNS} schedules)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb(false), { minLength: 1, maxLength: 30 }), (ops) =>
        run(ops, false),
      ),
      { numRuns: RUNS },
    )
  }, 120_000)

  it(`with seals, they still converge to the union (${RUNS} schedules)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb(true), { minLength: 1, maxLength: 30 }), (ops) =>
        run(ops, true),
      ),
      { numRuns: RUNS },
    )
  }, 120_000)
})
