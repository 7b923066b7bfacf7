import { describe, expect, it } from 'vitest'
import {
  BEATS_PER_CHUNK,
  FAR_PACE_PER_CHUNK,
  farOpenPerRenderer,
  BULK_OPEN_PER_RENDERER,
  createLeaseManager,
  type JobLogView,
  type LeaseManagerOptions,
  PREFETCH_WITH_COMPLETE_MS,
  prefetchWaitMs,
  STORING_PER_SLOT,
} from '../../../src/jobs/lease-manager.js'
import { MAX_LEASE_STRETCH } from '../../../src/jobs/lease-liveness.js'
import type { ChunkResult, ChunkRunner, ChunkTask } from '../../../src/jobs/runner.js'
import { ChunkDeferredError, ChunkFailedError } from '../../../src/jobs/runner.js'
import { JobFold } from '../../../src/jobs/reducer.js'
import { FakeClock } from '../../../src/util/clock.js'
import { sha256 } from '../../../src/util/hash.js'
import { AbortedError } from '../../../src/util/errors.js'
import { silentLogger } from '../../../src/util/logger.js'
import type { EntryId, LogEntry, LogId, PeerIdString } from '../../../src/log/types.js'
import { jobLogId } from '../../../src/log/types.js'
import { A, announceBody, B, entry, JOB, outputsFor, SUB } from './fixtures.js'

/**
 * A one-replica log: local appends get the next Lamport clock; `inject` plays a remote entry.
 * `issued` lists the kinds appended in call order (before they are written); `hold` keeps
 * appends pending until `release`; an append of a kind in `failKinds` throws.
 */
