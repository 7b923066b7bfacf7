/** Job order entries: pause/resume, `after` + ready, unblock (protocols/job-entries.md). */
import { describe, expect, it } from 'vitest'
import { capabilityFor, LIMITS, parseBody, validateBody } from '../../../src/jobs/entries.js'
import { isRunnable, keepsRenders, reduceJob, reduceQueue } from '../../../src/jobs/reducer.js'
import type { PeerIdString } from '../../../src/log/types.js'
import { jobLogId } from '../../../src/log/types.js'
import { A, announceBody, B, D, entry, JOB, outputsFor, SUB } from './fixtures.js'

const ann = (over = {}) => entry('announce', announceBody(over), 1, SUB)
const claim = (chunk: number, attempt: number, clock: number, who: PeerIdString) =>
  entry('claim', { chunk, attempt }, clock, who)
const fail = (chunk: number, attempt: number, clock: number, who: PeerIdString) =>
  entry('fail', { chunk, attempt, reason: `boom ${chunk}` }, clock, who)
const admins = { isAdmin: (p: PeerIdString) => p === D }

describe('job order entries: schemas', () => {
  it('pause, resume and ready take an object body and keep no field; garbage is refused', () => {
    for (const kind of ['pause', 'resume', 'ready'] as const) {
      expect(validateBody(kind, { extra: 1 })).toEqual({ ok: true, body: {} })
      for (const bad of [null, 'x', 7, [], new Uint8Array(2)])
        expect(validateBody(kind, bad).ok, `${kind} ${String(bad)}`).toBe(false)
      expect(() => parseBody(kind, 'x')).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_INPUT' }),
      )
    }
  })

  it('unblock names at most one node (a peer id string)', () => {
    expect(validateBody('unblock', {})).toEqual({ ok: true, body: {} })
    expect(validateBody('unblock', { node: A, x: 1 })).toEqual({ ok: true, body: { node: A } })
    for (const node of [5, '', 'x'.repeat(129), null, ['a']])
      expect(validateBody('unblock', { node }).ok).toBe(false)
  })

  it('announce `after`: 1..16 distinct job ids, never the job itself', () => {
    const ok = validateBody('announce', announceBody({ after: ['bcdefghi', 'cdefghij'] }))
    expect(ok.ok && ok.body.after).toEqual(['bcdefghi', 'cdefghij'])
    const reason = (after: unknown) => {
      const v = validateBody('announce', { ...announceBody(), after })
      return v.ok ? 'ok' : v.reason
    }
    expect(reason([])).toMatch(/after: empty/)
    expect(reason([JOB])).toMatch(/cannot wait for itself/)
    expect(reason(['bcdefghi', 'bcdefghi'])).toMatch(/duplicate/)
    expect(reason(['BCDEFGHI'])).toMatch(/not a job id/)
    expect(reason(['bcdefgh'])).toMatch(/after\[\]/)
    expect(reason('bcdefghi')).toMatch(/not a list/)
    const many = Array.from(
      { length: LIMITS.maxAfter + 1 },
      (_, i) => `bcdefg${'abcdefghijklmnopqrstuvwxyz'[i]}a`,
    )
    expect(reason(many)).toMatch(/at most 16/)
    expect(reason(many.slice(0, 16))).toBe('ok')
  })

  it('need the submit capability in a job log (as cancel and priority)', () => {
    for (const kind of ['pause', 'resume', 'ready', 'unblock'])
      expect(capabilityFor(jobLogId(JOB), kind)).toBe('submit')
  })
})

