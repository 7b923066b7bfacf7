import { describe, expect, it } from 'vitest'
import { createLeaseManager, type JobLogView } from '../../../src/jobs/lease-manager.js'
import type { ChunkResult, ChunkRunner, ChunkTask } from '../../../src/jobs/runner.js'
import { ChunkFailedError } from '../../../src/jobs/runner.js'
import { FakeClock } from '../../../src/util/clock.js'
import { AbortedError } from '../../../src/util/errors.js'
import { silentLogger } from '../../../src/util/logger.js'
import type { EntryId, LogEntry, LogId, PeerIdString } from '../../../src/log/types.js'
import { jobLogId } from '../../../src/log/types.js'
import { A, announceBody, B, entry, JOB, outputsFor, SUB } from './fixtures.js'

/** A one-replica log: local appends get the next Lamport clock; `inject` plays a remote entry. */
function memLog(self: PeerIdString) {
  const all: LogEntry[] = []
  const listeners = new Set<(e: LogEntry) => void>()
  let seq = 0
  const add = (e: LogEntry) => {
    all.push(e)
    for (const l of listeners) l(e)
    return e
  }
  const view: JobLogView = {
    async append(log, kind, body) {
      const clock = Math.max(0, ...all.map((e) => e.clock)) + 1
      return add({
        ...entry(kind, structuredClone(body), clock, self),
        id: `local${++seq}` as EntryId,
        log,
      })
    },
    entries: (log: LogId) => all.filter((e) => e.log === log),
    jobLogs: () => [...new Set(all.map((e) => e.log))],
    onEntry(l) {
      listeners.add(l)
      return () => listeners.delete(l)
    },
  }
  return {
    view,
    all,
    inject: add,
    kinds: () => all.filter((e) => e.author === self).map((e) => e.kind),
  }
}

/** A runner whose renders finish when the test says so. */
function manualRunner() {
  const running = new Map<
    number,
    {
      task: ChunkTask
      resolve: (r: ChunkResult) => void
      reject: (e: unknown) => void
      signal: AbortSignal
      onRendered?: () => void
    }
  >()
  const runner: ChunkRunner = {
    start(task, signal, _onProgress, onRendered) {
      return new Promise((resolve, reject) => {
        running.set(task.chunk, { task, resolve, reject, signal, onRendered })
        signal.addEventListener('abort', () => reject(new AbortedError('render')), { once: true })
      })
    },
  }
  return { runner, running }
}

async function setup(
  opts: { frames?: number[]; slots?: number; limits?: object; prefetch?: boolean } = {},
) {
  const clock = new FakeClock(0)
  const log = memLog(A)
  const heard = new Map<PeerIdString, number>()
  const { runner, running } = manualRunner()
  const lm = createLeaseManager(
    {
      self: A,
      clock,
      log: log.view,
      liveness: { lastHeard: (p) => heard.get(p) },
      runner,
      capabilities: () => ({
        engines: [{ name: 'test', version: '1.0.0' }],
        slots: opts.slots ?? 1,
        tags: [],
      }),
      logger: silentLogger,
    },
    { prefetch: opts.prefetch ?? false },
  )
  await lm.start()
  const tick = async (ms = 0) => {
    clock.advance(ms)
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
  }
  log.inject({
    ...entry(
      'announce',
      announceBody({ frames: opts.frames ?? [1, 2], limits: opts.limits ?? {} }),
      1,
      SUB,
    ),
    id: 'ann' as EntryId,
  })
  await tick()
  return { clock, log, heard, running, lm, tick }
}

