import { describe, expect, it } from 'vitest'
import { reduceJob, reduceQueue } from '../../../src/jobs/reducer.js'
import type { PeerIdString } from '../../../src/log/types.js'
import { A, announceBody, B, C, cid, D, entry, JOB, outputsFor, SUB } from './fixtures.js'

const ann = (over = {}) => entry('announce', announceBody(over), 1, SUB)
const claim = (chunk: number, attempt: number, clock: number, who: PeerIdString) =>
  entry('claim', { chunk, attempt }, clock, who)
const complete = (
  chunk: number,
  attempt: number,
  clock: number,
  who: PeerIdString,
  frames = [chunk + 1],
) => entry('complete', { chunk, attempt, outputs: outputsFor(frames), renderMs: 10 }, clock, who)
const fail = (chunk: number, attempt: number, clock: number, who: PeerIdString) =>
  entry('fail', { chunk, attempt, reason: 'boom' }, clock, who)

describe('reduceJob', () => {
  it('starts from the announce', () => {
    const s = reduceJob([ann()])!
    expect(s.jobId).toBe(JOB)
    expect(s.state).toBe('queued')
    expect(s.chunks).toHaveLength(4)
    expect(s.framesTotal).toBe(4)
    expect(reduceJob([claim(0, 1, 2, A)])).toBeUndefined()
  })

  it('ignores an announce whose author is not the submitter or whose log does not match', () => {
    expect(reduceJob([entry('announce', announceBody(), 1, A)])).toBeUndefined()
    expect(
      reduceJob([entry('announce', announceBody({ jobId: 'zzzzzzzz' }), 1, SUB)]),
    ).toBeUndefined()
  })

  it('resolves concurrent claims by lowest (clock, author)', () => {
    const s = reduceJob([ann(), claim(0, 1, 3, B), claim(0, 1, 3, A), claim(0, 1, 2, C)])!
    expect(s.chunks[0].holder).toBe(C)
    const t = reduceJob([ann(), claim(0, 1, 3, B), claim(0, 1, 3, A)])!
    expect(t.chunks[0].holder).toBe(A)
    expect(t.state).toBe('rendering')
  })

  it('a higher attempt supersedes; a lower or equal one is ignored', () => {
    const s = reduceJob([
      ann(),
      claim(0, 1, 2, A),
      claim(0, 2, 5, B),
      claim(0, 2, 6, C),
      claim(0, 1, 7, D),
    ])!
    expect(s.chunks[0]).toMatchObject({ state: 'claimed', holder: B, attempt: 2, claimClock: 5 })
  })

  it('done never reverts; later completes are duplicates', () => {
    const s = reduceJob([
      ann(),
      claim(0, 1, 2, A),
      complete(0, 1, 3, A),
      claim(0, 2, 4, B),
      complete(0, 1, 5, C),
      fail(0, 1, 6, A),
    ])!
    expect(s.chunks[0]).toMatchObject({ state: 'done', completedBy: A })
    expect(s.duplicates).toBe(1)
    expect(s.framesDone).toBe(1)
  })

  it('ignores completes that do not cover the chunk frames', () => {
    const s = reduceJob([
      ann(),
      claim(0, 1, 2, A),
      complete(0, 1, 3, A, [2]),
      complete(0, 1, 4, A, [1, 2]),
    ])!
    expect(s.chunks[0].state).toBe('claimed')
  })

  it('a complete stays valid when an earlier cancel voids its claim (done never reverts)', () => {
    const s = reduceJob([
      ann(),
      entry('cancel', {}, 2, SUB),
      claim(0, 1, 2, SUB),
      complete(0, 1, 3, A),
    ])!
    expect(s.chunks[0].state).toBe('done')
  })

  it('release reopens only from the holder', () => {
    const rel = (who: PeerIdString, clock: number) =>
      entry('release', { chunk: 0, attempt: 1, reason: 'x' }, clock, who)
    expect(reduceJob([ann(), claim(0, 1, 2, A), rel(B, 3)])!.chunks[0].state).toBe('claimed')
    expect(reduceJob([ann(), claim(0, 1, 2, A), rel(A, 3)])!.chunks[0].state).toBe('open')
  })

  it('fails reopen; M distinct nodes fail the job; N failures blocklist a node', () => {
    const s = reduceJob([
      ann(),
      claim(0, 1, 2, A),
      fail(0, 1, 3, A),
      claim(0, 2, 4, B),
      fail(0, 2, 5, B),
    ])!
    expect(s.chunks[0]).toMatchObject({ state: 'open', attempt: 2 })
    expect(s.chunks[0].failures.map((f) => f.node)).toEqual([A, B])
    const t = reduceJob([
      ann(),
      claim(0, 1, 2, A),
      fail(0, 1, 3, A),
      claim(0, 2, 4, B),
      fail(0, 2, 5, B),
      claim(0, 3, 6, C),
      fail(0, 3, 7, C),
    ])!
    expect(t.chunks[0].state).toBe('failed')
    expect(t.state).toBe('failed')
    const u = reduceJob([
      ann(),
      ...[0, 1, 2].flatMap((c) => [claim(c, 1, 2 + 2 * c, A), fail(c, 1, 3 + 2 * c, A)]),
      claim(3, 1, 20, A),
    ])!
    expect(u.blocklist).toEqual([A])
    expect(u.chunks[3].state).toBe('open')
  })

  it('retry reopens failed chunks and the job, clearing failures', () => {
    const es = [ann({ limits: { maxNodesPerChunk: 1 } }), claim(0, 1, 2, A), fail(0, 1, 3, A)]
    expect(reduceJob(es)!.state).toBe('failed')
    const s = reduceJob([...es, entry('retry', {}, 4, SUB)])!
    expect(s.state).toBe('rendering')
    expect(s.chunks[0]).toMatchObject({ state: 'open', failures: [] })
    expect(reduceJob([...es, entry('retry', {}, 4, B)])!.state).toBe('failed')
  })

  it('cancel, priority and delete are honoured from the submitter or an admin only', () => {
    expect(reduceJob([ann(), entry('cancel', {}, 2, A)])!.state).toBe('queued')
    expect(reduceJob([ann(), entry('cancel', {}, 2, SUB)])!.state).toBe('canceled')
    expect(reduceJob([ann(), entry('cancel', {}, 2, A)], { isAdmin: (p) => p === A })!.state).toBe(
      'canceled',
    )
    const c = reduceJob([ann(), entry('cancel', {}, 2, SUB), claim(0, 1, 3, A)])!
    expect(c.chunks[0].state).toBe('open')
    expect(reduceJob([ann(), entry('priority', { priority: 7 }, 2, SUB)])!.priority).toBe(7)
    expect(reduceJob([ann(), entry('priority', { priority: 7 }, 2, B)])!.priority).toBe(0)
    expect(reduceJob([ann(), entry('delete', {}, 2, SUB)])).toMatchObject({
      deleted: true,
      state: 'canceled',
    })
  })

  it('the encode chunk opens once every frame chunk is done', () => {
    const es = [
      ann({ frames: [1, 2], output: { format: 'PNG', video: 'h264' } }),
      claim(2, 1, 2, A),
    ]
    const s = reduceJob(es)!
    expect(s.chunks[2]).toMatchObject({ kind: 'encode', state: 'waiting' })
    const t = reduceJob([
      ...es,
      complete(0, 0, 3, B),
      claim(0, 1, 3, B),
      complete(0, 1, 4, B),
      claim(1, 1, 5, C),
      complete(1, 1, 6, C),
      claim(2, 1, 7, A),
    ])!
    expect(t.chunks[2]).toMatchObject({ state: 'claimed', holder: A })
    const enc = {
      chunk: 2,
      attempt: 1,
      outputs: [{ frame: 0, manifest: cid('v'), size: 1, name: 'v.mp4' }],
      renderMs: 1,
    }
    const u = reduceJob([
      ...es.slice(0, 1),
      claim(0, 1, 3, B),
      complete(0, 1, 4, B),
      claim(1, 1, 5, C),
      complete(1, 1, 6, C),
      claim(2, 1, 7, A),
      entry('complete', enc, 8, A),
    ])!
    expect(u.state).toBe('done')
  })

  it('ack from the submitter, then a seal is the new starting point', () => {
    const es = [
      ann({ frames: [1] }),
      claim(0, 1, 2, A),
      complete(0, 1, 3, A),
      entry('ack', { chunks: [0] }, 4, SUB),
    ]
    const s = reduceJob(es)!
    expect(s.allAcked).toBe(true)
    expect(reduceJob([...es.slice(0, 3), entry('ack', { chunks: [0] }, 4, A)])!.allAcked).toBe(
      false,
    )
    const seal = entry('seal', { state: JSON.parse(JSON.stringify(s)) }, 5, SUB)
    const t = reduceJob([seal])!
    expect(t.sealedBy).toBe(seal.id)
    expect({ ...t, sealedBy: undefined }).toEqual({ ...s, sealedBy: undefined })
    // A forged seal (from a non-submitter, or garbage) is ignored.
    expect(reduceJob([entry('seal', { state: s }, 5, A)])).toBeUndefined()
    expect(
      reduceJob([ann(), entry('seal', { state: { jobId: JOB } }, 5, SUB)])!.sealedBy,
    ).toBeUndefined()
  })

  it('ignores garbage entries without throwing', () => {
    const junk = [null, 3, 'x', { chunk: 'a' }, { chunk: 99, attempt: 1 }, { chunks: [1e9] }]
    const kinds = [
      'claim',
      'release',
      'complete',
      'fail',
      'retry',
      'ack',
      'seal',
      'priority',
      'weird',
    ]
    const es = [
      ann(),
      ...kinds.flatMap((k, i) => junk.map((b, j) => entry(k, b, 2 + i * 10 + j, A))),
    ]
    const s = reduceJob(es)!
    expect(s.state).toBe('queued')
  })
})

