/**
 * Reducer properties over random job logs: order independence (any arrival order into
 * the incremental fold equals the batch reduce), done never reverts as entries arrive,
 * at most one holder per chunk; foldChanges names every chunk record an entry changed.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { foldChanges, markFold } from '../../../src/jobs/fold-changes.js'
import { ChunkIndex } from '../../../src/jobs/lease-index.js'
import { JobFold, reduceJob } from '../../../src/jobs/reducer.js'
import type { LogEntry, PeerIdString } from '../../../src/log/types.js'
import { compareEntries } from '../../../src/log/types.js'
import { announceBody, cid, entry, outputsFor, SUB } from '../../unit/jobs/fixtures.js'
import { illegalDoneRevert } from '../../helpers/job-invariants.js'

const AUTHORS = ['peer-a', 'peer-b', 'peer-c', 'peer-d', SUB] as PeerIdString[]
const FRAMES = [1, 2, 3, 4, 5]
/** RMESH_PROP_SCALE=<k> multiplies the runs for a deeper search. */
const SCALE = Number(process.env.RMESH_PROP_SCALE ?? 1)

const arbOp = fc.record({
  kind: fc.constantFrom(
    'claim',
    'claim',
    'claim',
    'complete',
    'complete',
    'fail',
    'release',
    'cancel',
    'retry',
    'priority',
    'ack',
    'junk',
    'pause',
    'resume',
    'ready',
    'unblock',
  ),
  chunk: fc.integer({ min: 0, max: 5 }),
  attempt: fc.integer({ min: 1, max: 4 }),
  clock: fc.integer({ min: 2, max: 40 }),
  author: fc.constantFrom(...AUTHORS),
  n: fc.integer({ min: 0, max: 9 }),
})

interface Op {
  kind: string
  chunk: number
  attempt: number
  n: number
}

function bodyFor(op: Op): unknown {
  switch (op.kind) {
    case 'claim':
      return { chunk: op.chunk, attempt: op.attempt }
    case 'complete':
      return op.chunk === 5
        ? {
            chunk: op.chunk,
            attempt: op.attempt,
            outputs: [{ frame: 0, manifest: cid('v'), size: 1, name: 'v' }],
            renderMs: 1,
          }
        : {
            chunk: op.chunk,
            attempt: op.attempt,
            outputs: outputsFor([FRAMES[op.chunk]]),
            renderMs: op.n,
          }
    case 'fail':
      return { chunk: op.chunk, attempt: op.attempt, reason: `r${op.n}` }
    case 'release':
      return { chunk: op.chunk, attempt: op.attempt, reason: 'x' }
    case 'retry':
      return op.n % 2 ? {} : { chunks: [op.chunk] }
    case 'priority':
      return { priority: op.n }
    case 'ack':
      return { chunks: [op.chunk] }
    case 'junk':
      return { chunk: 'x' }
    case 'reject':
      return { chunk: op.chunk, attempt: op.attempt, reason: `lost ${op.n}` }
    case 'unblock':
      return op.n % 2 ? {} : { node: AUTHORS[op.n % AUTHORS.length] }
    default:
      return {}
  }
}

const logOf = (ops: fc.Arbitrary<Op & { clock: number; author: PeerIdString }>) =>
  fc
    .tuple(fc.boolean(), fc.array(ops, { minLength: 0, maxLength: 60 }), fc.boolean())
    .map(([video, ops, after]) => {
      const ann = entry(
        'announce',
        announceBody({
          frames: FRAMES,
          output: video ? { format: 'PNG', video: 'h264' } : { format: 'PNG' },
          // Job order: a job waiting for another is claimed only after the submitter's ready.
          ...(after ? { after: ['zzzzzzzz'] } : {}),
        }),
        1,
        SUB,
      )
      return [
        ann,
        ...ops.map((op, i) =>
          entry(op.kind, bodyFor(op), op.clock, op.author, `x${String(i).padStart(3, '0')}`),
        ),
      ]
    })

const arbLog = logOf(arbOp)
/** Logs where every chunk gets a complete, at random clocks (so the encode chunk opens). */
const arbFinishingLog = fc
  .tuple(arbLog, fc.array(fc.integer({ min: 2, max: 40 }), { minLength: 6, maxLength: 6 }))
  .map(([es, clocks]) => [
    ...es,
    ...clocks.map((clock, chunk) =>
      entry(
        'complete',
        bodyFor({ kind: 'complete', chunk, attempt: 1, n: 1 }),
        clock,
        'peer-b' as PeerIdString,
        `c${chunk}`,
      ),
    ),
  ])

const withOrder = fc
  .oneof(arbLog, arbFinishingLog)
  .chain((es) =>
    fc.tuple(
      fc.constant(es),
      fc.shuffledSubarray(es, { minLength: es.length, maxLength: es.length }),
    ),
  )

/** Logs where the submitter rejects often (and others try to), for the reject rules. */
const arbLogWithRejects = fc
  .tuple(
    arbLog,
    fc.array(
      fc.record({
        chunk: fc.integer({ min: 0, max: 5 }),
        attempt: fc.integer({ min: 1, max: 4 }),
        clock: fc.integer({ min: 2, max: 40 }),
        author: fc.constantFrom(SUB, SUB, SUB, 'peer-a' as PeerIdString),
        n: fc.integer({ min: 0, max: 9 }),
      }),
      { maxLength: 12 },
    ),
  )
  .map(([es, rejects]) => [
    ...es,
    ...rejects.map((r, i) =>
      entry('reject', bodyFor({ ...r, kind: 'reject' }), r.clock, r.author, `r${i}`),
    ),
  ])

