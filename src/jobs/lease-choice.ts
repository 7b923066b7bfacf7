/**
 * Which chunk this node claims next: the first runnable job in queue order, its open (or
 * dead-leased) chunks in a window in frame order, ranked by a rendezvous hash.
 *
 * Invariants:
 *  - pure choice: it writes nothing; the only state it keeps is the rendezvous score cache
 *    (and, through the liveness judge, a lease's first-seen baseline);
 *  - a node first takes a chunk it owns by rendezvous hash among the live renderers it
 *    knows, so concurrent claims rarely collide; ownership is only a preference (a node
 *    with none of its own in the window takes its best-ranked chunk), never a right;
 *  - a chunk this node failed goes to others first while an untried live peer exists;
 *  - the score cache holds only live jobs' chunks (prune).
 */
import { sha256 } from '../util/hash.js'
import type { PeerIdString } from '../log/types.js'
import type { ChunkState, JobState } from './reducer.js'
import { reduceQueue } from './reducer.js'
import { nodeCanRun } from './eligibility.js'
import type { ChunkIndex } from './lease-index.js'
import type { LeaseLiveness } from './lease-liveness.js'
import { STRAGGLER_MIN_SAMPLES } from './lease-liveness.js'
import type { NodeCapabilities } from './lease-types.js'
import { keyOf } from './lease-types.js'

export interface Choice {
  job: JobState
  chunk: ChunkState
  /** Its lease is dead (a reclaim), rather than open. */
  dead: boolean
  /**
   * Open chunks of the job this node could take (including `chunk`), counted up to the
   * window: the count is exact when below it.
   */
  open: number
}

export interface ChunkChooser {
  choose(caps: NodeCapabilities, t: number): Choice | undefined
  /** Drop the scores of jobs not in `live`. */
  prune(live: ReadonlySet<string>): void
  size(): number
}

export function createChunkChooser(
  components: {
    self: PeerIdString
    liveness: LeaseLiveness
    /** The live job states to choose among. */
    states(): Iterable<JobState>
    /** The job's chunk index (open and claimed chunks, median render time). */
    index(jobId: string): ChunkIndex
    /** This node already has a task for the chunk. */
    busy(jobId: string, chunk: number): boolean
    /** The job is left alone until this monotonic time (a chunk was deferred). */
    deferredUntil(jobId: string): number
  },
  options: {
    windowMin: number
    quotaOf?: (submitter: PeerIdString) => number | undefined
  },
): ChunkChooser {
  const { self, liveness } = components
  const scores = new Map<string, number>()

  // Shared with the submitter's "no eligible node remains" check, so both use one rule.
  const canRun = (s: JobState, caps: NodeCapabilities, kind: ChunkState['kind']): boolean =>
    nodeCanRun(s, { ...caps, id: self }, kind)

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

  /** This node ranks the chunk above every live rival: rendezvous (HRW) ownership. */
  function owns(jobId: string, chunk: number, others: readonly PeerIdString[]): boolean {
    const mine = score(jobId, chunk)
    for (const p of others) {
      const theirs = score(jobId, chunk, p)
      if (theirs > mine || (theirs === mine && p < self)) return false
    }
    return true
  }

  return {
    choose(caps, t) {
      const states = [...components.states()]
      const renderers = liveness.liveRenderers(t)
      for (const item of reduceQueue(states, { quotaOf: options.quotaOf })) {
        const s = item.job
        if (!item.admitted) continue
        if (components.deferredUntil(s.jobId) > t) continue
        const window = Math.max(options.windowMin, 2 * renderers)
        const candidates: { c: ChunkState; dead: boolean }[] = []
        let open = 0
        const index = components.index(s.jobId)
        const typicalMs = index.medianRenderMs(STRAGGLER_MIN_SAMPLES)
        let canFrames: boolean | undefined
        for (const i of index.needy()) {
          // The window is full: what follows only adds to a count already past the renderers.
          if (candidates.length >= window) break
          const c = s.chunks[i]
          let dead = false
          if (c.state === 'claimed') {
            if (c.holder === self || !liveness.leaseDead(s, c, t, typicalMs)) continue
            dead = true
          } else if (c.state !== 'open') continue
          if (components.busy(s.jobId, c.index)) continue
          // One job, one answer for its frame chunks: the rule depends on the kind only.
          if (c.kind === 'frames') {
            canFrames ??= canRun(s, caps, 'frames')
            if (!canFrames) continue
          } else if (!canRun(s, caps, c.kind)) continue
          // A chunk we failed goes to others first; we take it again once every live peer
          // has failed it too (else a 2-node mesh would leave it open forever).
          if (c.failures.some((f) => f.node === self) && liveness.untriedPeerAlive(c, t)) continue
          open++
          candidates.push({ c, dead })
        }
        if (candidates.length === 0) continue
        // Each node first takes a chunk it owns (ranks above every live rival), so nodes
        // claiming at the same moment pick different chunks even before they see each
        // other's claims; with none of its own in the window it takes its best-ranked one.
        const others = liveness.rivals(t)
        const owned = candidates.filter((x) => owns(s.jobId, x.c.index, others))
        const pool = owned.length > 0 ? owned : candidates
        let best = pool[0]
        for (const x of pool) if (score(s.jobId, x.c.index) > score(s.jobId, best.c.index)) best = x
        return { job: s, chunk: best.c, dead: best.dead, open }
      }
      return undefined
    },

    prune(live) {
      for (const k of scores.keys()) if (!live.has(k.slice(0, k.indexOf('/')))) scores.delete(k)
    },

    size: () => scores.size,
  }
}