describe('lease manager', () => {
  it('claims at once on an announce, renders, completes', async () => {
    const { log, running, lm, tick } = await setup({ frames: [1] })
    expect(log.kinds()).toEqual(['claim'])
    expect(running.size).toBe(1)
    expect(lm.heldLeases()).toEqual([{ jobId: JOB, chunk: 0, attempt: 1 }])
    running.get(0)!.resolve({ outputs: outputsFor([1]), renderMs: 5 })
    await tick()
    expect(log.kinds()).toEqual(['claim', 'complete'])
    expect(lm.job(JOB)!.state).toBe('done')
    expect(lm.stats()).toMatchObject({ claims: 1, rendersStarted: 1, completes: 1 })
    await lm.stop()
  })

  it('aborts a render at once when it learns it lost the claim', async () => {
    const { log, running, lm, tick } = await setup({ frames: [1] })
    const r = running.get(0)!
    // A concurrent claim of the same attempt and clock from a lower peer id sorts first.
    log.inject({
      ...entry('claim', { chunk: 0, attempt: 1 }, 2, 'peer-0' as PeerIdString),
      id: 'bclaim' as EntryId,
    })
    await tick()
    expect(r.signal.aborted).toBe(true)
    expect(lm.stats().lostClaims).toBe(1)
    expect(lm.heldLeases()).toEqual([])
    await lm.stop()
  })

  it('starts the prefetched chunk once the engine is done, while outputs are stored', async () => {
    const { log, running, lm, tick } = await setup({ frames: [1, 2, 3, 4], prefetch: true })
    expect(log.kinds()).toEqual(['claim', 'claim'])
    expect(running.size).toBe(1)
    const [first] = [...running.values()]
    first.onRendered?.()
    await tick()
    // The prefetched chunk renders while the first one's outputs are stored...
    expect(running.size).toBe(2)
    // ...and nothing more is claimed until they are.
    expect(log.kinds()).toEqual(['claim', 'claim'])
    expect(lm.heldLeases()).toHaveLength(2)
    first.resolve({ outputs: outputsFor([...first.task.frames]), renderMs: 5 })
    await tick()
    await tick() // the complete schedules the next pass
    expect(log.kinds()).toEqual(['claim', 'claim', 'complete', 'claim'])
    expect(lm.stats()).toMatchObject({ rendersStarted: 2, completes: 1 })
    await lm.stop()
  })

  it('cancel stops the render within the same tick', async () => {
    const { log, running, lm, tick } = await setup({ frames: [1] })
    log.inject({ ...entry('cancel', {}, 5, SUB), id: 'cancel' as EntryId })
    await tick()
    expect(running.get(0)!.signal.aborted).toBe(true)
    expect(lm.heldLeases()).toEqual([])
    await lm.stop()
  })

  it('a failed render becomes a fail entry and the chunk goes to others', async () => {
    const { log, running, lm, tick } = await setup({ frames: [1] })
    running.get(0)!.reject(new ChunkFailedError('engine crashed'))
    await tick()
    expect(log.kinds()).toEqual(['claim', 'fail'])
    expect(lm.job(JOB)!.chunks[0].failures[0]).toMatchObject({ node: A, reason: 'engine crashed' })
    await lm.stop()
  })

  it('reopens a lease whose holder stops listing it in heartbeats, only after leaseTimeoutMs', async () => {
    const { log, running, lm, tick, heard, clock } = await setup({ frames: [1, 2], slots: 2 })
    // A already took both chunks; give B chunk 1 by a higher attempt, as if A were slow.
    running.clear()
    log.inject({ ...entry('claim', { chunk: 1, attempt: 2 }, 10, B), id: 'b2' as EntryId })
    await tick()
    expect(lm.job(JOB)!.chunks[1].holder).toBe(B)
    // B is heard (heartbeats) and lists its lease: stays alive past the timeout.
    for (let i = 0; i < 12; i++) {
      heard.set(B, clock.monotonic())
      lm.noteHeartbeat(B, [{ jobId: JOB, chunk: 1, attempt: 2 }])
      await tick(1_000)
    }
    expect(lm.job(JOB)!.chunks[1].holder).toBe(B)
    // B keeps beating but no longer lists it (last listed 1 s ago): after 10 s A reclaims.
    for (let i = 0; i < 8; i++) {
      heard.set(B, clock.monotonic())
      lm.noteHeartbeat(B, [])
      await tick(1_000)
    }
    expect(lm.job(JOB)!.chunks[1].holder).toBe(B)
    for (let i = 0; i < 2; i++) {
      lm.noteHeartbeat(B, [])
      await tick(1_000)
    }
    expect(lm.job(JOB)!.chunks[1]).toMatchObject({ holder: A, attempt: 3 })
    expect(lm.stats().reclaims).toBe(1)
    await lm.stop({ release: false })
  })

  it('a silent holder (never heard) is dead after leaseTimeoutMs from when the claim was seen', async () => {
    const { log, lm, tick } = await setup({ frames: [1] })
    log.inject({ ...entry('claim', { chunk: 0, attempt: 2 }, 10, B), id: 'b2' as EntryId })
    await tick(9_000)
    expect(lm.job(JOB)!.chunks[0].holder).toBe(B)
    await tick(1_500)
    expect(lm.job(JOB)!.chunks[0]).toMatchObject({ holder: A, attempt: 3 })
    await lm.stop({ release: false })
  })

  it('releases leases the log says it holds but it is not running (after a restart)', async () => {
    const { log, lm } = await setup({ frames: [1] })
    await lm.stop({ release: false })
    const clock = new FakeClock(0)
    const { runner } = manualRunner()
    const lm2 = createLeaseManager(
      {
        self: A,
        clock,
        log: log.view,
        liveness: { lastHeard: () => undefined },
        runner,
        capabilities: () => ({ engines: [{ name: 'test', version: '1' }], slots: 1, tags: [] }),
        logger: silentLogger,
      },
      { prefetch: false },
    )
    await lm2.start()
    clock.advance(0)
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
    const kinds = log.kinds()
    expect(kinds.slice(0, 3)).toEqual(['claim', 'release', 'claim'])
    expect(lm2.job(JOB)!.chunks[0]).toMatchObject({ holder: A, attempt: 2 })
    await lm2.stop()
    expect(log.kinds().at(-1)).toBe('release')
  })

  it('does not claim what it cannot run', async () => {
    const clock = new FakeClock(0)
    const log = memLog(A)
    const { runner } = manualRunner()
    const lm = createLeaseManager({
      self: A,
      clock,
      log: log.view,
      liveness: { lastHeard: () => undefined },
      runner,
      capabilities: () => ({
        engines: [{ name: 'blender', version: '3.4.1' }],
        slots: 1,
        tags: ['gpu'],
      }),
      logger: silentLogger,
    })
    await lm.start()
    log.inject({
      ...entry('announce', announceBody({ engine: { name: 'blender', version: '>=4' } }), 1, SUB),
      id: 'x' as EntryId,
      log: jobLogId(JOB),
    })
    clock.advance(0)
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r))
    expect(log.kinds()).toEqual([])
    await lm.stop()
  })
})
