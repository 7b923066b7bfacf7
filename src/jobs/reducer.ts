/**
 * The pure job reducer: a job log's entries → the job's state.
 *
 * Invariants (protocols/job-entries.md, "Reducer rules"):
 *  - deterministic: the state depends only on the set of entries (folded in
 *    compareEntries order) and the injected `isAdmin` predicate, never on arrival order,
 *    time or randomness;
 *  - total: an entry with an unknown kind, an invalid body or an unauthorised author is
 *    ignored, never thrown on;
 *  - at most one holder per chunk (a chunk has a holder only in state 'claimed');
 *  - done never reverts, except by the submitter's reject of that exact attempt: once a
 *    chunk is done no other entry changes its outputs (later completes only count as
 *    duplicates); a reject naming the chunk's completedAttempt, not yet acked, reopens it;
 *  - wall clocks never decide anything (createdAt and queue tie-breaks are informational).
 */
import type { EntryId, LogEntry, PeerIdString } from '../log/types.js'
import { compareEntries, jobLogId } from '../log/types.js'
import {
  type AnnounceBody,
  type ChunkOutput,
  chunkLayout,
  DEFAULT_MAX_FAILURES_PER_NODE,
  DEFAULT_MAX_NODES_PER_CHUNK,
  LIMITS,
  type BodyOf,
  type Validated,
  validateBody,
} from './entries.js'

export type JobStatus = 'queued' | 'rendering' | 'done' | 'failed' | 'canceled'
/** 'waiting' is the encode chunk before every frame chunk is done. */
export type ChunkStatus = 'waiting' | 'open' | 'claimed' | 'done' | 'failed'
export type ChunkKind = 'frames' | 'encode'

export interface ChunkFailure {
  node: PeerIdString
  attempt: number
  reason: string
}

export interface ChunkState {
  index: number
  kind: ChunkKind
  frames: number[]
  state: ChunkStatus
  /** The latest attempt number claimed (0: never claimed). The next claim must be higher. */
  attempt: number
  /** Set exactly when state is 'claimed'. */
  holder?: PeerIdString
  /** Lamport clock of the winning claim of `attempt` (0: never claimed). */
  claimClock: number
  failures: ChunkFailure[]
  outputs?: ChunkOutput[]
  log?: string
  completedBy?: PeerIdString
  /** The attempt named by the complete that made the chunk done: what a reject must name. */
  completedAttempt?: number
  renderMs?: number
  acked: boolean
}

export interface JobState {
  jobId: string
  name: string
  submitter: PeerIdString
  state: JobStatus
  priority: number
  /** The announce's wall time: informational (and the FIFO tie-break of the queue). */
  createdAt: number
  announce: { id: EntryId; clock: number; author: PeerIdString }
  job: AnnounceBody
  chunks: ChunkState[]
  framesDone: number
  framesTotal: number
  /** Nodes with at least maxFailuresPerNode failures in this job: their claims are ignored. */
  blocklist: PeerIdString[]
  nodeFailures: Record<string, number>
  /** Valid completes beyond the first for a chunk. */
  duplicates: number
  canceled: boolean
  /** Set by the submitter's abort (no node can take what is left): the job is failed until retried. */
  abortReason?: string
  deleted: boolean
  /** Every chunk done and acked by the submitter. */
  allAcked: boolean
  /** Id of the seal entry this state started from, if any. */
  sealedBy?: EntryId
}

export interface ReduceOptions {
  /** Authors allowed to cancel, retry, reprioritise and delete any job. Must be deterministic. */
  isAdmin?: (peer: PeerIdString) => boolean
}

/** Fold `entries` (any order; they are sorted by compareEntries) into the job state. */
export function reduceJob(
  entries: readonly LogEntry[],
  options: ReduceOptions = {},
): JobState | undefined {
  const fold = new JobFold(options)
  for (const e of [...entries].sort(compareEntries)) fold.add(e)
  return fold.state
}

