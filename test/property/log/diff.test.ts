/**
 * LogManager.diff (what the other side lacks, given its heads) walks down from both sides'
 * heads in clock order and stops early; here it must equal the definition on arbitrary
 * logs: every retained entry that is neither one of their heads nor an ancestor of one, in
 * fold order, and `complete` false exactly when one of their heads is unknown. Logs are
 * built by three authors appending and receiving each other's entries in a random order
 * (concurrent branches and merges), with and without seals; their heads are any retained
 * entries plus unknown ids. Runs RMESH_PROPERTY_RUNS cases (default 500).
 */
import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import type { LogManager } from '../../../src/log/log.js'
import { jobLogId, type Signer } from '../../../src/log/types.js'
import { newNode, newSigner } from '../../unit/log/helpers.js'
import { type LogOp, logOpArb, playOps } from './ops.js'

const RUNS = Number(process.env.RMESH_PROPERTY_RUNS ?? 500)
const log = jobLogId('d')
const UNKNOWN = 'bafkreiaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'
let signers: Signer[] = []

beforeAll(async () => {
  signers = await Promise.all([0, 1, 2].map(() => newSigner()))
})

/** The definition: a whole-log walk from their heads. */
async function reference(m: LogManager, theirs: readonly string[]): Promise<string[]> {
  const entries = await m.entries(log)
  const byId = new Map(entries.map((e) => [e.id as string, e]))
  const below = new Set<string>()
  const stack = theirs.filter((h) => byId.has(h))
  while (stack.length > 0) {
    const id = stack.pop()!
    if (below.has(id)) continue
    below.add(id)
    for (const p of byId.get(id)?.next ?? []) if (byId.has(p)) stack.push(p)
  }
  return entries.filter((e) => !below.has(e.id)).map((e) => e.id)
}

const opArb = (seals: boolean) =>
  logOpArb({ deliverTo: 2, deliverWeight: 5, sealWeight: seals ? 1 : 0 })

async function run(ops: LogOp[], picks: number[], unknown: boolean): Promise<void> {
  const nodes = signers.map((s) => newNode(s))
  await playOps(nodes, log, ops)
  for (const { log: m } of nodes) {
    const held = await m.entries(log)
    const theirs = held.length === 0 ? [] : picks.map((p) => held[p % held.length].id as string)
    if (unknown) theirs.push(UNKNOWN)
    const d = await m.diff(log, theirs)
    expect(d.entries.map((e) => e.id)).toEqual(await reference(m, theirs))
    expect(d.complete).toBe(!unknown)
  }
}

describe('LogManager.diff', () => {
  for (const seals of [false, true]) {
    it(`equals the whole-log definition${seals ? ', with seals' : ''} (${RUNS} cases)`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(opArb(seals), { minLength: 1, maxLength: 30 }),
          fc.array(fc.nat(), { maxLength: 4 }),
          fc.boolean(),
          run,
        ),
        { numRuns: RUNS },
      )
    }, 120_000)
  }
})
