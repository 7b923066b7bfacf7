import { describe, expect, it } from 'vitest'
import { type JobState, reduceJob } from '../../../src/jobs/reducer.js'
import type { LogEntry, PeerIdString } from '../../../src/log/types.js'
import { createDependencyGate, dependencyVerdict } from '../../../src/service/dependency-gate.js'
import { FakeClock } from '../../../src/util/clock.js'
import { silentLogger } from '../../../src/util/logger.js'
import { A, announceBody, entry, outputsFor, SUB } from '../jobs/fixtures.js'

const DEP = 'bcdefghi'
const DEP2 = 'cdefghij'

/** A job of its own log: `jobId` with the given entries after its announce. */
function job(jobId: string, more: (e: typeof entry) => LogEntry[] = () => [], over = {}): JobState {
  const es = [
    entry('announce', announceBody({ jobId, frames: [1], ...over }), 1, SUB),
    ...more(entry),
  ]
  return reduceJob(es.map((x) => ({ ...x, log: `job/${jobId}` as LogEntry['log'] })))!
}
const doneJob = (id: string) =>
  job(id, (e) => [
    e('claim', { chunk: 0, attempt: 1 }, 2, A),
    e('complete', { chunk: 0, attempt: 1, outputs: outputsFor([1]), renderMs: 1 }, 3, A),
  ])

function setup(deps: Record<string, JobState | undefined>, opts: { self?: PeerIdString } = {}) {
  const clock = new FakeClock(0)
  const waiting = job('abcdefgh', () => [], { after: [DEP, DEP2] })
  const written: { jobId: string; kind: string; body: object }[] = []
  const state = { deps: { ...deps } }
  const gate = createDependencyGate(
    {
      self: opts.self ?? SUB,
      clock,
      jobs: () => [waiting],
      job: (id) => state.deps[id],
      append: async (jobId, kind, body) => {
        written.push({ jobId, kind, body })
      },
      logger: silentLogger,
    },
    { unknownGraceMs: 5_000 },
  )
  const settle = async () => {
    clock.advance(0)
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
  }
  return { gate, clock, written, state, settle }
}

describe('dependency verdicts', () => {
  it('done, pending, unknown, or failed with a reason naming the dependency', () => {
    expect(dependencyVerdict(DEP, undefined)).toEqual({ kind: 'unknown' })
    expect(dependencyVerdict(DEP, doneJob(DEP))).toEqual({ kind: 'done' })
    expect(dependencyVerdict(DEP, job(DEP))).toEqual({ kind: 'pending' })
    expect(
      dependencyVerdict(
        DEP,
        job(DEP, (e) => [e('cancel', {}, 2, SUB)]),
      ),
    ).toEqual({
      kind: 'failed',
      reason: `dependency ${DEP} was canceled`,
    })
    expect(
      dependencyVerdict(
        DEP,
        job(DEP, (e) => [e('abort', { reason: 'no node' }, 2, SUB)]),
      ),
    ).toEqual({ kind: 'failed', reason: `dependency ${DEP} failed: no node` })
    expect(dependencyVerdict(DEP, { ...job(DEP), deleted: true }).kind).toBe('failed')
    // Done wins: a dependency deleted after it finished does not fail its dependents.
    expect(dependencyVerdict(DEP, { ...doneJob(DEP), deleted: true }).kind).toBe('done')
  })
})

describe('dependency gate', () => {
  it('writes ready once every dependency is done, not before', async () => {
    const { gate, written, state, settle } = setup({ [DEP]: doneJob(DEP), [DEP2]: job(DEP2) })
    gate.start()
    await settle()
    expect(written).toEqual([])
    state.deps[DEP2] = doneJob(DEP2)
    gate.poke()
    await settle()
    expect(written).toEqual([{ jobId: 'abcdefgh', kind: 'ready', body: {} }])
    gate.stop()
  })

  it('aborts with the failed dependency named', async () => {
    const { gate, written, settle } = setup({
      [DEP]: doneJob(DEP),
      [DEP2]: job(DEP2, (e) => [e('cancel', {}, 2, SUB)]),
    })
    gate.start()
    await settle()
    expect(written).toEqual([
      { jobId: 'abcdefgh', kind: 'abort', body: { reason: `dependency ${DEP2} was canceled` } },
    ])
    gate.stop()
  })

  it('an unknown dependency fails the job only after the grace (its log may be syncing)', async () => {
    const { gate, clock, written, settle } = setup({ [DEP]: job(DEP) })
    gate.start()
    await settle()
    clock.advance(4_000)
    await settle()
    expect(written).toEqual([])
    clock.advance(1_100)
    await settle()
    expect(written).toEqual([
      {
        jobId: 'abcdefgh',
        kind: 'abort',
        body: {
          reason: `dependency ${DEP2} is unknown on this mesh (deleted, or never synced here)`,
        },
      },
    ])
    gate.stop()
  })

  it('judges only the jobs this node submitted', async () => {
    const { gate, written, settle } = setup(
      { [DEP]: doneJob(DEP), [DEP2]: doneJob(DEP2) },
      { self: A },
    )
    gate.start()
    await settle()
    expect(written).toEqual([])
    gate.stop()
  })
})