/**
 * An incremental fold over one job log: entries arriving in order are applied in O(1)
 * (amortised); one that sorts before the last is applied in place when it commutes with
 * every entry after it (below), else triggers a replay from the last checkpoint before
 * it. Used by the lease manager and the simulator so they share the reducer's exact
 * semantics.
 *
 * Commuting: a claim, release or complete names one chunk, and reads and writes that
 * chunk's record and job-wide counters whose result does not depend on order (done
 * counts, the duplicate count, `active`); the job's status it reads (done, failed,
 * canceled) only changes through entries of other kinds or through that same chunk.
 * So such an entry commutes with a run of such entries on other chunks, unless one of
 * them is on the encode chunk (which every frame chunk's complete may open). The state
 * stays the same object then (jobs/fold-changes.ts relies on it: a replay replaces it).
 * Memory: at most MAX_CHECKPOINTS snapshots (the newest), each O(chunks).
 */
/** Snapshots a JobFold keeps (the newest): see its comment. */
export const MAX_CHECKPOINTS = 4

export class JobFold {
  private readonly sorted: LogEntry[] = []
  private readonly ids = new Set<string>()
  private acc: Acc | undefined
  /** Snapshots of the state after the first `at` entries, so a late entry replays only a tail. */
  private checkpoints: { at: number; acc: Acc | undefined }[] = []
  private readonly isAdmin: (peer: PeerIdString) => boolean

  constructor(options: ReduceOptions = {}) {
    this.isAdmin = options.isAdmin ?? (() => false)
  }

  /** Add one entry; false if it was already present. */
  add(entry: LogEntry): boolean {
    if (this.ids.has(entry.id)) return false
    this.ids.add(entry.id)
    const n = this.sorted.length
    if (n === 0 || compareEntries(this.sorted[n - 1], entry) < 0) {
      this.sorted.push(entry)
      this.apply(entry)
      this.maybeCheckpoint()
      return true
    }
    let lo = 0
    let hi = n
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (compareEntries(this.sorted[mid], entry) < 0) lo = mid + 1
      else hi = mid
    }
    this.sorted.splice(lo, 0, entry)
    if (this.commutes(lo)) {
      this.acc!.apply(entry, this.isAdmin)
      // Later snapshots miss it: it commutes with what lies between, so add it to them.
      for (const cp of this.checkpoints)
        if (cp.at > lo) {
          cp.acc!.apply(entry, this.isAdmin)
          cp.at++
        }
      return true
    }
    while (this.checkpoints.length > 0 && this.checkpoints[this.checkpoints.length - 1].at > lo)
      this.checkpoints.pop()
    const cp = this.checkpoints[this.checkpoints.length - 1]
    this.acc = cp?.acc?.copy()
    for (let i = cp?.at ?? 0; i < this.sorted.length; i++) this.apply(this.sorted[i])
    this.maybeCheckpoint()
    return true
  }

  get state(): JobState | undefined {
    return this.acc?.s
  }

  get entries(): readonly LogEntry[] {
    return this.sorted
  }

  /** The entry now at `lo` can be applied to the current state in place (see the class). */
  private commutes(lo: number): boolean {
    const acc = this.acc
    if (!acc) return false
    const encode = acc.s.chunks.length - 1
    const hasEncode = acc.s.chunks[encode]?.kind === 'encode'
    const chunkOf = (e: LogEntry): number | undefined => {
      if (e.kind !== 'claim' && e.kind !== 'release' && e.kind !== 'complete') return undefined
      const c = (e.body as { chunk?: unknown } | null)?.chunk
      if (!Number.isSafeInteger(c) || (hasEncode && c === encode)) return undefined
      return c as number
    }
    const mine = chunkOf(this.sorted[lo])
    if (mine === undefined) return false
    for (let i = lo + 1; i < this.sorted.length; i++) {
      const theirs = chunkOf(this.sorted[i])
      if (theirs === undefined || theirs === mine) return false
    }
    for (const cp of this.checkpoints) if (cp.at > lo && !cp.acc) return false
    return true
  }

  private maybeCheckpoint(): void {
    const last = this.checkpoints[this.checkpoints.length - 1]?.at ?? 0
    // Snapshot cost is O(chunks): space them so it stays a small share of the fold.
    const every = Math.max(32, (this.acc?.s.chunks.length ?? 0) >> 4)
    if (this.sorted.length - last >= every) {
      this.checkpoints.push({ at: this.sorted.length, acc: this.acc?.copy() })
      // A late entry sorting before the oldest kept replays from the start: rare, and it
      // bounds memory to a few snapshots whatever the job's length.
      if (this.checkpoints.length > MAX_CHECKPOINTS) this.checkpoints.shift()
    }
  }

  private apply(e: LogEntry): void {
    if (typeof e.kind !== 'string') return
    if (e.kind === 'seal') {
      const v = validated(e)
      if (!v.ok) return
      const st = validateJobState((v.body as { state: unknown }).state)
      // Only a finished, fully acked job is sealed: every chunk is done in it, so replacing
      // the state never reverts a done chunk.
      if (st?.state !== 'done' || !st.allAcked || e.log !== jobLogId(st.jobId)) return
      if (this.acc && this.acc.s.jobId !== st.jobId) return
      if (e.author !== st.submitter && !this.isAdmin(e.author)) return
      st.sealedBy = e.id
      this.acc = new Acc(st)
      return
    }
    if (!this.acc) {
      if (e.kind !== 'announce') return
      const v = validated(e) as Validated<AnnounceBody>
      if (!v.ok || e.log !== jobLogId(v.body.jobId) || e.author !== v.body.submitter) return
      this.acc = Acc.fromAnnounce(v.body, e)
      return
    }
    this.acc.apply(e, this.isAdmin)
  }
}

