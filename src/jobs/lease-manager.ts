/**
 * The lease manager: decides, on this node, which chunks to claim and render, and judges
 * other nodes' leases dead. No one is in charge; every node runs one of these over its
 * replica of the job logs.
 *
 * Invariants:
 *  - event-driven: every new entry schedules a pass at once (plus a tick for liveness),
 *    so a frame starts within milliseconds of its announce arriving;
 *  - a node first claims chunks it owns by rendezvous hash among the live renderers it
 *    knows, so concurrent claims rarely collide; ownership is only a preference (a node
 *    with none of its own in the window takes its best-ranked chunk), never a right;
 *  - a render runs only while the local fold says this node holds that (chunk, attempt)
 *    in a live job; the moment it does not (lost race, done elsewhere, cancel, delete,
 *    job failed) the render is aborted and its slot freed;
 *  - liveness is judged only by this node's monotonic clock: a lease is dead when, since
 *    this node first saw the claim, the holder has not listed it in a heartbeat (or, for a
 *    peer that never sent one, not been heard at all) for leaseTimeoutMs, or the attempt
 *    is older than chunkTimeoutMs, or than stragglerFactor × the job's median chunk time
 *    (doubled per attempt): heartbeats alone never hold a chunk forever. Wall clocks never enter;
 *  - those spans count only time since this node's last stall: when its own loop stood
 *    still for half a lease timeout or more (SIGSTOP, a suspended VM; util/stalls.ts),
 *    every silence restarts at the wake, so a node that wakes up does not judge the whole
 *    mesh dead before it reads what queued meanwhile, and it claims nothing new for a
 *    moment (MAX_CATCH_UP_MS at most) so it does not take chunks done while it slept;
 *  - at most `slots` renders run, and at most one extra chunk is held (prefetched) and only
 *    when open chunks outnumber live renderers, so a job's tail is not hoarded; a chunk
 *    whose engine has finished and whose outputs are being stored no longer takes a render
 *    slot (the prefetched chunk starts at once) nor a claim slot (the next chunk is claimed
 *    while the last one stores: storing and writing the complete entry can take longer than
 *    a render on a busy mesh, and must not idle the renderer), but stays held (heartbeats
 *    list it) and at most STORING_PER_SLOT × slots chunks store at once;
 *  - a complete entry is written only with the outputs the runner returned (stored);
 *    a fail entry only for a render that failed on its own, never for one we aborted;
 *  - memory is bounded by live jobs, not by every job ever seen: a deleted job's fold is
 *    dropped for a chunk-less tombstone (the newest MAX_TOMBSTONES kept; its later entries
 *    are ignored), a sealed job's fold is rebuilt from its seal (the same state; what a
 *    restart loads), and per-chunk caches of jobs no longer live are pruned.
 */