function memLog(self: PeerIdString) {
  const all: LogEntry[] = []
  const listeners = new Set<(e: LogEntry) => void>()
  const issued: string[] = []
  const failKinds = new Set<string>()
  let held: (() => void)[] | undefined
  let seq = 0
  const add = (e: LogEntry) => {
    all.push(e)
    for (const l of listeners) l(e)
    return e
  }
  const view: JobLogView = {
    async append(log, kind, body) {
      issued.push(kind)
      if (held) await new Promise<void>((r) => held!.push(r))
      if (failKinds.has(kind)) throw new Error(`cannot write ${kind}`)
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
    issued,
    failKinds,
    inject: add,
    kinds: () => all.filter((e) => e.author === self).map((e) => e.kind),
    hold() {
      held = []
    },
    release() {
      const waiting = held ?? []
      held = undefined
      for (const r of waiting) r()
    },
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
  const events: string[] = []
  const runner: ChunkRunner = {
    prepare(task) {
      events.push(`prepare ${task.chunk}/${task.attempt}`)
    },
    start(task, signal, _onProgress, onRendered) {
      events.push(`start ${task.chunk}/${task.attempt}`)
      return new Promise((resolve, reject) => {
        running.set(task.chunk, { task, resolve, reject, signal, onRendered })
        signal.addEventListener('abort', () => reject(new AbortedError('render')), { once: true })
      })
    },
  }
  return { runner, running, events }
}

async function setup(
  opts: {
    frames?: number[]
    slots?: number
    limits?: object
    prefetch?: boolean
    options?: LeaseManagerOptions
    /** Live peers heard before the announce; `renders` answers for them. */
    rivals?: PeerIdString[]
    renders?: boolean
    /** Peers' announced heartbeat pace (presence `every` ÷ our interval). */
    paces?: Map<PeerIdString, number>
    after?: string[]
    /** Appends stay pending from the announce on (memLog `hold`) until `log.release()`. */
    hold?: boolean
  } = {},
) {
  const clock = new FakeClock(0)
  const log = memLog(A)
  const heard = new Map<PeerIdString, number>()
  for (const p of opts.rivals ?? []) heard.set(p, 0)
  const { runner, running, events } = manualRunner()
  const lm = createLeaseManager(
    {
      self: A,
      clock,
      log: log.view,
      liveness: {
        lastHeard: (p) => heard.get(p),
        ...(opts.renders !== undefined ? { renders: () => opts.renders! } : {}),
        ...(opts.paces ? { pace: (p: PeerIdString) => opts.paces!.get(p) ?? 1 } : {}),
      },
      runner,
      capabilities: () => ({
        engines: [{ name: 'test', version: '1.0.0' }],
        slots: opts.slots ?? 1,
        tags: [],
      }),
      logger: silentLogger,
    },
    { prefetch: opts.prefetch ?? false, ...opts.options },
  )
  await lm.start()
  for (const p of opts.rivals ?? []) lm.noteHeartbeat(p, [])
  const tick = async (ms = 0) => {
    clock.advance(ms)
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
  }
  if (opts.hold) log.hold()
  log.inject({
    ...entry(
      'announce',
      announceBody({
        frames: opts.frames ?? [1, 2],
        limits: opts.limits ?? {},
        ...(opts.after ? { after: opts.after } : {}),
      }),
      1,
      SUB,
    ),
    id: 'ann' as EntryId,
  })
  await tick()
  return { clock, log, heard, running, lm, tick, events }
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

  it('asks the runner to prepare (fetch the scene) when it claims, before the render starts', async () => {
    const { log, events, lm } = await setup({ frames: [1] })
    expect(events).toEqual(['prepare 0/1', 'start 0/1'])
    expect(log.kinds()).toEqual(['claim'])
    await lm.stop()
  })

  it('claims nothing with no render slot, not even ahead with prefetch', async () => {
    const { log, running, lm, tick } = await setup({ frames: [1, 2, 3], slots: 0, prefetch: true })
    await tick(5_000)
    expect(log.kinds()).toEqual([])
    expect(running.size).toBe(0)
    expect(lm.heldLeases()).toEqual([])
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

  it('starts the prefetched chunk once the engine is done, and claims the next with its complete', async () => {
    const { log, running, lm, tick } = await setup({ frames: [1, 2, 3, 4], prefetch: true })
    expect(log.kinds()).toEqual(['claim', 'claim'])
    expect(running.size).toBe(1)
    const [first] = [...running.values()]
    first.onRendered?.()
    await tick()
    // The prefetched chunk renders while the first one's outputs are stored; the next claim
    // waits for the complete entry, so the two leave in one gossip message.
    expect(running.size).toBe(2)
    expect(log.kinds()).toEqual(['claim', 'claim'])
    first.resolve({ outputs: outputsFor([...first.task.frames]), renderMs: 5 })
    await tick()
    await tick() // the complete schedules the next pass
    expect(log.kinds()).toEqual(['claim', 'claim', 'complete', 'claim'])
    expect(lm.heldLeases()).toHaveLength(2)
    expect(lm.stats()).toMatchObject({ rendersStarted: 2, completes: 1 })
    await lm.stop()
  })

  it('a slow store does not idle the renderer: the next claim goes out after PREFETCH_WITH_COMPLETE_MS', async () => {
    const { log, running, lm, tick } = await setup({ frames: [1, 2, 3, 4], prefetch: true })
    const [first] = [...running.values()]
    first.onRendered?.()
    await tick()
    expect(log.kinds()).toEqual(['claim', 'claim'])
    await tick(PREFETCH_WITH_COMPLETE_MS - 1)
    expect(log.kinds()).toEqual(['claim', 'claim'])
    await tick(1)
    await tick()
    expect(log.kinds()).toEqual(['claim', 'claim', 'claim'])
    expect(lm.heldLeases()).toHaveLength(3)
    await lm.stop()
  })

  it('claims a chunk it owns by rendezvous hash among the live renderers first', async () => {
    const frames = [1, 2, 3, 4, 5, 6, 7, 8]
    const rank = (chunk: number, peer: string) => {
      const h = sha256(new TextEncoder().encode(`${JOB}\u0000${chunk}\u0000${peer}`))
      return (
        h[0] * 2 ** 40 + h[1] * 2 ** 32 + h[2] * 2 ** 24 + h[3] * 2 ** 16 + h[4] * 2 ** 8 + h[5]
      )
    }
    const best = (chunks: number[]) => chunks.reduce((a, b) => (rank(b, A) > rank(a, A) ? b : a))
    const all = frames.map((_, i) => i)
    const mine = all.filter((c) => rank(c, A) > rank(c, B))
    // The fixture ids must make the two rules differ, or the test proves nothing.
    expect(mine.length).toBeGreaterThan(0)
    expect(mine).not.toContain(best(all))
    const withRival = await setup({ frames, rivals: [B] })
    expect([...withRival.running.keys()]).toEqual([best(mine)])
    await withRival.lm.stop({ release: false })
    // A rival that does not render owns nothing: the best-ranked chunk overall.
    const idle = await setup({ frames, rivals: [B], renders: false })
    expect([...idle.running.keys()]).toEqual([best(all)])
    await idle.lm.stop({ release: false })
  })

  it('claims no more while STORING_PER_SLOT chunks per slot are still storing', async () => {
    const { log, running, lm, tick } = await setup({ frames: [1, 2, 3, 4, 5, 6], prefetch: true })
    const claims = () => log.kinds().filter((k) => k === 'claim').length
    const stored: ReturnType<typeof running.get>[] = []
    // Each rendered chunk keeps storing; the next (prefetched) one starts and another is claimed.
    for (let i = 0; i < STORING_PER_SLOT; i++) {
      const current = [...running.values()].find((r) => !stored.includes(r))!
      current.onRendered?.()
      stored.push(current)
      await tick(PREFETCH_WITH_COMPLETE_MS)
      await tick()
    }
    expect(claims()).toBe(2 + STORING_PER_SLOT - 1)
    expect(lm.heldLeases()).toHaveLength(claims())
    // A store finishing frees room for one more claim.
    stored[0]!.resolve({ outputs: outputsFor([...stored[0]!.task.frames]), renderMs: 5 })
    await tick()
    await tick()
    expect(claims()).toBe(2 + STORING_PER_SLOT)
    expect(log.kinds()).toContain('complete')
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

  it('a pause lets the running chunk finish, hands back a prefetched one, claims nothing; a resume claims at once', async () => {
    const { log, running, lm, tick } = await setup({ frames: [1, 2, 3, 4], prefetch: true })
    // Rendering chunk 0, chunk 1 prefetched (queued).
    expect(log.kinds()).toEqual(['claim', 'claim'])
    const [first] = [...running.values()]
    const queued = (log.all[2].body as { chunk: number }).chunk
    log.inject({ ...entry('pause', {}, 10, SUB), id: 'pause' as EntryId })
    await tick()
    expect(lm.job(JOB)!.state).toBe('paused')
    expect(first.signal.aborted).toBe(false)
    expect(log.kinds()).toEqual(['claim', 'claim', 'release'])
    expect(log.all.at(-1)!.body).toMatchObject({ chunk: queued, reason: 'job paused' })
    first.resolve({ outputs: outputsFor([...first.task.frames]), renderMs: 5 })
    await tick(5_000)
    expect(log.kinds()).toEqual(['claim', 'claim', 'release', 'complete'])
    expect(lm.heldLeases()).toEqual([])
    log.inject({ ...entry('resume', {}, 20, SUB), id: 'resume' as EntryId })
    await tick()
    expect(lm.job(JOB)!.state).toBe('rendering')
    expect(log.kinds().slice(4)).toContain('claim')
    await lm.stop()
  })

  it('a job waiting for its dependencies is not claimed until its ready entry', async () => {
    const { log, lm, tick } = await setup({ frames: [1], after: ['bcdefghi'] })
    await tick(5_000)
    expect(lm.job(JOB)!.state).toBe('waiting')
    expect(log.kinds()).toEqual([])
    log.inject({ ...entry('ready', {}, 5, SUB), id: 'ready' as EntryId })
    await tick()
    expect(log.kinds()).toEqual(['claim'])
    await lm.stop()
  })

  it('an abort (no eligible node left) stops the render like a cancel and nothing is claimed after', async () => {
    const { log, running, lm, tick } = await setup({ frames: [1, 2] })
    log.inject({ ...entry('abort', { reason: 'stuck' }, 5, SUB), id: 'abort' as EntryId })
    await tick()
    expect(running.size).toBe(1)
    expect([...running.values()][0].signal.aborted).toBe(true)
    expect(lm.heldLeases()).toEqual([])
    expect(lm.job(JOB)).toMatchObject({ state: 'failed', abortReason: 'stuck' })
    await tick(5_000)
    expect(log.kinds()).toEqual(['claim'])
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

  it('a deferred render (scene unreachable) is released, not failed, and the job is left alone for deferMs', async () => {
    const { log, running, lm, tick } = await setup({
      frames: [1],
      options: { deferMs: 5_000 },
    })
    running.get(0)!.reject(new ChunkDeferredError('could not fetch the scene: ERR_NO_PROVIDERS'))
    running.clear()
    await tick()
    expect(log.kinds()).toEqual(['claim', 'release'])
    const c = lm.job(JOB)!.chunks[0]
    expect(c).toMatchObject({ state: 'open', failures: [] })
    expect(lm.job(JOB)!.blocklist).toEqual([])
    expect(lm.stats().deferrals).toBe(1)
    // Not taken again before deferMs (no hot claim/release loop while the submitter is away)...
    await tick(4_000)
    expect(running.size).toBe(0)
    // ...then tried again.
    await tick(1_500)
    expect(log.kinds()).toEqual(['claim', 'release', 'claim'])
    expect(running.size).toBe(1)
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

  it("a holder's own log gossip counts as a heartbeat listing its leases, and only while it lasts", async () => {
    const { log, lm, tick } = await setup({ frames: [1] })
    log.inject({ ...entry('claim', { chunk: 0, attempt: 2 }, 10, B), id: 'b2' as EntryId })
    await tick()
    // B sends no heartbeat at all, but publishes log messages (its completes and claims of
    // other chunks): its lease stays alive well past the lease timeout.
    for (let i = 0; i < 15; i++) {
      lm.notePublished(B)
      await tick(1_000)
    }
    expect(lm.job(JOB)!.chunks[0].holder).toBe(B)
    // B's last message was a second ago; a log message of our own proves nothing about B.
    for (let i = 0; i < 8; i++) {
      lm.notePublished(A)
      await tick(1_000)
    }
    expect(lm.job(JOB)!.chunks[0].holder).toBe(B)
    await tick(1_500)
    expect(lm.job(JOB)!.chunks[0]).toMatchObject({ holder: A, attempt: 3 })
    expect(lm.stats().reclaims).toBe(1)
    await lm.stop({ release: false })
  })

  it('a chatty holder that never finishes still loses its lease to the chunk timeout', async () => {
    const { log, lm, tick } = await setup({
      frames: [1],
      options: { defaultChunkTimeoutMs: 20_000 },
    })
    log.inject({ ...entry('claim', { chunk: 0, attempt: 2 }, 10, B), id: 'b2' as EntryId })
    await tick()
    for (let i = 0; i < 19; i++) {
      lm.notePublished(B)
      await tick(1_000)
    }
    expect(lm.job(JOB)!.chunks[0].holder).toBe(B)
    lm.notePublished(B)
    await tick(1_500)
    expect(lm.job(JOB)!.chunks[0]).toMatchObject({ holder: A, attempt: 3 })
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

  it('a holder beating at a slower pace keeps its lease that many times longer, at most MAX_LEASE_STRETCH', async () => {
    for (const [pace, timeoutMs] of [
      [2.5, 25_000],
      [100, MAX_LEASE_STRETCH * 10_000],
    ]) {
      const { log, lm, tick } = await setup({ frames: [1], paces: new Map([[B, pace]]) })
      log.inject({ ...entry('claim', { chunk: 0, attempt: 2 }, 10, B), id: 'b2' as EntryId })
      await tick(timeoutMs - 1_000)
      expect(lm.job(JOB)!.chunks[0].holder).toBe(B)
      await tick(1_500)
      expect(lm.job(JOB)!.chunks[0]).toMatchObject({ holder: A, attempt: 3 })
      await lm.stop({ release: false })
    }
  })

  it('asks for heartbeats at half the typical chunk time of the jobs it holds, once one is known', async () => {
    const { running, lm, tick } = await setup({ frames: [1, 2, 3] })
    expect(lm.heldLeases()).toHaveLength(1)
    expect(lm.heartbeatPace()).toBeUndefined()
    const [first] = [...running.values()]
    first.resolve({ outputs: outputsFor([...first.task.frames]), renderMs: 6_000 })
    await tick()
    await tick()
    expect(lm.heldLeases()).toHaveLength(1)
    expect(lm.heartbeatPace()).toEqual({ ms: 6_000 / BEATS_PER_CHUNK, farFromEnd: false })
    await lm.stop({ release: false })
  })

  it('beats every 1.5 typical chunks while its jobs have many open chunks per renderer, twice a chunk near their end', async () => {
    // This node the only renderer, the default lease timeout of 5 heartbeats: far from the
    // end while BULK_OPEN_PER_RENDERER chunks are open.
    const bulkFrom = BULK_OPEN_PER_RENDERER
    // 6-s chunks, 2-s interval, 10-s lease timeout: a 10-s far pace (5 × 2 s), a 50-s wait,
    // 8.3 chunks: 10.8 open chunks per renderer.
    expect(farOpenPerRenderer(6_000, 2_000, 10_000)).toBeCloseTo(50 / 6 + 2.5)
    expect(farOpenPerRenderer(20_000, 2_000, 10_000)).toBe(BULK_OPEN_PER_RENDERER)
    // A lease timeout of 8 heartbeats waits 12 chunk times at the far pace: 14.5 needed.
    expect(farOpenPerRenderer(1_000, 250, 2_000)).toBe(14.5)
    // Chunks shorter than the interval: the far pace is the interval, a longer wait in chunks.
    expect(farOpenPerRenderer(500, 2_000, 10_000)).toBe(22.5)
    expect(farOpenPerRenderer(0, 2_000, 10_000)).toBe(Number.POSITIVE_INFINITY)
    const frames = Array.from({ length: bulkFrom + 3 }, (_, i) => i + 1)
    const { running, lm, tick } = await setup({ frames })
    const finishOne = async () => {
      const [{ chunk }] = lm.heldLeases()
      const task = running.get(chunk)!
      running.delete(chunk)
      task.resolve({ outputs: outputsFor([...task.task.frames]), renderMs: 6_000 })
      await tick()
      await tick()
    }
    await finishOne()
    // One chunk done, one held: bulkFrom + 1 open.
    expect(lm.heartbeatPace()).toEqual({ ms: 6_000 * FAR_PACE_PER_CHUNK, farFromEnd: true })
    await finishOne()
    await finishOne()
    // bulkFrom − 1 open: the job's end is near, a dead holder would now hold it up.
    expect(lm.heartbeatPace()).toEqual({ ms: 6_000 / BEATS_PER_CHUNK, farFromEnd: false })
    await lm.stop({ release: false })
  })

  it('before any chunk of a job finished, far from its end, paces by the time its chunk has rendered', async () => {
    const far = Array.from({ length: BULK_OPEN_PER_RENDERER + 5 }, (_, i) => i + 1)
    // With a chunk claimed ahead (prefetch): it counts by the job's running chunk.
    const { lm, tick } = await setup({ frames: far, prefetch: true })
    await tick()
    expect(lm.heldLeases()).toHaveLength(2)
    // Just started: nothing known, the busy interval.
    expect(lm.heartbeatPace()).toBeUndefined()
    await tick(4_000)
    // Rendering for 4 s: its render time is at least that.
    expect(lm.heartbeatPace()).toEqual({ ms: 4_000 * FAR_PACE_PER_CHUNK, farFromEnd: true })
    await lm.stop({ release: false })
    // Near the end (3 chunks), the same wait says nothing: the busy interval.
    const near = await setup({ frames: [1, 2, 3] })
    await near.tick(4_000)
    expect(near.lm.heartbeatPace()).toBeUndefined()
    await near.lm.stop({ release: false })
  })

  it('reopens a heartbeating lease older than stragglerFactor × the median render time', async () => {
    // 2 s renders × factor 10 = 20 s, above the 10 s lease timeout: the straggler bound rules.
    const { log, running, lm, tick, heard, clock } = await setup({ frames: [1, 2] })
    const [mine] = [...running.values()]
    const other = 1 - mine.task.chunk
    log.inject({ ...entry('claim', { chunk: other, attempt: 1 }, 10, B), id: 'b1' as EntryId })
    await tick()
    mine.resolve({ outputs: outputsFor([...mine.task.frames]), renderMs: 2_000 })
    await tick()
    const beat = async (n: number) => {
      for (let i = 0; i < n; i++) {
        heard.set(B, clock.monotonic())
        lm.noteHeartbeat(B, [{ jobId: JOB, chunk: other, attempt: 1 }])
        await tick(1_000)
      }
    }
    await beat(19)
    expect(lm.job(JOB)!.chunks[other]).toMatchObject({ holder: B, attempt: 1 })
    await beat(2)
    expect(lm.job(JOB)!.chunks[other]).toMatchObject({ holder: A, attempt: 2 })
    expect(lm.stats().reclaims).toBe(1)
    await lm.stop({ release: false })
  })

  it('with stragglerFactor 0 a heartbeating lease is never reopened', async () => {
    const { log, running, lm, tick, heard, clock } = await setup({
      frames: [1, 2],
      options: { stragglerFactor: 0 },
    })
    const [mine] = [...running.values()]
    const other = 1 - mine.task.chunk
    log.inject({ ...entry('claim', { chunk: other, attempt: 1 }, 10, B), id: 'b1' as EntryId })
    await tick()
    mine.resolve({ outputs: outputsFor([...mine.task.frames]), renderMs: 100 })
    await tick()
    for (let i = 0; i < 60; i++) {
      heard.set(B, clock.monotonic())
      lm.noteHeartbeat(B, [{ jobId: JOB, chunk: other, attempt: 1 }])
      await tick(1_000)
    }
    expect(lm.job(JOB)!.chunks[other]).toMatchObject({ holder: B, attempt: 1 })
    expect(lm.stats().reclaims).toBe(0)
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

  it('claims a job needing a device only once a matching version has it', async () => {
    const clock = new FakeClock(0)
    const log = memLog(A)
    const { runner } = manualRunner()
    let devices = [{ engine: 'blender', version: '3.4.1', kinds: ['cpu' as const] }]
    const lm = createLeaseManager({
      self: A,
      clock,
      log: log.view,
      liveness: { lastHeard: () => undefined },
      runner,
      capabilities: () => ({
        engines: [{ name: 'blender', version: '3.4.1' }],
        slots: 1,
        tags: [],
        devices,
      }),
      logger: silentLogger,
    })
    await lm.start()
    log.inject({
      ...entry(
        'announce',
        announceBody({ engine: { name: 'blender' }, requirements: { device: 'optix' } }),
        1,
        SUB,
      ),
      id: 'x' as EntryId,
      log: jobLogId(JOB),
    })
    const tick = async () => {
      clock.advance(1_000)
      for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r))
    }
    await tick()
    expect(log.kinds()).toEqual([])
    devices = [{ engine: 'blender', version: '3.4.1', kinds: ['cpu', 'optix'] as never }]
    await tick()
    expect(log.kinds()).toContain('claim')
    await lm.stop()
  })
})

describe('lease manager: a complete and the next claim in one message', () => {
  /** The render started last. */
  const latest = <T>(running: Map<number, T>): T => [...running.values()].at(-1)!
  const finish = (r: { task: ChunkTask; resolve: (r: ChunkResult) => void }) =>
    r.resolve({ outputs: outputsFor([...r.task.frames]), renderMs: 5 })

  it('decides the next claim before writing the complete and issues both back to back', async () => {
    const { log, running, lm, tick, events } = await setup({ frames: [1, 2, 3] })
    expect(log.kinds()).toEqual(['claim'])
    log.hold()
    finish(latest(running))
    await tick()
    // Both appends were issued while the complete was still being written: nothing awaited
    // between them, so they land in the same publish window (one gossip message).
    expect(log.issued).toEqual(['claim', 'complete', 'claim'])
    expect(log.kinds()).toEqual(['claim'])
    log.release()
    await tick()
    expect(log.kinds()).toEqual(['claim', 'complete', 'claim'])
    expect(events.filter((e) => e.startsWith('start'))).toHaveLength(2)
    expect(lm.heldLeases()).toHaveLength(1)
    expect(lm.stats()).toMatchObject({
      claims: 2,
      completes: 1,
      claimsWithComplete: 1,
      claimsWithCompleteApart: 0,
    })
    await lm.stop()
  })

  it('a claim and its prefetch are decided together and issued back to back', async () => {
    const { log, running, lm, tick } = await setup({
      frames: [1, 2, 3, 4],
      prefetch: true,
      hold: true,
    })
    expect(log.issued).toEqual(['claim', 'claim'])
    expect(log.kinds()).toEqual([])
    log.release()
    await tick()
    expect(log.kinds()).toEqual(['claim', 'claim'])
    expect(running.size).toBe(1)
    expect(lm.heldLeases()).toHaveLength(2)
    await lm.stop()
  })

  it("the job's tail: the last complete goes alone", async () => {
    const { log, running, lm, tick } = await setup({ frames: [1, 2] })
    finish(latest(running))
    await tick()
    finish(latest(running))
    await tick()
    expect(log.kinds()).toEqual(['claim', 'complete', 'claim', 'complete'])
    expect(lm.job(JOB)!.state).toBe('done')
    expect(lm.stats()).toMatchObject({ claims: 2, claimsWithComplete: 1 })
    await lm.stop()
  })

  it('with a prefetched chunk rendering, the claim after next leaves with the complete', async () => {
    const { log, running, lm, tick } = await setup({ frames: [1, 2, 3, 4, 5], prefetch: true })
    expect(log.kinds()).toEqual(['claim', 'claim'])
    const [first] = [...running.values()]
    first.onRendered?.()
    await tick()
    log.hold()
    first.resolve({ outputs: outputsFor([...first.task.frames]), renderMs: 5 })
    await tick()
    expect(log.issued.slice(2)).toEqual(['complete', 'claim'])
    log.release()
    await tick()
    expect(log.kinds()).toEqual(['claim', 'claim', 'complete', 'claim'])
    expect(lm.heldLeases()).toHaveLength(2)
    expect(lm.stats().claimsWithComplete).toBe(1)
    await lm.stop()
  })

  it('once a typical render is known, a prefetch waits half of it for the complete', async () => {
    const { log, running, lm, tick } = await setup({ frames: [1, 2, 3, 4, 5, 6], prefetch: true })
    const [first] = [...running.values()]
    first.resolve({ outputs: outputsFor([...first.task.frames]), renderMs: 2_000 })
    await tick()
    expect(log.kinds()).toEqual(['claim', 'claim', 'complete', 'claim'])
    expect(prefetchWaitMs(2_000)).toBe(1_000)
    // The prefetched chunk stores, the one claimed with the complete renders.
    const second = [...running.values()].at(-1)!
    second.onRendered?.()
    await tick()
    await tick(PREFETCH_WITH_COMPLETE_MS)
    await tick(1_000 - PREFETCH_WITH_COMPLETE_MS - 1)
    expect(log.kinds()).toHaveLength(4)
    await tick(1)
    await tick()
    expect(log.kinds()).toEqual(['claim', 'claim', 'complete', 'claim', 'claim'])
    await lm.stop()
  })

  it('a claim that cannot be written starts no render and frees its slot; a later pass claims', async () => {
    const { log, running, lm, tick, events } = await setup({ frames: [1, 2, 3] })
    log.failKinds.add('claim')
    finish(latest(running))
    await tick()
    expect(log.kinds()).toEqual(['claim', 'complete'])
    expect(log.issued).toEqual(['claim', 'complete', 'claim'])
    expect(events.filter((e) => e.startsWith('start'))).toHaveLength(1)
    expect(lm.heldLeases()).toEqual([])
    expect(lm.sizes().tasks).toBe(0)
    log.failKinds.delete('claim')
    await tick(1_000)
    expect(log.kinds()).toEqual(['claim', 'complete', 'claim'])
    expect(events.filter((e) => e.startsWith('start'))).toHaveLength(2)
    await lm.stop()
  })

  it('a complete that cannot be written: the next claim still goes, the chunk is released', async () => {
    const { log, running, lm, tick } = await setup({ frames: [1, 2, 3] })
    log.failKinds.add('complete')
    const first = latest(running)
    finish(first)
    await tick()
    await tick() // the pass after the failed write
    // As before this change: the lease of the unrecorded chunk is handed back ('not
    // running') so the chunk is rendered again, here or elsewhere.
    expect(log.kinds()).toEqual(['claim', 'claim', 'release'])
    expect(log.all.at(-1)!.body).toMatchObject({ chunk: first.task.chunk, reason: 'not running' })
    expect(lm.heldLeases()).toHaveLength(1)
    expect(lm.job(JOB)!.chunks[first.task.chunk].state).toBe('open')
    await lm.stop()
  })

  it("a claim in another job's log is counted apart", async () => {
    const OTHER = 'ijklmnop'
    const { log, running, lm, tick } = await setup({ frames: [1] })
    log.inject({
      ...entry('announce', announceBody({ jobId: OTHER, frames: [1, 2] }), 2, SUB),
      id: 'ann2' as EntryId,
      log: jobLogId(OTHER),
    })
    await tick()
    expect(log.kinds()).toEqual(['claim'])
    log.hold()
    finish(latest(running))
    await tick()
    expect(log.issued).toEqual(['claim', 'complete', 'claim'])
    log.release()
    await tick()
    const mine = log.all.filter((e) => e.author === A)
    expect(mine.map((e) => [e.kind, e.log])).toEqual([
      ['claim', jobLogId(JOB)],
      ['complete', jobLogId(JOB)],
      ['claim', jobLogId(OTHER)],
    ])
    expect(lm.stats()).toMatchObject({ claimsWithComplete: 1, claimsWithCompleteApart: 1 })
    await lm.stop()
  })
})

describe('lease manager memory', () => {
  /** Render the job's only chunk to done and ack it as the submitter. */
  async function doneAndAcked() {
    const t = await setup({ frames: [1] })
    t.running.get(0)!.resolve({ outputs: outputsFor([1]), renderMs: 5 })
    await t.tick()
    t.log.inject({ ...entry('ack', { chunks: [0] }, 10, SUB), id: 'ack' as EntryId })
    await t.tick()
    expect(t.lm.job(JOB)).toMatchObject({ state: 'done', allAcked: true })
    return t
  }

  it('tells onRest on each change: rest when a tick finds no live job, work when an entry arrives', async () => {
    const rest: boolean[] = []
    const { log, running, lm, tick } = await setup({
      frames: [1],
      options: { onRest: (r) => rest.push(r) },
    })
    // The first tick (no job yet) rests; the pass that follows start() and the announce wake it.
    expect(rest).toEqual([true, false])
    await tick(1_000)
    expect(rest).toEqual([true, false])
    running.get(0)!.resolve({ outputs: outputsFor([1]), renderMs: 5 })
    await tick()
    expect(lm.job(JOB)!.state).toBe('done')
    expect(rest).toEqual([true, false])
    await tick(1_000)
    expect(rest).toEqual([true, false, true])
    log.inject({ ...entry('ack', { chunks: [0] }, 10, SUB), id: 'ack' as EntryId })
    await tick()
    expect(rest).toEqual([true, false, true, false])
    await lm.stop()
  })

  it('a deleted job leaves a chunk-less tombstone and ignores later entries', async () => {
    const { log, lm, tick } = await doneAndAcked()
    log.inject({ ...entry('delete', {}, 20, SUB), id: 'del' as EntryId })
    await tick()
    expect(lm.job(JOB)).toMatchObject({ deleted: true, chunks: [] })
    expect(lm.jobs()).toEqual([])
    expect(lm.sizes()).toMatchObject({ folds: 0, foldEntries: 0, tombstones: 1 })
    log.inject({ ...entry('claim', { chunk: 0, attempt: 2 }, 21, B), id: 'late' as EntryId })
    await tick()
    expect(lm.sizes()).toMatchObject({ folds: 0, tombstones: 1 })
    expect(lm.job(JOB)?.deleted).toBe(true)
    await lm.stop()
  })

  it("a sealed job's fold is rebuilt from its seal: same state, no history", async () => {
    const { log, lm, tick } = await doneAndAcked()
    log.inject({
      ...entry('seal', { state: structuredClone(lm.job(JOB)) }, 30, SUB),
      id: 'seal' as EntryId,
    })
    await tick()
    const full = new JobFold()
    for (const e of log.all) full.add(e)
    expect(full.state?.sealedBy).toBe('seal')
    expect(lm.job(JOB)).toEqual(full.state)
    expect(lm.sizes()).toMatchObject({ folds: 1, foldEntries: 1 })
    // An entry from before the seal arriving late changes nothing, as in the full fold.
    const late = { ...entry('fail', { chunk: 0, attempt: 1, reason: 'x' }, 3, B), id: 'old' }
    log.inject(late as LogEntry)
    full.add(late as LogEntry)
    await tick()
    expect(lm.job(JOB)).toEqual(full.state)
    await lm.stop()
  })

  it('forgets the ranking and liveness caches of jobs no longer live', async () => {
    const { log, lm, tick } = await setup({ frames: [1, 2, 3] })
    expect(lm.sizes().scores).toBeGreaterThan(0)
    log.inject({ ...entry('cancel', {}, 10, SUB), id: 'cancel' as EntryId })
    await tick()
    // The prune runs every 30 ticks of 1 s.
    for (let i = 0; i < 31; i++) await tick(1_000)
    expect(lm.sizes()).toMatchObject({ scores: 0, typical: 0, firstSeen: 0 })
    await lm.stop()
  })
})

describe('lease manager: handing leases back (node pause, schedule, idle-only)', () => {
  it('running false releases only the chunk claimed ahead; running true aborts and releases the render', async () => {
    const { log, running, lm, tick } = await setup({ frames: [1, 2, 3, 4], prefetch: true })
    expect(log.kinds()).toEqual(['claim', 'claim'])
    const [render] = [...running.values()]
    const releases = () =>
      log.all.filter((e) => e.author === A && e.kind === 'release').map((e) => e.body)
    expect(await lm.handBack({ running: false, reason: 'draining' })).toBe(1)
    expect(render.signal.aborted).toBe(false)
    expect(releases()).toHaveLength(1)
    expect(releases()[0]).toMatchObject({ reason: 'draining' })
    expect(lm.heldLeases().some((l) => l.chunk === render.task.chunk)).toBe(true)
    await tick()
    const n = releases().length
    await lm.handBack({ running: true, reason: 'paused by its owner' })
    expect(render.signal.aborted).toBe(true)
    expect(releases().length).toBeGreaterThan(n)
    expect(releases()).toContainEqual(
      expect.objectContaining({ chunk: render.task.chunk, attempt: render.task.attempt }),
    )
    // Released, not failed: no failure counted, and the aborted render writes nothing.
    await tick()
    expect(log.kinds()).not.toContain('fail')
    expect(lm.job(JOB)!.chunks.every((c) => c.failures.length === 0)).toBe(true)
    await lm.stop({ release: false })
  })
})
