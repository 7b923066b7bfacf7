import { describe, expect, it } from 'vitest'
import type { MeshNode } from '../../../src/jobs/eligibility.js'
import { type JobState, reduceJob } from '../../../src/jobs/reducer.js'
import type { LogEntry, PeerIdString } from '../../../src/log/types.js'
import { createNoEligibleWatchdog } from '../../../src/service/no-eligible-watchdog.js'
import { FakeClock } from '../../../src/util/clock.js'
import { silentLogger } from '../../../src/util/logger.js'
import { A, announceBody, B, C, entry, SUB } from '../jobs/fixtures.js'

const node = (id: PeerIdString): MeshNode => ({
  id,
  engines: [{ name: 'test', version: '1.0.0' }],
  slots: 1,
  tags: [],
})

/** A job of `submitter` whose chunk 0 failed 3 times on A and on B: both blocklisted. */
function stuckJob(submitter = SUB): JobState {
  const es: LogEntry[] = [entry('announce', announceBody({ frames: [1], submitter }), 1, submitter)]
  let clock = 2
  for (let attempt = 1; attempt <= 6; attempt++) {
    const who = attempt % 2 ? A : B
    es.push(entry('claim', { chunk: 0, attempt }, clock++, who))
    es.push(entry('fail', { chunk: 0, attempt, reason: 'boom' }, clock++, who))
  }
  return reduceJob(es)!
}

function setup(opts: { graceMs?: number; warmupMs?: number; failAppends?: number } = {}) {
  const clock = new FakeClock(0)
  let jobs = [stuckJob()]
  let nodes = [node(SUB), node(A), node(B)]
  let failAppends = opts.failAppends ?? 0
  const aborts: { jobId: string; reason: string }[] = []
  const w = createNoEligibleWatchdog(
    {
      self: SUB,
      clock,
      jobs: () => jobs,
      nodes: () => nodes,
      abort: async (jobId, reason) => {
        if (failAppends-- > 0) throw new Error('log closed')
        aborts.push({ jobId, reason })
        // As the reducer does at once: the job is failed.
        jobs = jobs.map((j) => (j.jobId === jobId ? { ...j, state: 'failed' } : j))
      },
      logger: silentLogger,
    },
    { graceMs: opts.graceMs ?? 3_000, warmupMs: opts.warmupMs, tickMs: 500 },
  )
  // The submitter node cannot run the job either (no engine).
  nodes[0] = { ...nodes[0], engines: [] }
  const advance = async (ms: number) => {
    for (let t = 0; t < ms; t += 100) {
      clock.advance(100)
      for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r))
    }
  }
  return {
    w,
    aborts,
    advance,
    setJobs: (j: JobState[]) => {
      jobs = j
    },
    setNodes: (n: MeshNode[]) => {
      nodes = n
    },
    nodes: () => nodes,
  }
}

describe('no-eligible watchdog', () => {
  it('aborts a job of ours stuck for the whole grace period, once, with the verdict as reason', async () => {
    const { w, aborts, advance } = setup()
    w.start()
    await advance(2_400)
    expect(aborts).toEqual([])
    expect(w.remainingMs('abcdefgh')).toBeGreaterThan(0)
    await advance(1_500)
    expect(aborts).toHaveLength(1)
    expect(aborts[0].reason).toMatch(
      /^no eligible node remains: chunk 0 \(frame 1\): every node that can run it failed 3 chunk\(s\) of this job and is blocklisted: /,
    )
    await advance(3_000)
    expect(aborts).toHaveLength(1)
    w.stop()
  })

  it('a node that can run it appearing for one check resets the grace (presence flaps never fail a job)', async () => {
    const { w, aborts, advance, setNodes, nodes } = setup()
    const without = nodes()
    w.start()
    await advance(2_000)
    setNodes([...without, node(C)])
    await advance(600)
    expect(w.remainingMs('abcdefgh')).toBeUndefined()
    setNodes(without)
    await advance(2_500)
    expect(aborts).toEqual([])
    await advance(1_000)
    expect(aborts).toHaveLength(1)
    w.stop()
  })

  it("never aborts another submitter's job, nor judges during the warm-up", async () => {
    const other = setup()
    other.setJobs([stuckJob(C)])
    other.w.start()
    await other.advance(10_000)
    expect(other.aborts).toEqual([])
    other.w.stop()

    const warm = setup({ warmupMs: 5_000 })
    warm.w.start()
    await warm.advance(4_900)
    expect(warm.w.remainingMs('abcdefgh')).toBeUndefined()
    await warm.advance(2_900)
    expect(warm.aborts).toEqual([])
    await warm.advance(500)
    expect(warm.aborts).toHaveLength(1)
    warm.w.stop()
  })

  it('a job revived before any check saw it failed gets a whole new grace, then is failed again', async () => {
    const { w, aborts, advance, setJobs } = setup()
    w.start()
    await advance(3_600)
    expect(aborts).toHaveLength(1)
    // A retry at once: live (and still stuck) again before the next check.
    setJobs([stuckJob()])
    await advance(2_500)
    expect(aborts).toHaveLength(1)
    expect(w.remainingMs('abcdefgh')).toBeGreaterThan(0)
    await advance(1_000)
    expect(aborts).toHaveLength(2)
    w.stop()
  })

  it('retries an abort whose append failed', async () => {
    const { w, aborts, advance } = setup({ failAppends: 1 })
    w.start()
    await advance(3_700)
    expect(aborts).toEqual([])
    await advance(500)
    expect(aborts).toHaveLength(1)
    w.stop()
  })
})