describe('job order: the reducer', () => {
  it('a paused job honours no claim, keeps its running chunk, is not in the queue', () => {
    const s = reduceJob([ann(), claim(0, 1, 2, A), entry('pause', {}, 3, SUB), claim(1, 1, 4, B)])!
    expect(s.state).toBe('paused')
    expect(s.paused).toBe(true)
    expect(s.chunks[0]).toMatchObject({ state: 'claimed', holder: A })
    expect(s.chunks[1]).toMatchObject({ state: 'open', attempt: 0 })
    expect(isRunnable(s)).toBe(false)
    expect(keepsRenders(s)).toBe(true)
    expect(reduceQueue([s])).toEqual([])
    const done = reduceJob([
      ann({ frames: [1] }),
      claim(0, 1, 2, A),
      entry('pause', {}, 3, SUB),
      entry('complete', { chunk: 0, attempt: 1, outputs: outputsFor([1]), renderMs: 5 }, 4, A),
    ])!
    expect(done.state).toBe('done')
  })

  it('pause and resume are honoured from the submitter or an admin only', () => {
    expect(reduceJob([ann(), entry('pause', {}, 2, A)], admins)!.state).toBe('queued')
    expect(reduceJob([ann(), entry('pause', {}, 2, D)], admins)!.state).toBe('paused')
    const s = reduceJob([ann(), entry('pause', {}, 2, SUB), entry('resume', {}, 3, B)], admins)!
    expect(s.state).toBe('paused')
    const r = reduceJob([ann(), entry('pause', {}, 2, SUB), entry('resume', {}, 3, D)], admins)!
    expect(r.state).toBe('queued')
    expect(r.paused).toBeUndefined()
  })

  it('a job with `after` waits until the ready entry; canceled or failed wins over waiting', () => {
    const waiting = reduceJob([ann({ after: ['bcdefghi'] }), claim(0, 1, 2, A)])!
    expect(waiting.state).toBe('waiting')
    expect(waiting.chunks[0].state).toBe('open')
    expect(isRunnable(waiting)).toBe(false)
    expect(keepsRenders(waiting)).toBe(false)
    const ready = reduceJob([
      ann({ after: ['bcdefghi'] }),
      entry('ready', {}, 2, SUB),
      claim(0, 1, 3, A),
    ])!
    expect(ready.state).toBe('rendering')
    const aborted = reduceJob([
      ann({ after: ['bcdefghi'] }),
      entry('abort', { reason: 'dependency bcdefghi failed' }, 2, SUB),
    ])!
    expect(aborted).toMatchObject({ state: 'failed', abortReason: 'dependency bcdefghi failed' })
    expect(reduceJob([ann({ after: ['bcdefghi'] }), entry('cancel', {}, 2, SUB)])!.state).toBe(
      'canceled',
    )
    // A retry of the aborted job makes it wait again: the gate judges it anew.
    const retried = reduceJob([
      ann({ after: ['bcdefghi'] }),
      entry('abort', { reason: 'dependency bcdefghi failed' }, 2, SUB),
      entry('retry', { chunks: [] }, 3, SUB),
    ])!
    expect(retried.state).toBe('waiting')
  })

  it('unblock takes one node (or all) off the blocklist; failures stay on the chunks', () => {
    const base = [
      ann({ limits: { maxFailuresPerNode: 1 } }),
      claim(0, 1, 2, A),
      claim(1, 1, 2, B),
      fail(0, 1, 3, A),
      fail(1, 1, 3, B),
    ]
    expect(reduceJob(base)!.blocklist).toEqual([A, B])
    const one = reduceJob([...base, entry('unblock', { node: A }, 4, SUB), claim(0, 2, 5, A)])!
    expect(one.blocklist).toEqual([B])
    expect(one.nodeFailures).toEqual({ [B]: 1 })
    expect(one.chunks[0]).toMatchObject({ state: 'claimed', holder: A, attempt: 2 })
    expect(one.chunks[0].failures).toHaveLength(1)
    // Its count restarted: one more failure blocks it again.
    expect(
      reduceJob([
        ...base,
        entry('unblock', { node: A }, 4, SUB),
        claim(0, 2, 5, A),
        fail(0, 2, 6, A),
      ])!.blocklist,
    ).toEqual([A, B])
    expect(reduceJob([...base, entry('unblock', {}, 4, D)], admins)!.blocklist).toEqual([])
    expect(reduceJob([...base, entry('unblock', {}, 4, A)], admins)!.blocklist).toEqual([A, B])
    expect(
      reduceJob([...base, entry('cancel', {}, 4, SUB), entry('unblock', {}, 5, SUB)])!.blocklist,
    ).toEqual([A, B])
  })
})
