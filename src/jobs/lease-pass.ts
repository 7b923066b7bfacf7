/**
 * One lease pass: judge this node's own tasks against the folds, release leases held but
 * not running, start queued chunks, claim while there is room, seal what this node
 * submitted once done.
 *
 * Invariants:
 *  - a task runs only while the fold says this node holds that (chunk, attempt) in a live
 *    or paused job; otherwise it is aborted (lease lost, done elsewhere, cancel, delete,
 *    job failed); a paused job's chunks claimed ahead and not started are released;
 *  - a task running longer than its job's chunk timeout is aborted and failed ('timeout');
 *  - a lease the log says this node holds but that no task runs (a restart) is released
 *    ('not running'), unless its outcome is being written (finishing);
 *  - claims: none on a node without render slots, none before the catch-up after a stall
 *    ends, at most `slots` held plus one prefetched (and that one only when open chunks
 *    outnumber live renderers and every slot renders), none while STORING_PER_SLOT × slots
 *    chunks store; a prefetch while a chunk stores waits for that chunk's complete entry
 *    (prefetchWaitMs at most), so the two leave in one gossip message; a pass makes at most
 *    slots + 1 claims, all decided before any is written (a claim that cannot be written
 *    drops its task; the next pass, not this one, tries again: no spin);
 *  - a claim's render starts only once its entry is folded and the fold says this node won.
 */
import type { Choice, ChunkChooser } from './lease-choice.js'
import type { LeaseLiveness } from './lease-liveness.js'
import { STRAGGLER_MIN_SAMPLES } from './lease-liveness.js'
import type { LeaseRenders } from './lease-render.js'
import type { LeaseCoreDeps, Task } from './lease-tasks.js'
import type { NodeCapabilities } from './lease-types.js'
import { jobHeld, jobLive } from './lease-types.js'

/**
 * Rendered chunks still storing per render slot before no further claim is made: a bound on
 * the leases a node holds when its disk or log is slower than its renderer.
 */
export const STORING_PER_SLOT = 2

/**
 * While a rendered chunk stores, the claim of the chunk after next waits this long at most
 * for its complete entry, so that claim and complete leave in one gossip message: every
 * message costs every node of the mesh (issue 17), and claim + complete apart were two per
 * chunk. The prefetched chunk is already rendering meanwhile, so the wait idles nothing
 * unless a render is shorter than this.
 */
export const PREFETCH_WITH_COMPLETE_MS = 250

/**
 * How long a prefetch waits for a storing chunk's complete: PREFETCH_WITH_COMPLETE_MS, or
 * half the job's typical render (before one is known, the storing chunk's own render). Storing (outputs, log, thumbnails) took
 * more than 250 ms for most 10-s chunks on a loaded 2-core machine, and a claim that gives
 * up waiting leaves in a message of its own. The wait idles nothing: it only holds while
 * the prefetched chunk still renders (a free slot claims at once), which takes about a
 * typical render.
 */
export function prefetchWaitMs(typicalRenderMs: number | undefined): number {
  return Math.max(PREFETCH_WITH_COMPLETE_MS, (typicalRenderMs ?? 0) / 2)
}

export interface LeasePassDeps extends LeaseCoreDeps {
  self: string
  judge: LeaseLiveness
  chooser: ChunkChooser
  renders: LeaseRenders
  /** A pass in `ms`, unless one is already due sooner. */
  passAt(ms: number): void
  stopped(): boolean
  prefetch: boolean
  autoSeal: boolean
  /** Jobs whose seal this node is writing (cleared when the seal is folded). */
  sealing: Set<string>
}

/** A claim decided and taken in the task table, its entry not yet written. */
export interface PendingClaim {
  jobId: string
  /** Append the claim entry; false when it could not be written (the task is dropped). */
  write(): Promise<boolean>
}

export interface LeasePass {
  step(): Promise<void>
  /**
   * Decide the claim a pass would make now (the same rules and chooser) and take it in the
   * task table, for a caller that writes it right after an entry of its own: a rendered
   * chunk's complete, so the two leave in one gossip message.
   */
  nextClaim(): PendingClaim | undefined
}