/**
 * A copy deep enough for the fold to mutate: chunk records, failure lists and the
 * failure counts. Frames, outputs and the announce body are never mutated, so shared.
 */
export function cloneState(s: JobState): JobState {
  return {
    ...s,
    announce: { ...s.announce },
    nodeFailures: { ...s.nodeFailures },
    blocklist: s.blocklist.slice(),
    chunks: s.chunks.map((c) => ({ ...c, failures: c.failures.slice() })),
  }
}

/**
 * Entries are immutable, so a body's validation is computed once per entry object
 * (replays after a late entry would otherwise re-parse every CID).
 */
const validations = new WeakMap<object, Validated<unknown>>()
function validated(e: LogEntry): Validated<unknown> {
  let v = validations.get(e)
  if (!v) {
    v = validateBody(e.kind, e.body)
    validations.set(e, v)
  }
  return v
}

/** The mutable accumulator; keeps counters so each entry costs O(size of its body). */
class Acc {
  private doneChunks = 0
  private failedChunks = 0
  private doneFrameChunks = 0
  private frameChunks = 0
  private ackedChunks = 0
  private active = false
  private readonly maxPerNode: number
  private readonly maxNodes: number

  constructor(
    readonly s: JobState,
    from?: Acc,
  ) {
    this.maxPerNode = s.job.limits.maxFailuresPerNode ?? DEFAULT_MAX_FAILURES_PER_NODE
    this.maxNodes = s.job.limits.maxNodesPerChunk ?? DEFAULT_MAX_NODES_PER_CHUNK
    if (from) {
      // A copy of `from` over a clone of its state: the counters are its, not recounted.
      this.doneChunks = from.doneChunks
      this.failedChunks = from.failedChunks
      this.doneFrameChunks = from.doneFrameChunks
      this.frameChunks = from.frameChunks
      this.ackedChunks = from.ackedChunks
      this.active = from.active
      return
    }
    s.framesDone = 0
    for (const c of s.chunks) {
      if (c.kind === 'frames') this.frameChunks++
      if (c.state === 'done') {
        this.doneChunks++
        if (c.kind === 'frames') {
          this.doneFrameChunks++
          s.framesDone += c.frames.length
        }
        if (c.acked) this.ackedChunks++
      }
      if (c.state === 'failed') this.failedChunks++
      if (c.attempt > 0 || c.state === 'done') this.active = true
    }
    if (this.doneFrameChunks === this.frameChunks) {
      for (const c of s.chunks) if (c.state === 'waiting') c.state = 'open'
    }
    s.blocklist = Object.keys(s.nodeFailures)
      .filter((n) => s.nodeFailures[n] >= this.maxPerNode)
      .sort() as PeerIdString[]
    this.refresh()
  }