describe('reduceQueue', () => {
  const job = (jobId: string, submitter: PeerIdString, wall: number, priority = 0) => {
    const e = {
      ...entry('announce', announceBody({ jobId, submitter, priority }), 1, submitter),
      log: `job/${jobId}`,
      wall,
    }
    return reduceJob([e as never])!
  }
  it('orders by priority then submission, applying quotas in submission order', () => {
    const jobs = [
      job('aaaaaaaa', A, 3),
      job('bbbbbbbb', A, 1),
      job('cccccccc', B, 2, 5),
      job('dddddddd', A, 2),
    ]
    const q = reduceQueue(jobs, { quotaOf: (p) => (p === A ? 2 : undefined) })
    expect(q.map((x) => x.job.jobId)).toEqual(['cccccccc', 'bbbbbbbb', 'dddddddd', 'aaaaaaaa'])
    expect(q.map((x) => x.admitted)).toEqual([true, true, true, false])
    expect(q[3].reason).toBe('quota')
  })
})

describe('reduceJob: reject (the submitter could not obtain a done chunk outputs)', () => {
  const reject = (chunk: number, attempt: number, clock: number, who: PeerIdString = SUB) =>
    entry('reject', { chunk, attempt, reason: 'outputs unavailable' }, clock, who)
  const doneBy = (who: PeerIdString, attempt = 1) => [
    ann(),
    claim(0, attempt, 2, who),
    complete(0, attempt, 3, who),
  ]

  it('reopens the chunk as a new attempt, drops its outputs and counts a failure of the completer', () => {
    const s = reduceJob([...doneBy(A, 2), reject(0, 2, 4)])!
    const c = s.chunks[0]
    expect(c).toMatchObject({ state: 'open', attempt: 2 })
    expect(c.outputs).toBeUndefined()
    expect(c.completedBy).toBeUndefined()
    expect(c.completedAttempt).toBeUndefined()
    expect(c.failures).toEqual([
      { node: A, attempt: 2, reason: 'outputs rejected: outputs unavailable' },
    ])
    expect(s.nodeFailures[A]).toBe(1)
    expect(s.framesDone).toBe(0)
    // The re-render: the next claim must be above the rejected attempt.
    const t = reduceJob([
      ...doneBy(A, 2),
      reject(0, 2, 4),
      claim(0, 2, 5, B),
      claim(0, 3, 6, B),
      complete(0, 3, 7, B),
    ])!
    expect(t.chunks[0]).toMatchObject({ state: 'done', completedBy: B, completedAttempt: 3 })
    expect(t.framesDone).toBe(1)
  })

  it('is refused from anyone but the submitter, admins included', () => {
    for (const who of [A, B, D]) {
      const s = reduceJob([...doneBy(A), reject(0, 1, 4, who)], { isAdmin: (p) => p === D })!
      expect(s.chunks[0]).toMatchObject({ state: 'done', completedBy: A })
      expect(s.nodeFailures).toEqual({})
    }
  })

  it('is a no-op for another attempt, a chunk not done, an acked chunk or a canceled job', () => {
    const cases = [
      [...doneBy(A), reject(0, 2, 4)],
      [...doneBy(A), reject(1, 1, 4)],
      [ann(), claim(0, 1, 2, A), reject(0, 1, 3)],
      [...doneBy(A), entry('ack', { chunks: [0] }, 4, SUB), reject(0, 1, 5)],
    ]
    for (const es of cases) {
      const s = reduceJob(es)!
      expect(s.nodeFailures).toEqual({})
      expect(s.chunks[1].state).toBe('open')
    }
    expect(reduceJob(cases[0])!.chunks[0].state).toBe('done')
    expect(reduceJob(cases[2])!.chunks[0]).toMatchObject({ state: 'claimed', holder: A })
    const canceled = reduceJob([
      ann(),
      claim(0, 1, 2, A),
      complete(0, 1, 3, A),
      entry('cancel', {}, 4, SUB),
      reject(0, 1, 5),
    ])!
    expect(canceled.chunks[0].state).toBe('done')
  })

  it('is idempotent: a second reject of the same attempt does not touch the re-render', () => {
    const s = reduceJob([
      ...doneBy(A),
      reject(0, 1, 4),
      claim(0, 2, 5, B),
      complete(0, 2, 6, B),
      reject(0, 1, 7),
    ])!
    expect(s.chunks[0]).toMatchObject({ state: 'done', completedBy: B, completedAttempt: 2 })
    expect(s.nodeFailures).toEqual({ [A]: 1 })
  })

  it('counts toward the blocklist: a node whose outputs are rejected 3 times is blocklisted', () => {
    const es = [ann()]
    for (let i = 0; i < 3; i++) {
      es.push(claim(i, 1, 10 * i + 2, A), complete(i, 1, 10 * i + 3, A), reject(i, 1, 10 * i + 4))
    }
    es.push(claim(0, 2, 40, A), claim(1, 2, 41, B))
    const s = reduceJob(es)!
    expect(s.nodeFailures[A]).toBe(3)
    expect(s.blocklist).toEqual([A])
    expect(s.chunks[0]).toMatchObject({ state: 'open', attempt: 1 })
    expect(s.chunks[1]).toMatchObject({ state: 'claimed', holder: B, attempt: 2 })
  })

  it('a chunk whose outputs are rejected from 3 distinct nodes fails the job', () => {
    const s = reduceJob([
      ...doneBy(A),
      reject(0, 1, 4),
      claim(0, 2, 5, B),
      complete(0, 2, 6, B),
      reject(0, 2, 7),
      claim(0, 3, 8, C),
      complete(0, 3, 9, C),
      reject(0, 3, 10),
    ])!
    expect(s.chunks[0].state).toBe('failed')
    expect(s.state).toBe('failed')
  })

  it('a done job goes back to rendering; the encode chunk waits again unless already done', () => {
    const video = { frames: [1, 2], output: { format: 'PNG' as const, video: 'h264' as const } }
    const enc = (clock: number) =>
      entry(
        'complete',
        {
          chunk: 2,
          attempt: 1,
          outputs: [{ frame: 0, manifest: cid('video'), size: 5, name: 'out.mp4' }],
          renderMs: 1,
        },
        clock,
        C,
      )
    const base = [
      ann(video),
      claim(0, 1, 2, A),
      complete(0, 1, 3, A),
      claim(1, 1, 2, B),
      complete(1, 1, 3, B),
      claim(2, 1, 4, C),
    ]
    const waiting = reduceJob([...base, reject(0, 1, 5)])!
    expect(waiting.state).toBe('rendering')
    expect(waiting.chunks[2]).toMatchObject({ state: 'waiting', attempt: 1 })
    expect(waiting.chunks[2].holder).toBeUndefined()
    // The encoder's concurrent complete still counts (its frames were fetched verified).
    expect(reduceJob([...base, reject(0, 1, 5), enc(6)])!.chunks[2].state).toBe('done')
    const encoded = reduceJob([...base, enc(5), reject(0, 1, 6)])!
    expect(encoded.chunks[2].state).toBe('done')
    expect(encoded.chunks[0].state).toBe('open')
    expect(encoded.state).toBe('rendering')
  })
})