export function createLeasePass(deps: LeasePassDeps): LeasePass {
  const { self, tasks, jobs, judge, chooser, renders, stats, logger, now, append } = deps

  async function step(): Promise<void> {
    const t = now()
    // A pass can come before the first probe after a stall: judge nothing before seeing it.
    judge.observeLoop(t)
    const caps = deps.capabilities()

    // 1. Our own tasks: stop what we no longer hold, time out what ran too long.
    for (const task of [...tasks.values()]) {
      if (task.phase === 'claiming') continue
      const s = jobs.get(task.jobId)?.state
      const c = s?.chunks[task.chunk]
      if (
        !jobHeld(s) ||
        !c ||
        c.state !== 'claimed' ||
        c.holder !== self ||
        c.attempt !== task.attempt
      ) {
        if (c?.state === 'done') stats.duplicatesAvoided++
        else if (jobLive(s)) stats.lostClaims++
        tasks.abort(task, 'lease lost')
        continue
      }
      // A paused job: what renders finishes, a prefetched chunk not started goes back.
      if (s.state === 'paused' && task.phase === 'queued') {
        await renders.handBack(task, 'job paused')
        continue
      }
      const timeout = judge.chunkTimeoutOf(s)
      if (timeout !== undefined && t - task.claimedAt >= timeout) {
        tasks.abort(task, 'chunk timeout')
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
    for (const [jobId, fold] of jobs.entries()) {
      const s = fold.state
      if (!jobHeld(s)) continue
      for (const i of [...jobs.indexOf(jobId).mine].sort((a, b) => a - b)) {
        const c = s.chunks[i]
        if (c.state !== 'claimed' || c.holder !== self) continue
        const task = tasks.get(jobId, c.index)
        if (task && task.attempt === c.attempt) continue
        if (task && task.phase === 'claiming') continue
        if (tasks.isFinishing(jobId, c.index, c.attempt)) continue
        stats.releases++
        await append(jobId, 'release', {
          chunk: c.index,
          attempt: c.attempt,
          reason: 'not running',
        })
      }
    }

    renders.startQueued(caps)

    // 3. Claim while we have room (nextPick), slots + 1 claims a pass at most (bounded: a
    // failing append must not spin). Every claim is decided before any is written and the
    // appends are issued back to back, so a claim and its prefetch leave in one message.
    const claims: PendingClaim[] = []
    for (let i = 0; i <= caps.slots; i++) {
      if (deps.stopped()) return
      const pick = nextPick(caps, t)
      if (!pick) break
      claims.push(reserve(pick))
    }
    await Promise.all(claims.map((c) => c.write()))

    // 4. Seal what we submitted once done and acked.
    if (deps.autoSeal) {
      for (const [jobId, fold] of jobs.entries()) {
        const s = fold.state
        if (
          !s ||
          s.submitter !== self ||
          !s.allAcked ||
          s.sealedBy ||
          s.deleted ||
          deps.sealing.has(jobId)
        )
          continue
        deps.sealing.add(jobId)
        await append(jobId, 'seal', { state: structuredClone(s) })
      }
    }
  }

  /**
   * The chunk one claim of step 3 would take now, or undefined: no render slot, catching up
   * after a stall, no room (slots, prefetch bound, storing bound), nothing eligible, or a
   * prefetch that waits for a storing chunk's complete entry (a pass is set for then).
   */
  function nextPick(caps: NodeCapabilities, t: number): Choice | undefined {
    // A node with no render slot never claims, not even ahead (it would hold a chunk it
    // cannot start). Just woken from a stall, it first reads what queued: its view of open
    // chunks is stale.
    if (caps.slots <= 0 || t < judge.catchUpUntil()) return undefined
    // Storing chunks hold no claim slot (see the header), up to their own bound.
    const { storing, rendering, held } = tasks.counts()
    if (storing >= STORING_PER_SLOT * Math.max(1, caps.slots)) return undefined
    // Room for a claim, or for a prefetch if enough chunks are open: look for one only then.
    const free = held < caps.slots
    if (!free && !(deps.prefetch && held < caps.slots + 1 && rendering >= caps.slots))
      return undefined
    // A prefetch while a chunk stores goes out with its complete entry (or after a while).
    if (!free && storing > 0) {
      const until = storingWaitEnds(t)
      if (t < until) {
        deps.passAt(until - t)
        return undefined
      }
    }
    const pick = chooser.choose(caps, t)
    if (!pick) return undefined
    if (!free && !(pick.open > judge.liveRenderers(t))) return undefined
    return pick
  }

  /**
   * When a prefetch stops waiting for a storing chunk's complete: the earliest, over the
   * storing chunks, of storingSince + prefetchWaitMs(their job's typical render, or before
   * the job has one, this chunk's own render: the first chunks of a job store too).
   */
  function storingWaitEnds(t: number): number {
    let until = Number.POSITIVE_INFINITY
    for (const x of tasks.values()) {
      if (x.phase !== 'storing') continue
      const since = x.storingSince ?? t
      const own = x.renderStartedAt !== undefined ? since - x.renderStartedAt : undefined
      const typical = jobs.indexOf(x.jobId).medianRenderMs(STRAGGLER_MIN_SAMPLES) ?? own
      until = Math.min(until, since + prefetchWaitMs(typical))
    }
    return until
  }

  /** Take the chunk in the task table (phase 'claiming'); its entry is written by `write`. */
  function reserve(pick: Choice): PendingClaim {
    const { job: s, chunk: c } = pick
    const task: Task = {
      jobId: s.jobId,
      chunk: c.index,
      attempt: c.attempt + 1,
      phase: 'claiming',
      claimedAt: now(),
      controller: new AbortController(),
    }
    tasks.add(task)
    stats.claims++
    if (pick.dead) stats.reclaims++
    // The scene fetch overlaps the claim's signing, storing and gossip.
    deps.runner.prepare?.(renders.chunkTask(s, c, task.attempt))
    return { jobId: task.jobId, write: () => write(task) }
  }

  /**
   * Append the claim (synchronously up to the log's queue: an append issued just before is
   * written before it) and queue the render once the fold says this node won. False when
   * the claim could not even be written; the task is gone then, its slot free.
   */
  async function write(task: Task): Promise<boolean> {
    const entry = await append(task.jobId, 'claim', { chunk: task.chunk, attempt: task.attempt })
    if (!tasks.isCurrent(task)) return !!entry
    const after = jobs.get(task.jobId)?.state?.chunks[task.chunk]
    if (
      !entry ||
      after?.state !== 'claimed' ||
      after.holder !== self ||
      after.attempt !== task.attempt
    ) {
      if (entry) stats.lostClaims++
      tasks.remove(task)
      return !!entry
    }
    task.phase = 'queued'
    logger.debug('chunk claimed', {
      jobId: task.jobId,
      chunk: task.chunk,
      attempt: task.attempt,
      claimMs: Math.round(now() - task.claimedAt),
    })
    renders.startQueued(deps.capabilities())
    return true
  }

  return {
    step,
    nextClaim() {
      if (deps.stopped()) return undefined
      const t = now()
      // As a pass does: a render can end right after a stall, before any probe saw it, and
      // the catch-up that follows a stall holds for this claim too.
      judge.observeLoop(t)
      const pick = nextPick(deps.capabilities(), t)
      return pick ? reserve(pick) : undefined
    },
  }
}