import { sha256 } from '../util/hash.js'
import type { Clock, TimerHandle } from '../util/clock.js'
import { createStallWatch } from '../util/stalls.js'
import { AbortedError, describeError, isRmeshError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'
import type { LogEntry, LogId, PeerIdString } from '../log/types.js'
import { jobIdOfLog, jobLogId } from '../log/types.js'
import type { ChunkState, JobState, ReduceOptions } from './reducer.js'
import { JobFold, reduceQueue } from './reducer.js'
import type { ChunkProgress, ChunkResult, ChunkRunner, ChunkTask } from './runner.js'
import { ChunkDeferredError, ChunkFailedError } from './runner.js'
import { nodeCanRun } from './eligibility.js'

/** The narrow view of the job logs the lease manager needs. */
export interface JobLogView {
  /** Sign and append an entry to `log`; resolves with the entry (also delivered to onEntry). */
  append(log: LogId, kind: string, body: unknown): Promise<LogEntry>
  entries(log: LogId): Promise<readonly LogEntry[]> | readonly LogEntry[]
  /** The ids of every job log this node holds (`job/<jobId>`). */
  jobLogs(): Promise<readonly LogId[]> | readonly LogId[]
  /** Every entry newly added to any job log, local appends and remote ones alike. */
  onEntry(listener: (entry: LogEntry) => void): () => void
}

export interface Liveness {
  /** Monotonic ms (this node's clock) of the last presence heartbeat from `peer`. */
  lastHeard(peer: PeerIdString): number | undefined
  /** Whether `peer` renders at all (has render slots); unknown counts as yes. */
  renders?(peer: PeerIdString): boolean
}

export interface NodeCapabilities {
  /** Installed engines; an encode chunk needs one named 'ffmpeg'. */
  engines: readonly { name: string; version: string }[]
  slots: number
  tags: readonly string[]
}

export interface LeaseRef {
  jobId: string
  chunk: number
  attempt: number
}

export interface LeaseManagerComponents {
  self: PeerIdString
  clock: Clock
  log: JobLogView
  liveness: Liveness
  runner: ChunkRunner
  capabilities(): NodeCapabilities
  logger: Logger
}

export interface LeaseManagerOptions extends ReduceOptions {
  /** Default 10 s. */
  leaseTimeoutMs?: number
  /** Liveness re-check period; default 1 s. */
  tickMs?: number
  /** Applies to jobs whose announce sets no chunkTimeoutMs; default none. */
  defaultChunkTimeoutMs?: number
  /**
   * A lease older than this many times the job's median chunk render time is dead, however
   * well its holder heartbeats (the bound doubles with each attempt, never below the lease
   * timeout, and needs STRAGGLER_MIN_SAMPLES finished chunks). Default 10; 0 turns it off.
   */
  stragglerFactor?: number
  /**
   * After a chunk of a job is deferred (ChunkDeferredError: its scene unreachable), this
   * node takes no chunk of that job for this long; default 10 s.
   */
  deferMs?: number
  /** Claim one chunk ahead while rendering; default true. */
  prefetch?: boolean
  /** Open chunks considered at once (in frame order), at least; default 8. */
  window?: number
  /** maxQueuedJobs per submitter (from its token). */
  quotaOf?: (submitter: PeerIdString) => number | undefined
  /** Seal a job this node submitted once it is done and every chunk acked; default true. */
  autoSeal?: boolean
  onProgress?: (task: ChunkTask, progress: ChunkProgress) => void
}

export interface LeaseStats {
  claims: number
  /** Claims (or held leases) this node learned it lost to another node. */
  lostClaims: number
  /** Renders aborted or results dropped because the chunk was already done elsewhere. */
  duplicatesAvoided: number
  rendersStarted: number
  completes: number
  fails: number
  releases: number
  /** Chunks released because they could not start here for now (ChunkDeferredError). */
  deferrals: number
  /** Claims that reopened a lease this node judged dead. */
  reclaims: number
  /** Stalls of this node's own loop seen (util/stalls.ts), and their total length. */
  stalls: number
  stalledMs: number
}

export interface LeaseManager {
  start(): Promise<void>
  /** Abort every render; with release (default) also write release entries for held leases. */
  stop(options?: { release?: boolean }): Promise<void>
  /** The leases this node holds and is rendering or about to render: put them in heartbeats. */
  heldLeases(): LeaseRef[]
  /** Record the leases `peer` says it holds (from its presence heartbeat). */
  noteHeartbeat(peer: PeerIdString, leases: readonly LeaseRef[]): void
  /** A live job's state, or a deleted job's tombstone (deleted, chunks empty). */
  job(jobId: string): JobState | undefined
  /** Every job not deleted. */
  jobs(): JobState[]
  stats(): LeaseStats
  /** Entry counts of the internal maps (for /metrics: they must stay bounded). */
  sizes(): Record<string, number>
}

interface Task {
  jobId: string
  chunk: number
  attempt: number
  phase: 'claiming' | 'queued' | 'running' | 'storing'
  claimedAt: number
  controller: AbortController
}

/** How often the lease manager looks at its own loop for stalls (util/stalls.ts). */
export const STALL_PROBE_MS = 250
/** After a stall, at most this long without new claims while the backlog is read. */
export const MAX_CATCH_UP_MS = 2_000

/** Deleted jobs remembered (as tombstones) so their late entries do not revive a fold. */
export const MAX_TOMBSTONES = 2_000

/**
 * Rendered chunks still storing per render slot before no further claim is made: a bound on
 * the leases a node holds when its disk or log is slower than its renderer.
 */
export const STORING_PER_SLOT = 2

/** Finished chunks needed before a job's typical render time bounds its leases. */
export const STRAGGLER_MIN_SAMPLES = 1

const keyOf = (jobId: string, chunk: number) => `${jobId}/${chunk}`
const leaseKey = (jobId: string, chunk: number, attempt: number, holder: string) =>
  `${jobId}/${chunk}/${attempt}/${holder}`

export function createLeaseManager(
  components: LeaseManagerComponents,
  options: LeaseManagerOptions = {},
): LeaseManager {
  const { self, clock, log, liveness, runner } = components
  const logger = components.logger.child('leases')
  const leaseTimeoutMs = options.leaseTimeoutMs ?? 10_000
  const stragglerFactor = options.stragglerFactor ?? 10
  const typical = new Map<string, { done: number; ms: number | undefined }>()
  const tickMs = options.tickMs ?? 1_000
  const deferMs = options.deferMs ?? 10_000
  const prefetch = options.prefetch ?? true
  const windowMin = options.window ?? 8
  const autoSeal = options.autoSeal ?? true
  const reduceOptions: ReduceOptions = { isAdmin: options.isAdmin }

  const folds = new Map<string, JobFold>()
  const tasks = new Map<string, Task>()
  /** When this node first saw each (chunk, attempt, holder) claim: the liveness baseline. */
  const firstSeen = new Map<string, number>()
  /** Per peer: when its heartbeat last listed each lease. */
  const listed = new Map<string, Map<string, number>>()
  /** Peers known to exist (authors and heartbeat senders), for the live-renderer count. */
  const peers = new Set<PeerIdString>()
  const scores = new Map<string, number>()
  const sealing = new Set<string>()
  /** Leases whose render ended and whose complete/fail entry is being written. */
  const finishing = new Set<string>()
  /** Deleted jobs' last states without chunks, oldest first. */
  const tombstones = new Map<string, JobState>()
  const stats: LeaseStats = {
    claims: 0,
    lostClaims: 0,
    duplicatesAvoided: 0,
    rendersStarted: 0,
    completes: 0,
    fails: 0,
    releases: 0,
    deferrals: 0,
    reclaims: 0,
    stalls: 0,
    stalledMs: 0,
  }
  /** Jobs this node leaves alone until the given monotonic time (a chunk was deferred). */
  const deferredUntil = new Map<string, number>()

  let stopped = true
  let unsubscribe: (() => void) | undefined
  let tickTimer: TimerHandle | undefined
  let scheduled: TimerHandle | undefined
  let pumping = false
  let again = false

  function ingest(entry: LogEntry): void {
    const jobId = jobIdOfLog(entry.log)
    if (jobId === undefined || tombstones.has(jobId)) return
    let fold = folds.get(jobId)
    if (!fold) {
      fold = new JobFold(reduceOptions)
      folds.set(jobId, fold)
    }
    if (!fold.add(entry)) return
    if (entry.author !== self) peers.add(entry.author)
    if (fold.state?.deleted) bury(jobId, fold.state)
    else if (entry.kind === 'seal' && fold.state?.sealedBy === entry.id)
      folds.set(jobId, rebuiltFromSeal(fold, entry))
    schedule()
  }

  /** Forget a deleted job but for a small tombstone; its tasks stop at the next pass. */
  function bury(jobId: string, s: JobState): void {
    folds.delete(jobId)
    typical.delete(jobId)
    sealing.delete(jobId)
    // Without chunks and frame list a tombstone is ~1 KiB, whatever the job's size.
    tombstones.set(jobId, { ...s, chunks: [], job: { ...s.job, frames: [] } })
    if (tombstones.size > MAX_TOMBSTONES) {
      const oldest = tombstones.keys().next().value
      if (oldest !== undefined) tombstones.delete(oldest)
    }
  }

  /**
   * An effective seal replaces the whole state, so the entries sorted before it no longer
   * matter (the log drops them too): a fold of the seal and what follows it is the same
   * state, without the job's history and checkpoints.
   */
  function rebuiltFromSeal(fold: JobFold, seal: LogEntry): JobFold {
    const es = fold.entries
    const from = es.indexOf(seal)
    if (from <= 0) return fold
    const next = new JobFold(reduceOptions)
    for (let i = from; i < es.length; i++) next.add(es[i])
    return next.state?.sealedBy === seal.id ? next : fold
  }

  function schedule(): void {
    if (stopped || scheduled) return
    scheduled = clock.setTimeout(() => {
      scheduled = undefined
      void pump()
    }, 0)
  }

  /**
   * The loop is looked at this often (a no-op timer), so a stall is measured to within it
   * rather than to within a tick.
   */
  const stallProbeMs = Math.min(tickMs, STALL_PROBE_MS)
  let probeTimer: TimerHandle | undefined
  function probe(): void {
    if (stopped) return
    observeLoop(now())
    probeTimer = clock.setTimeout(probe, stallProbeMs)
  }

  /**
   * Stopped for half a lease or more: every silence restarts at the wake. A shorter stall
   * leaves at least half a lease to read what queued meanwhile.
   */
  const newStallWatch = () =>
    createStallWatch({
      periodMs: stallProbeMs,
      minStallMs: leaseTimeoutMs / 2,
      start: clock.monotonic(),
    })
  let stallWatch = newStallWatch()
  /** After a stall, no new claim before this (monotonic): see step 3. */
  let catchUpUntil = Number.NEGATIVE_INFINITY

  /** The loop runs now: record a stall that just ended (probes are due every stallProbeMs). */
  function observeLoop(t: number): void {
    const stalledMs = stallWatch.observe(t)
    if (stalledMs <= 0) return
    stats.stalls++
    stats.stalledMs += Math.round(stalledMs)
    catchUpUntil = t + Math.min(leaseTimeoutMs / 2, MAX_CATCH_UP_MS)
    logger.warn(
      'this node was stalled (stopped, suspended or blocked); its own silence is not counted against peers',
      { stalledMs: Math.round(stalledMs) },
    )
  }

  /** Milliseconds of [since, t] that count as silence (since this node's last stall). */
  const awake = (since: number, t: number) => stallWatch.awake(since, t)

  /** Heard within the lease timeout (counted since this node's last stall). */
  function heardRecently(p: PeerIdString, t: number): boolean {
    const heard = liveness.lastHeard(p)
    return heard !== undefined && awake(heard, t) < leaseTimeoutMs
  }

  let ticks = 0
  function tick(): void {
    if (stopped) return
    if (++ticks % 30 === 0) prune()
    schedule()
    tickTimer = clock.setTimeout(tick, tickMs)
  }

  /**
   * Forget liveness baselines of leases that no longer exist, and the ranking and timing
   * caches of jobs no longer live (recomputed if a retry revives one), so memory stays
   * bounded.
   */
  function prune(): void {
    const current = new Set<string>()
    const live = new Set<string>()
    for (const f of folds.values()) {
      if (jobLive(f.state)) live.add(f.state.jobId)
      for (const c of f.state?.chunks ?? []) {
        if (c.state === 'claimed')
          current.add(leaseKey(f.state!.jobId, c.index, c.attempt, c.holder!))
      }
    }
    for (const k of firstSeen.keys()) if (!current.has(k)) firstSeen.delete(k)
    for (const k of scores.keys()) if (!live.has(k.slice(0, k.indexOf('/')))) scores.delete(k)
    for (const k of typical.keys()) if (!live.has(k)) typical.delete(k)
    const t = now()
    for (const [k, until] of deferredUntil) if (!live.has(k) || until <= t) deferredUntil.delete(k)
  }

  async function pump(): Promise<void> {
    if (pumping) {
      again = true
      return
    }
    pumping = true
    try {
      do {
        again = false
        await step()
      } while (again && !stopped)
    } catch (err) {
      logger.error('lease pass failed', { error: describeError(err) })
    } finally {
      pumping = false
    }
  }

  const now = () => clock.monotonic()

  function chunkTimeoutOf(s: JobState): number | undefined {
    return s.job.limits.chunkTimeoutMs ?? options.defaultChunkTimeoutMs
  }

  function jobLive(s: JobState | undefined): s is JobState {
    return !!s && !s.canceled && !s.deleted && (s.state === 'queued' || s.state === 'rendering')
  }

  function liveRenderers(t: number): number {
    let n = 1
    for (const p of peers) if (heardRecently(p, t)) n++
    return n
  }

  /** Some other live peer has not failed this chunk yet. */
  function untriedPeerAlive(c: ChunkState, t: number): boolean {
    for (const p of peers) {
      if (heardRecently(p, t) && !c.failures.some((f) => f.node === p)) return true
    }
    return false
  }

  /** Median render time of the job's finished frame chunks (cached per framesDone). */
  function typicalRenderMs(s: JobState): number | undefined {
    if (stragglerFactor <= 0) return undefined
    const cached = typical.get(s.jobId)
    if (cached && cached.done === s.framesDone) return cached.ms
    const times: number[] = []
    for (const c of s.chunks)
      if (c.state === 'done' && c.kind === 'frames' && c.renderMs !== undefined)
        times.push(c.renderMs)
    times.sort((a, b) => a - b)
    const ms =
      times.length >= STRAGGLER_MIN_SAMPLES ? times[Math.floor(times.length / 2)] : undefined
    typical.set(s.jobId, { done: s.framesDone, ms })
    return ms
  }

  /** Dead by this node's clock: see the header. */
  function leaseDead(s: JobState, c: ChunkState, t: number): boolean {
    const holder = c.holder!
    const key = leaseKey(s.jobId, c.index, c.attempt, holder)
    let seen = firstSeen.get(key)
    if (seen === undefined) {
      seen = t
      firstSeen.set(key, t)
    }
    const timeout = chunkTimeoutOf(s)
    if (timeout !== undefined && awake(seen, t) >= timeout) return true
    // A heartbeat proves the holder alive, not working: one that claims and never renders
    // must not keep chunks forever. Doubling per attempt lets a truly slow chunk finish.
    const typicalMs = typicalRenderMs(s)
    if (
      typicalMs !== undefined &&
      awake(seen, t) >=
        Math.max(leaseTimeoutMs, stragglerFactor * typicalMs) *
          2 ** Math.min(16, Math.max(0, c.attempt - 1))
    )
      return true
    const hb = listed.get(holder)
    const since = hb
      ? Math.max(seen, hb.get(key) ?? -Infinity)
      : Math.max(seen, liveness.lastHeard(holder) ?? -Infinity)
    return awake(since, t) >= leaseTimeoutMs
  }

  // Shared with the submitter's "no eligible node remains" check, so both use one rule.
  const canRun = (s: JobState, caps: NodeCapabilities, kind: ChunkState['kind']): boolean =>
    nodeCanRun(s, { id: self, engines: caps.engines, tags: caps.tags }, kind)

  function score(jobId: string, chunk: number, peer: PeerIdString = self): number {
    const k = `${keyOf(jobId, chunk)}/${peer}`
    let v = scores.get(k)
    if (v === undefined) {
      const h = sha256(new TextEncoder().encode(`${jobId}\u0000${chunk}\u0000${peer}`))
      v = h[0] * 2 ** 40 + h[1] * 2 ** 32 + h[2] * 2 ** 24 + h[3] * 2 ** 16 + h[4] * 2 ** 8 + h[5]
      scores.set(k, v)
    }
    return v
  }

  /** Live peers that render: the nodes a chunk's rendezvous owner is chosen among. */
  function rivals(t: number): PeerIdString[] {
    const out: PeerIdString[] = []
    for (const p of peers) {
      if (!heardRecently(p, t) || liveness.renders?.(p) === false) continue
      out.push(p)
    }
    return out
  }

  /** This node ranks the chunk above every live rival: rendezvous (HRW) ownership. */
  function owns(jobId: string, chunk: number, others: readonly PeerIdString[]): boolean {
    const mine = score(jobId, chunk)
    for (const p of others) {
      const theirs = score(jobId, chunk, p)
      if (theirs > mine || (theirs === mine && p < self)) return false
    }
    return true
  }

  function abortTask(task: Task, why: string): void {
    tasks.delete(keyOf(task.jobId, task.chunk))
    task.controller.abort(new AbortedError(why))
  }

  async function append(jobId: string, kind: string, body: unknown): Promise<LogEntry | undefined> {
    try {
      const entry = await log.append(jobLogId(jobId), kind, body)
      ingest(entry)
      return entry
    } catch (err) {
      logger.warn('append failed', { jobId, kind, error: describeError(err) })
      return undefined
    }
  }

  async function step(): Promise<void> {
    const t = now()
    // A pass can come before the first probe after a stall: judge nothing before seeing it.
    observeLoop(t)
    const caps = components.capabilities()

    // 1. Our own tasks: stop what we no longer hold, time out what ran too long.
    for (const task of [...tasks.values()]) {
      if (task.phase === 'claiming') continue
      const s = folds.get(task.jobId)?.state
      const c = s?.chunks[task.chunk]
      if (
        !jobLive(s) ||
        !c ||
        c.state !== 'claimed' ||
        c.holder !== self ||
        c.attempt !== task.attempt
      ) {
        if (c?.state === 'done') stats.duplicatesAvoided++
        else if (jobLive(s)) stats.lostClaims++
        abortTask(task, 'lease lost')
        continue
      }
      const timeout = chunkTimeoutOf(s)
      if (timeout !== undefined && t - task.claimedAt >= timeout) {
        abortTask(task, 'chunk timeout')
        stats.fails++
        await append(task.jobId, 'fail', {
          chunk: task.chunk,
          attempt: task.attempt,
          reason: 'timeout',
        })
      }
    }

    // 2. Leases the log says we hold but we are not running (we restarted): release them
    //    so others need not wait for the lease timeout.
    for (const [jobId, fold] of folds) {
      const s = fold.state
      if (!jobLive(s)) continue
      for (const c of s.chunks) {
        if (c.state !== 'claimed' || c.holder !== self) continue
        const task = tasks.get(keyOf(jobId, c.index))
        if (task && task.attempt === c.attempt) continue
        if (task && task.phase === 'claiming') continue
        if (finishing.has(leaseKey(jobId, c.index, c.attempt, self))) continue
        stats.releases++
        await append(jobId, 'release', {
          chunk: c.index,
          attempt: c.attempt,
          reason: 'not running',
        })
      }
    }

    startQueued(caps)

    // 3. Claim while we have room (bounded: a failing append must not spin). A node with
    // no render slot never claims, not even ahead (it would hold a chunk it cannot start).
    // Just woken from a stall, it first reads what queued: its view of open chunks is stale.
    for (let i = 0; caps.slots > 0 && t >= catchUpUntil && i <= caps.slots; i++) {
      if (stopped) return
      // Storing chunks hold no claim slot (see the header), up to their own bound.
      let storing = 0
      let rendering = 0
      for (const x of tasks.values()) {
        if (x.phase === 'storing') storing++
        else if (x.phase !== 'queued') rendering++
      }
      const held = tasks.size - storing
      if (storing >= STORING_PER_SLOT * Math.max(1, caps.slots)) break
      const pick = choose(caps, t)
      if (!pick) break
      const room =
        held < caps.slots ||
        (prefetch &&
          held < caps.slots + 1 &&
          rendering >= caps.slots &&
          pick.open > liveRenderers(t))
      if (!room) break
      if (!(await claim(pick.job, pick.chunk, pick.dead))) break
    }

    // 4. Seal what we submitted once done and acked.
    if (autoSeal) {
      for (const [jobId, fold] of folds) {
        const s = fold.state
        if (
          !s ||
          s.submitter !== self ||
          !s.allAcked ||
          s.sealedBy ||
          s.deleted ||
          sealing.has(jobId)
        )
          continue
        sealing.add(jobId)
        await append(jobId, 'seal', { state: structuredClone(s) })
      }
    }
  }

  /**
   * The best chunk to claim: the first runnable job in queue order, rendezvous-ranked
   * within a window, preferring chunks this node owns.
   */
  function choose(
    caps: NodeCapabilities,
    t: number,
  ): { job: JobState; chunk: ChunkState; dead: boolean; open: number } | undefined {
    const states: JobState[] = []
    for (const f of folds.values()) if (f.state) states.push(f.state)
    const renderers = liveRenderers(t)
    for (const item of reduceQueue(states, { quotaOf: options.quotaOf })) {
      const s = item.job
      if (!item.admitted || !jobLive(s)) continue
      if ((deferredUntil.get(s.jobId) ?? 0) > t) continue
      const window = Math.max(windowMin, 2 * renderers)
      const candidates: { c: ChunkState; dead: boolean }[] = []
      let open = 0
      for (const c of s.chunks) {
        let dead = false
        if (c.state === 'claimed') {
          if (c.holder === self || !leaseDead(s, c, t)) continue
          dead = true
        } else if (c.state !== 'open') continue
        if (tasks.has(keyOf(s.jobId, c.index))) continue
        if (!canRun(s, caps, c.kind)) continue
        // A chunk we failed goes to others first; we take it again once every live peer
        // has failed it too (else a 2-node mesh would leave it open forever).
        if (c.failures.some((f) => f.node === self) && untriedPeerAlive(c, t)) continue
        open++
        if (candidates.length < window) candidates.push({ c, dead })
      }
      if (candidates.length === 0) continue
      // Each node first takes a chunk it owns (ranks above every live rival), so nodes
      // claiming at the same moment pick different chunks even before they see each
      // other's claims; with none of its own in the window it takes its best-ranked one.
      const others = rivals(t)
      const owned = candidates.filter((x) => owns(s.jobId, x.c.index, others))
      const pool = owned.length > 0 ? owned : candidates
      let best = pool[0]
      for (const x of pool) if (score(s.jobId, x.c.index) > score(s.jobId, best.c.index)) best = x
      return { job: s, chunk: best.c, dead: best.dead, open }
    }
    return undefined
  }

  /** False when the claim could not even be written. */
  async function claim(s: JobState, c: ChunkState, dead: boolean): Promise<boolean> {
    const task: Task = {
      jobId: s.jobId,
      chunk: c.index,
      attempt: c.attempt + 1,
      phase: 'claiming',
      claimedAt: now(),
      controller: new AbortController(),
    }
    const key = keyOf(task.jobId, task.chunk)
    tasks.set(key, task)
    stats.claims++
    if (dead) stats.reclaims++
    // The scene fetch overlaps the claim's signing, storing and gossip.
    runner.prepare?.(chunkTask(s, c, task.attempt))
    const entry = await append(task.jobId, 'claim', { chunk: task.chunk, attempt: task.attempt })
    if (tasks.get(key) !== task) return !!entry
    const after = folds.get(task.jobId)?.state?.chunks[task.chunk]
    if (
      !entry ||
      after?.state !== 'claimed' ||
      after.holder !== self ||
      after.attempt !== task.attempt
    ) {
      if (entry) stats.lostClaims++
      tasks.delete(key)
      return !!entry
    }
    task.phase = 'queued'
    logger.debug('chunk claimed', {
      jobId: task.jobId,
      chunk: task.chunk,
      attempt: task.attempt,
      claimMs: Math.round(now() - task.claimedAt),
    })
    startQueued(components.capabilities())
    return true
  }

  function startQueued(caps: NodeCapabilities): void {
    if (stopped) return
    let running = 0
    for (const x of tasks.values()) if (x.phase === 'running') running++
    const queued = [...tasks.values()]
      .filter((x) => x.phase === 'queued')
      .sort((a, b) => a.claimedAt - b.claimedAt)
    for (const task of queued) {
      if (running >= caps.slots) break
      running++
      render(task)
    }
  }

  function render(task: Task): void {
    const s = folds.get(task.jobId)!.state!
    const c = s.chunks[task.chunk]
    task.phase = 'running'
    stats.rendersStarted++
    const info = chunkTask(s, c, task.attempt)
    const onProgress = options.onProgress
      ? (p: ChunkProgress) => options.onProgress!(info, p)
      : undefined
    // The engine is done and only storing remains: hand the slot to the prefetched chunk.
    const onRendered = () => {
      if (task.phase !== 'running' || tasks.get(keyOf(task.jobId, task.chunk)) !== task) return
      task.phase = 'storing'
      startQueued(components.capabilities())
      // The claim slot is free too: prefetch the next chunk while this one stores.
      schedule()
    }
    let started: Promise<ChunkResult>
    try {
      started = runner.start(info, task.controller.signal, onProgress, onRendered)
    } catch (err) {
      started = Promise.reject(err)
    }
    started.then(
      async (result) => {
        if (!settle(task)) return
        const fin = leaseKey(task.jobId, task.chunk, task.attempt, self)
        finishing.add(fin)
        const cur = folds.get(task.jobId)?.state?.chunks[task.chunk]
        if (cur?.state === 'done') {
          stats.duplicatesAvoided++
        } else {
          // Even a lease lost a moment ago: the output is stored and valid, so record it.
          stats.completes++
          await append(task.jobId, 'complete', {
            chunk: task.chunk,
            attempt: task.attempt,
            outputs: result.outputs,
            ...(result.log !== undefined ? { log: result.log } : {}),
            renderMs: Math.max(0, Math.round(result.renderMs)),
          })
        }
        finishing.delete(fin)
        schedule()
      },
      async (err: unknown) => {
        if (!settle(task)) return
        const fin = leaseKey(task.jobId, task.chunk, task.attempt, self)
        finishing.add(fin)
        if (err instanceof ChunkDeferredError) {
          // Not a failure: hand the chunk back and leave the job alone for a while, so a
          // mesh whose submitter is offline waits for it instead of failing the job.
          stats.deferrals++
          deferredUntil.set(task.jobId, now() + deferMs)
          logger.info('chunk deferred', {
            jobId: task.jobId,
            chunk: task.chunk,
            attempt: task.attempt,
            reason: err.reason,
            retryInMs: deferMs,
          })
          await append(task.jobId, 'release', {
            chunk: task.chunk,
            attempt: task.attempt,
            reason: err.reason.slice(0, 1_000),
          })
          finishing.delete(fin)
          schedule()
          return
        }
        const reason =
          err instanceof ChunkFailedError
            ? err.reason
            : isRmeshError(err)
              ? err.code
              : describeError(err)
        const logCid = err instanceof ChunkFailedError ? err.log : undefined
        stats.fails++
        logger.warn('chunk failed', {
          jobId: task.jobId,
          chunk: task.chunk,
          attempt: task.attempt,
          reason,
        })
        await append(task.jobId, 'fail', {
          chunk: task.chunk,
          attempt: task.attempt,
          reason: reason.slice(0, 1_000),
          ...(logCid !== undefined ? { log: logCid } : {}),
        })
        finishing.delete(fin)
        schedule()
      },
    )
  }

  function chunkTask(s: JobState, c: ChunkState, attempt: number): ChunkTask {
    return { jobId: s.jobId, job: s.job, chunk: c.index, attempt, frames: c.frames, kind: c.kind }
  }

  /** A finished render frees its slot and starts the prefetched chunk before anything else. */
  function settle(task: Task): boolean {
    if (
      stopped ||
      task.controller.signal.aborted ||
      tasks.get(keyOf(task.jobId, task.chunk)) !== task
    )
      return false
    tasks.delete(keyOf(task.jobId, task.chunk))
    startQueued(components.capabilities())
    return true
  }

  return {
    async start() {
      if (!stopped) return
      stopped = false
      // Time spent stopped is not a stall: the watch starts from now.
      stallWatch = newStallWatch()
      unsubscribe = log.onEntry(ingest)
      for (const id of await log.jobLogs()) {
        for (const e of await log.entries(id)) ingest(e)
      }
      tick()
      probe()
      schedule()
    },

    async stop(opts = {}) {
      if (stopped) return
      stopped = true
      unsubscribe?.()
      for (const timer of [tickTimer, scheduled, probeTimer]) if (timer) clock.clearTimeout(timer)
      tickTimer = scheduled = probeTimer = undefined
      const held = [...tasks.values()].filter((x) => x.phase !== 'claiming')
      for (const task of [...tasks.values()]) abortTask(task, 'stopping')
      if (opts.release ?? true) {
        await Promise.all(
          held.map((x) =>
            log
              .append(jobLogId(x.jobId), 'release', {
                chunk: x.chunk,
                attempt: x.attempt,
                reason: 'stopping',
              })
              .catch(() => undefined),
          ),
        )
      }
    },

    heldLeases() {
      return [...tasks.values()]
        .filter((x) => x.phase !== 'claiming')
        .map((x) => ({ jobId: x.jobId, chunk: x.chunk, attempt: x.attempt }))
    },

    noteHeartbeat(peer, leases) {
      if (peer === self) return
      peers.add(peer)
      const t = now()
      let m = listed.get(peer)
      if (!m) {
        m = new Map()
        listed.set(peer, m)
      }
      for (const l of leases.slice(0, 10_000)) {
        if (
          typeof l?.jobId !== 'string' ||
          !Number.isSafeInteger(l.chunk) ||
          !Number.isSafeInteger(l.attempt)
        )
          continue
        m.set(leaseKey(l.jobId, l.chunk, l.attempt, peer), t)
      }
      // Forget listings long past: they no longer keep anything alive.
      for (const [k, at] of m) if (t - at > 4 * leaseTimeoutMs) m.delete(k)
    },

    job(jobId) {
      return folds.get(jobId)?.state ?? tombstones.get(jobId)
    },

    jobs() {
      const out: JobState[] = []
      for (const f of folds.values()) if (f.state && !f.state.deleted) out.push(f.state)
      return out
    },

    stats() {
      return { ...stats }
    },

    sizes() {
      let entries = 0
      for (const f of folds.values()) entries += f.entries.length
      let listings = 0
      for (const m of listed.values()) listings += m.size
      return {
        folds: folds.size,
        foldEntries: entries,
        tombstones: tombstones.size,
        firstSeen: firstSeen.size,
        scores: scores.size,
        typical: typical.size,
        listed: listings,
        tasks: tasks.size,
        deferred: deferredUntil.size,
      }
    },
  }
}