  /** An independent copy (its own chunk records), counters included. */
  copy(): Acc {
    return new Acc(cloneState(this.s), this)
  }

  static fromAnnounce(job: AnnounceBody, e: LogEntry): Acc {
    const chunks: ChunkState[] = chunkLayout(job).map((c, index) => ({
      index,
      kind: c.kind,
      frames: c.frames,
      state: c.kind === 'encode' ? 'waiting' : 'open',
      attempt: 0,
      claimClock: 0,
      failures: [],
      acked: false,
    }))
    return new Acc({
      jobId: job.jobId,
      name: job.name,
      submitter: job.submitter,
      state: 'queued',
      priority: job.priority,
      createdAt: typeof e.wall === 'number' ? e.wall : 0,
      announce: { id: e.id, clock: e.clock, author: e.author },
      job,
      chunks,
      framesDone: 0,
      framesTotal: job.frames.length,
      blocklist: [],
      nodeFailures: {},
      duplicates: 0,
      canceled: false,
      deleted: false,
      allAcked: false,
    })
  }

  private refresh(): void {
    const s = this.s
    const n = s.chunks.length
    if (s.canceled) s.state = 'canceled'
    else if (this.failedChunks > 0 || s.abortReason !== undefined) s.state = 'failed'
    else if (this.doneChunks === n) s.state = 'done'
    else s.state = this.active ? 'rendering' : 'queued'
    s.allAcked = this.doneChunks === n && this.ackedChunks === n
  }

  private privileged(author: PeerIdString, isAdmin: (p: PeerIdString) => boolean): boolean {
    return author === this.s.submitter || isAdmin(author)
  }

  private setState(c: ChunkState, next: ChunkStatus): void {
    if (c.state === next) return
    if (c.state === 'failed') this.failedChunks--
    if (next === 'failed') this.failedChunks++
    if (next === 'done') {
      this.doneChunks++
      if (c.kind === 'frames') {
        this.doneFrameChunks++
        this.s.framesDone += c.frames.length
        if (this.doneFrameChunks === this.frameChunks) {
          for (const x of this.s.chunks) if (x.state === 'waiting') x.state = 'open'
        }
      }
    }
    c.state = next
    if (next !== 'claimed') delete c.holder
  }

  /** A done chunk leaves done (a reject): undo its counts; the encode waits again for it. */
  private undone(c: ChunkState): void {
    this.doneChunks--
    if (c.kind === 'frames') {
      this.doneFrameChunks--
      this.s.framesDone -= c.frames.length
      // An encode already done keeps its video; one not started waits for the re-render.
      for (const x of this.s.chunks)
        if (x.kind === 'encode' && (x.state === 'open' || x.state === 'claimed'))
          this.setState(x, 'waiting')
    }
    c.state = 'open'
    delete c.outputs
    delete c.completedBy
    delete c.completedAttempt
    delete c.renderMs
    delete c.log
  }

  /** Count one failure of `node` on `c` (dedup per node and attempt) and apply the limits. */
  private countFailure(c: ChunkState, node: PeerIdString, attempt: number, reason: string): void {
    const s = this.s
    if (c.failures.some((f) => f.node === node && f.attempt === attempt)) return
    c.failures.push({ node, attempt, reason })
    const count = (s.nodeFailures[node] ?? 0) + 1
    s.nodeFailures[node] = count
    if (count >= this.maxPerNode && !s.blocklist.includes(node)) {
      s.blocklist = [...s.blocklist, node].sort()
    }
  }