describe('reducer properties', () => {
  it('any arrival order into the incremental fold gives the batch state', () => {
    fc.assert(
      fc.property(withOrder, ([es, shuffled]) => {
        const fold = new JobFold()
        for (const e of shuffled) fold.add(e)
        expect(JSON.stringify(fold.state)).toBe(JSON.stringify(reduceJob(es)))
        expect(JSON.stringify(reduceJob(shuffled))).toBe(JSON.stringify(reduceJob(es)))
      }),
      { numRuns: 300 * SCALE },
    )
  })

  it('done never reverts and at most one holder per chunk, whatever the arrival order', () => {
    fc.assert(
      fc.property(withOrder, ([, shuffled]) => {
        const fold = new JobFold()
        const done = new Set<number>()
        for (const e of shuffled) {
          fold.add(e)
          const s = fold.state
          if (!s) continue
          for (const c of s.chunks) {
            expect(c.state === 'claimed').toBe(c.holder !== undefined)
            if (done.has(c.index)) expect(c.state).toBe('done')
            if (c.state === 'done') done.add(c.index)
          }
          expect(s.framesDone).toBe(
            s.chunks.filter((c) => c.kind === 'frames' && c.state === 'done').length,
          )
        }
      }),
      { numRuns: 300 * SCALE },
    )
  })

  it('with rejects: any permutation folds to the same state; done leaves done only by a valid reject', () => {
    const withRejects = arbLogWithRejects.chain((es) =>
      fc.tuple(
        fc.constant(es),
        fc.shuffledSubarray(es, { minLength: es.length, maxLength: es.length }),
      ),
    )
    fc.assert(
      fc.property(withRejects, ([es, shuffled]) => {
        const fold = new JobFold()
        for (const e of shuffled) fold.add(e)
        const batch = JSON.stringify(reduceJob(es))
        expect(JSON.stringify(fold.state)).toBe(batch)
        expect(JSON.stringify(reduceJob(shuffled))).toBe(batch)
        expect(illegalDoneRevert(es)).toBeUndefined()
        const s = fold.state
        if (s)
          expect(s.framesDone).toBe(
            s.chunks.filter((c) => c.kind === 'frames' && c.state === 'done').length,
          )
      }),
      { numRuns: 300 * SCALE },
    )
  })

  it('foldChanges names every chunk record an add changed (or says all), whatever the order', () => {
    // Shuffled (most adds replay) or in order with a few held back (most adds at the tail).
    const orders = fc.oneof(
      arbLogWithRejects.chain((es) =>
        fc.shuffledSubarray(es, { minLength: es.length, maxLength: es.length }),
      ),
      fc
        .tuple(fc.oneof(arbLogWithRejects, arbFinishingLog), fc.integer({ min: 0, max: 2 ** 30 }))
        .map(([es, salt]) => {
          const sorted = [...es].sort(compareEntries)
          const late = sorted.filter((_, i) => i > 0 && (i * 7919 + salt) % 11 === 0)
          return [...sorted.filter((e) => !late.includes(e)), ...late]
        }),
    )
    fc.assert(
      fc.property(orders, (shuffled) => {
        const fold = new JobFold()
        // The lease manager's index, kept up to date by these changes, describes the state.
        const index = new ChunkIndex(SUB)
        for (const e of shuffled) {
          const before = (fold.state?.chunks ?? []).map((c) => JSON.stringify(c))
          const mark = markFold(fold)
          fold.add(e)
          const changes = foldChanges(fold, mark, e)
          if (fold.state) {
            index.update(fold.state, changes)
            const chunks = fold.state.chunks
            expect(index.open).toBe(chunks.filter((c) => c.state === 'open').length)
            expect([...index.needy()]).toEqual(
              chunks.filter((c) => c.state === 'open' || c.state === 'claimed').map((c) => c.index),
            )
          }
          if (changes === 'all') continue
          const named = new Set(changes)
          const after = fold.state?.chunks ?? []
          expect(after.length).toBe(before.length)
          after.forEach((c, i) => {
            if (!named.has(i))
              expect(JSON.stringify(c), `${e.kind} changed chunk ${i}`).toBe(before[i])
          })
        }
      }),
      { numRuns: 300 * SCALE },
    )
  })

  it('many entries through checkpoints: late arrivals still match the batch state', () => {
    fc.assert(
      fc.property(
        fc.array(arbOp, { minLength: 100, maxLength: 200 }),
        fc.integer({ min: 0, max: 2 ** 30 }),
        (ops, salt) => {
          const es: LogEntry[] = [entry('announce', announceBody({ frames: FRAMES }), 1, SUB)]
          ops.forEach((op, i) => {
            es.push(entry(op.kind, bodyFor(op), op.clock + (i >> 2), op.author, `y${i}`))
          })
          const sorted = [...es].sort(compareEntries)
          // Mostly in order, with a few entries held back and delivered late.
          const late = sorted.filter((_, i) => (i * 7919 + salt) % 13 === 0 && i > 0)
          const fold = new JobFold()
          for (const e of sorted) if (!late.includes(e)) fold.add(e)
          for (const e of late) fold.add(e)
          expect(JSON.stringify(fold.state)).toBe(JSON.stringify(reduceJob(es)))
        },
      ),
      { numRuns: 100 * SCALE },
    )
  })
})
