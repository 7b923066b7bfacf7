/** The `abort` entry: the submitter fails its job because no eligible node remains. */
import { describe, expect, it } from 'vitest'
import { parseBody, validateBody } from '../../../src/jobs/entries.js'
import { reduceJob } from '../../../src/jobs/reducer.js'
import type { PeerIdString } from '../../../src/log/types.js'
import { A, announceBody, B, D, entry, outputsFor, SUB } from './fixtures.js'

const ann = (over = {}) => entry('announce', announceBody(over), 1, SUB)
const claim = (chunk: number, attempt: number, clock: number, who: PeerIdString) =>
  entry('claim', { chunk, attempt }, clock, who)
const fail = (chunk: number, attempt: number, clock: number, who: PeerIdString) =>
  entry('fail', { chunk, attempt, reason: 'boom' }, clock, who)
const abort = (clock: number, who: PeerIdString, reason = 'no eligible node remains: x') =>
  entry('abort', { reason }, clock, who)
const admins = { isAdmin: (p: PeerIdString) => p === D }

describe('abort entry', () => {
  it('validates a non-empty reason of at most 500 characters, keeping only known fields', () => {
    expect(validateBody('abort', { reason: 'r', extra: 1 })).toEqual({
      ok: true,
      body: { reason: 'r' },
    })
    expect(validateBody('abort', { reason: '' }).ok).toBe(false)
    expect(validateBody('abort', { reason: 'x'.repeat(501) }).ok).toBe(false)
    expect(validateBody('abort', {}).ok).toBe(false)
    expect(() => parseBody('abort', { reason: 5 })).toThrow(/invalid abort entry/)
  })

  it('fails the job with its reason; later claims are ignored', () => {
    const s = reduceJob([ann(), claim(0, 1, 2, A), abort(3, SUB, 'stuck'), claim(1, 1, 4, B)])!
    expect(s.state).toBe('failed')
    expect(s.abortReason).toBe('stuck')
    expect(s.chunks[1]).toMatchObject({ state: 'open', attempt: 0 })
  })

  it('is honoured from the submitter or an admin only', () => {
    const byRenderer = reduceJob([ann(), abort(2, A)], admins)!
    expect(byRenderer.state).toBe('queued')
    expect(byRenderer.abortReason).toBeUndefined()
    expect(reduceJob([ann(), abort(2, D, 'admin')], admins)!).toMatchObject({
      state: 'failed',
      abortReason: 'admin',
    })
  })

  it('the first abort in fold order gives the reason; a done or canceled job ignores it', () => {
    expect(reduceJob([ann(), abort(3, SUB, 'second'), abort(2, SUB, 'first')])!.abortReason).toBe(
      'first',
    )
    const one = { frames: [1] }
    const done = reduceJob([
      ann(one),
      claim(0, 1, 2, A),
      entry('complete', { chunk: 0, attempt: 1, outputs: outputsFor([1]), renderMs: 1 }, 3, A),
      abort(4, SUB),
    ])!
    expect(done.state).toBe('done')
    expect(done.abortReason).toBeUndefined()
    const canceled = reduceJob([ann(one), entry('cancel', {}, 2, SUB), abort(3, SUB)])!
    expect(canceled.state).toBe('canceled')
  })

  it('retry revives an aborted job with a fresh start: abort, blocklist and failures cleared', () => {
    // A and B each failed chunk 0 three times (N = 3): both blocklisted, nobody can take it.
    const es = [ann({ frames: [1, 2] })]
    let clock = 2
    for (let attempt = 1; attempt <= 6; attempt++) {
      const who = attempt % 2 ? A : B
      es.push(claim(0, attempt, clock++, who), fail(0, attempt, clock++, who))
    }
    const stuck = reduceJob(es)!
    expect(stuck.blocklist).toEqual([A, B])
    expect(stuck.state).toBe('rendering')
    es.push(abort(clock++, SUB))
    expect(reduceJob(es)!.state).toBe('failed')
    es.push(entry('retry', { chunks: [] }, clock++, SUB))
    const revived = reduceJob(es)!
    // Like a retried failed job: 'rendering', since chunks were claimed before.
    expect(revived.state).toBe('rendering')
    expect(revived.abortReason).toBeUndefined()
    expect(revived.blocklist).toEqual([])
    expect(revived.nodeFailures).toEqual({})
    expect(revived.chunks[0]).toMatchObject({ state: 'open', failures: [], attempt: 6 })
    // Claimable again, as the next attempt.
    es.push(claim(0, 7, clock++, A))
    expect(reduceJob(es)!.chunks[0]).toMatchObject({ state: 'claimed', holder: A })
    // A retry from a non-submitter does not revive it.
    const other = [...es.slice(0, 14), entry('retry', {}, 99, A)]
    expect(reduceJob(other)!.state).toBe('failed')
  })

  it('is order-independent like every entry', () => {
    const es = [ann(), claim(0, 1, 2, A), fail(0, 1, 3, A), abort(4, SUB), claim(1, 1, 5, B)]
    expect(reduceJob([...es].reverse())).toEqual(reduceJob(es))
  })
})