  apply(e: LogEntry, isAdmin: (p: PeerIdString) => boolean): void {
    const s = this.s
    switch (e.kind) {
      case 'claim': {
        const v = validated(e) as Validated<BodyOf['claim']>
        if (!v.ok || s.canceled || s.state === 'failed' || s.state === 'done') return
        const c = s.chunks[v.body.chunk]
        if (!c || (c.state !== 'open' && c.state !== 'claimed')) return
        if (s.blocklist.includes(e.author) || v.body.attempt <= c.attempt) return
        // A higher attempt supersedes: that is how an observer reopens a dead lease.
        this.setState(c, 'claimed')
        c.attempt = v.body.attempt
        c.holder = e.author
        c.claimClock = e.clock
        this.active = true
        break
      }
      case 'release': {
        const v = validated(e) as Validated<BodyOf['release']>
        if (!v.ok) return
        const c = s.chunks[v.body.chunk]
        if (c?.state !== 'claimed' || c.holder !== e.author || c.attempt !== v.body.attempt) return
        this.setState(c, 'open')
        break
      }
      case 'fail': {
        const v = validated(e) as Validated<BodyOf['fail']>
        if (!v.ok) return
        const c = s.chunks[v.body.chunk]
        if (!c || c.state === 'done' || c.state === 'waiting' || v.body.attempt > c.attempt) return
        if (c.failures.some((f) => f.node === e.author && f.attempt === v.body.attempt)) return
        this.countFailure(c, e.author, v.body.attempt, v.body.reason)
        if (c.state === 'claimed' && c.holder === e.author && c.attempt === v.body.attempt)
          this.setState(c, 'open')
        if (new Set(c.failures.map((f) => f.node)).size >= this.maxNodes) this.setState(c, 'failed')
        break
      }
      case 'complete': {
        const v = validated(e) as Validated<BodyOf['complete']>
        if (!v.ok) return
        const c = s.chunks[v.body.chunk]
        // No attempt check: whether an attempt was claimed can change as earlier entries
        // arrive (a cancel voids a claim), and done must never revert. The outputs are
        // stored and valid whoever rendered them. An encode that waits again (a frames
        // chunk was rejected after it opened, attempt > 0) still takes a concurrent
        // complete: its frames were fetched verified, and done must not revert.
        if (!c || (c.state === 'waiting' && c.attempt === 0) || !outputsCover(c, v.body.outputs))
          return
        if (c.state === 'done') {
          s.duplicates++
          break
        }
        this.setState(c, 'done')
        c.outputs = v.body.outputs
        c.completedBy = e.author
        c.completedAttempt = v.body.attempt
        c.renderMs = v.body.renderMs
        if (v.body.log !== undefined) c.log = v.body.log
        this.active = true
        break
      }
      case 'reject': {
        const v = validated(e) as Validated<BodyOf['reject']>
        // Only the submitter knows whether it could obtain the outputs; once it acked them
        // they are in its folder, so an acked chunk (and so a sealed job) is final.
        if (!v.ok || e.author !== s.submitter || s.canceled || s.deleted) return
        const c = s.chunks[v.body.chunk]
        if (c?.state !== 'done' || c.acked || c.completedAttempt !== v.body.attempt) return
        const node = c.completedBy as PeerIdString
        this.undone(c)
        // A new attempt: the next claim must be above the rejected one.
        c.attempt = Math.max(c.attempt, v.body.attempt)
        this.countFailure(c, node, v.body.attempt, `outputs rejected: ${v.body.reason}`)
        if (new Set(c.failures.map((f) => f.node)).size >= this.maxNodes) this.setState(c, 'failed')
        break
      }
      case 'cancel': {
        if (!validated(e).ok || !this.privileged(e.author, isAdmin)) return
        if (s.state !== 'done') s.canceled = true
        break
      }
      case 'abort': {
        const v = validated(e) as Validated<BodyOf['abort']>
        // Like cancel, but the job ends failed (with the reason) and a retry revives it.
        if (!v.ok || !this.privileged(e.author, isAdmin) || s.canceled || s.state === 'done') return
        s.abortReason ??= v.body.reason
        break
      }
      case 'delete': {
        if (!validated(e).ok || !this.privileged(e.author, isAdmin)) return
        s.deleted = true
        if (s.state !== 'done') s.canceled = true
        break
      }
      case 'retry': {
        const v = validated(e) as Validated<BodyOf['retry']>
        if (!v.ok || !this.privileged(e.author, isAdmin) || s.canceled) return
        const wanted = v.body.chunks ? new Set(v.body.chunks) : undefined
        let reopened = false
        for (const c of s.chunks) {
          if (c.state !== 'failed' || (wanted && !wanted.has(c.index))) continue
          this.setState(c, 'open')
          c.failures = []
          reopened = true
        }
        // An aborted job had no eligible node left: a fresh start for every unfinished chunk.
        if (s.abortReason !== undefined) {
          delete s.abortReason
          for (const c of s.chunks) if (c.state !== 'done') c.failures = []
          reopened = true
        }
        // A fresh start: otherwise a retried job may have no eligible node left.
        if (reopened) {
          s.nodeFailures = {}
          s.blocklist = []
        }
        break
      }
      case 'priority': {
        const v = validated(e) as Validated<BodyOf['priority']>
        if (!v.ok || !this.privileged(e.author, isAdmin)) return
        s.priority = v.body.priority
        break
      }
      case 'ack': {
        const v = validated(e) as Validated<BodyOf['ack']>
        if (!v.ok || e.author !== s.submitter) return
        for (const i of v.body.chunks) {
          const c = s.chunks[i]
          if (c && c.state === 'done' && !c.acked) {
            c.acked = true
            this.ackedChunks++
          }
        }
        break
      }
      default:
        return
    }
    this.refresh()
  }
}

/** A frames chunk's outputs name exactly its frames (each at least once); an encode chunk has some. */
function outputsCover(c: ChunkState, outputs: readonly ChunkOutput[]): boolean {
  if (outputs.length === 0) return false
  if (c.kind === 'encode') return true
  const frames = new Set(c.frames)
  const seen = new Set<number>()
  for (const o of outputs) {
    if (!frames.has(o.frame)) return false
    seen.add(o.frame)
  }
  return seen.size === frames.size
}

const CHUNK_STATUSES: readonly ChunkStatus[] = ['waiting', 'open', 'claimed', 'done', 'failed']

/**
 * Validate a sealed JobState from a peer. Derived fields (status, counters, blocklist,
 * chunk frames) are recomputed rather than trusted. Returns a fresh object or undefined.
 */
export function validateJobState(x: unknown): JobState | undefined {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return undefined
  const o = x as Record<string, unknown>
  const job = validateBody('announce', o.job)
  if (!job.ok || o.jobId !== job.body.jobId) return undefined
  const layout = chunkLayout(job.body)
  if (!Array.isArray(o.chunks) || o.chunks.length !== layout.length) return undefined
  const isInt = (v: unknown, min = 0) =>
    typeof v === 'number' && Number.isSafeInteger(v) && v >= min
  const isPeer = (v: unknown) => typeof v === 'string' && v.length > 0 && v.length <= 128
  const chunks: ChunkState[] = []
  for (let i = 0; i < layout.length; i++) {
    const c = o.chunks[i] as Record<string, unknown> | null
    if (typeof c !== 'object' || c === null) return undefined
    const state = c.state as ChunkStatus
    if (!CHUNK_STATUSES.includes(state) || !isInt(c.attempt) || !isInt(c.claimClock))
      return undefined
    if (state === 'claimed' && !isPeer(c.holder)) return undefined
    if (!Array.isArray(c.failures) || c.failures.length > LIMITS.maxAttempt) return undefined
    const failures: ChunkFailure[] = []
    for (const f of c.failures as unknown[]) {
      const ff = f as Record<string, unknown> | null
      if (typeof ff !== 'object' || ff === null || !isPeer(ff.node) || !isInt(ff.attempt, 1))
        return undefined
      if (typeof ff.reason !== 'string' || ff.reason.length > LIMITS.maxReason) return undefined
      failures.push({
        node: ff.node as PeerIdString,
        attempt: ff.attempt as number,
        reason: ff.reason,
      })
    }
    const chunk: ChunkState = {
      index: i,
      kind: layout[i].kind,
      frames: layout[i].frames,
      state,
      attempt: c.attempt as number,
      claimClock: c.claimClock as number,
      failures,
      acked: c.acked === true && state === 'done',
    }
    if (state === 'claimed') chunk.holder = c.holder as PeerIdString
    if (state === 'done') {
      const done = validateBody('complete', {
        chunk: i,
        attempt: Math.max(1, c.attempt as number),
        outputs: c.outputs,
        renderMs: c.renderMs,
        log: c.log,
      })
      if (!done.ok || !isPeer(c.completedBy) || !outputsCover(chunk, done.body.outputs))
        return undefined
      chunk.outputs = done.body.outputs
      chunk.renderMs = done.body.renderMs
      chunk.completedBy = c.completedBy as PeerIdString
      if (isInt(c.completedAttempt, 1)) chunk.completedAttempt = c.completedAttempt as number
      if (done.body.log !== undefined) chunk.log = done.body.log
    }
    chunks.push(chunk)
  }
  const nf = o.nodeFailures
  if (typeof nf !== 'object' || nf === null || Array.isArray(nf)) return undefined
  const nodeFailures: Record<string, number> = {}
  const keys = Object.keys(nf)
  if (keys.length > 10_000) return undefined
  for (const k of keys) {
    const v = (nf as Record<string, unknown>)[k]
    if (!isPeer(k) || !isInt(v)) return undefined
    nodeFailures[k] = v as number
  }
  const a = o.announce as Record<string, unknown> | null
  if (
    typeof a !== 'object' ||
    a === null ||
    typeof a.id !== 'string' ||
    !isInt(a.clock) ||
    !isPeer(a.author)
  ) {
    return undefined
  }
  if (!isInt(o.priority, -LIMITS.maxPriority) || !isInt(o.duplicates)) return undefined
  const s: JobState = {
    jobId: job.body.jobId,
    name: job.body.name,
    submitter: job.body.submitter,
    state: 'queued',
    priority: o.priority as number,
    createdAt: typeof o.createdAt === 'number' && Number.isFinite(o.createdAt) ? o.createdAt : 0,
    announce: { id: a.id as EntryId, clock: a.clock as number, author: a.author as PeerIdString },
    job: job.body,
    chunks,
    framesDone: 0,
    framesTotal: job.body.frames.length,
    blocklist: [],
    nodeFailures,
    duplicates: o.duplicates as number,
    canceled: o.canceled === true,
    deleted: o.deleted === true,
    allAcked: false,
  }
  // The Acc constructor recomputes the derived fields.
  return new Acc(s).s
}

// ---- the queue across jobs ------------------------------------------------------------

export interface QueueItem {
  job: JobState
  /** False when the submitter is over its maxQueuedJobs quota: the job waits, nobody claims it. */
  admitted: boolean
  reason?: 'quota'
}

export interface QueueOptions {
  /** maxQueuedJobs of a submitter (from its token); undefined: no limit. */
  quotaOf?: (submitter: PeerIdString) => number | undefined
}

/** Submission order: the announce's wall time, then its entry id (a deterministic tie-break). */
export function compareSubmission(a: JobState, b: JobState): number {
  if (a.createdAt !== b.createdAt) return a.createdAt - b.createdAt
  return a.announce.id < b.announce.id ? -1 : a.announce.id > b.announce.id ? 1 : 0
}

/**
 * The runnable queue: unfinished, undeleted jobs, priority descending then submission
 * order. Quotas are applied per submitter in submission order: the first maxQueuedJobs
 * unfinished jobs of a submitter are admitted, later ones wait (reason 'quota') until
 * earlier ones finish. Pure.
 */
export function reduceQueue(jobs: readonly JobState[], options: QueueOptions = {}): QueueItem[] {
  const live = jobs.filter((j) => !j.deleted && (j.state === 'queued' || j.state === 'rendering'))
  const bySubmission = [...live].sort(compareSubmission)
  const counts = new Map<string, number>()
  const admitted = new Map<JobState, boolean>()
  for (const j of bySubmission) {
    const quota = options.quotaOf?.(j.submitter)
    const n = counts.get(j.submitter) ?? 0
    const ok = quota === undefined || n < quota
    if (ok) counts.set(j.submitter, n + 1)
    admitted.set(j, ok)
  }
  return bySubmission
    .sort((a, b) => b.priority - a.priority || compareSubmission(a, b))
    .map((job) =>
      admitted.get(job)
        ? { job, admitted: true }
        : { job, admitted: false, reason: 'quota' as const },
    )
}
