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
 *  - wall clocks never decide anything (createdAt and queue tie-breaks are informational);
 *  - a job's state is a fold of its own log only: job order across jobs (`after`) enters
 *    it through the submitter's `ready`/`abort` entries (service/dependency-gate.ts).
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

/**
 * 'paused': its submitter paused it (no new claim; running chunks finish); 'waiting': it
 * waits for the jobs of its announce's `after` (no claim until its `ready` entry).
 */
export type JobStatus =
  | 'queued'
  | 'rendering'
  | 'paused'
  | 'waiting'
  | 'done'
  | 'failed'
  | 'canceled'
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
  /** Set by a pause, dropped by a resume: no claim is honoured meanwhile. */
  paused?: true
  /** Set while the announce's `after` jobs are not known done (until the `ready` entry). */
  waiting?: true
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
 * (amortised). One that sorts before the last is handled, cheapest first:
 *  1. applied in place when it commutes with every entry after it;
 *  2. re-folded on its chunk alone when every entry after the base checkpoint is
 *     chunk-local (below) — a claim race ends here: two claims of one chunk, the later
 *     one already folded;
 *  3. else a replay from the last checkpoint before it.
 * Used by the lease manager and the simulator so they share the reducer's exact
 * semantics.
 *
 * Chunk-local: a claim, release or complete naming a frames chunk, or an ack. Such an
 * entry reads and writes its chunk's record (an ack, the records it names) and job-wide
 * counters whose result does not depend on order (done counts, the duplicate count,
 * `active`); the job-wide fields it reads (canceled, failed, paused, waiting, the
 * blocklist) only change through entries of other kinds, and 'done' only once every chunk
 * is done (then a claim, release or complete changes no record). So after a point past which every entry is
 * chunk-local, a chunk's record is the fold of that chunk's entries alone from its record
 * at that point, and entries on different chunks commute. The encode chunk is not
 * chunk-local: every frame chunk's complete may open it.
 *
 * Chunk records are copy-on-write between an accumulator and its copies (checkpoints), so
 * a copy costs one array of references and `foldChanges` can tell a replay's changes by
 * record identity (jobs/fold-changes.ts relies on both). An in-place add keeps the same
 * state object. Memory: at most MAX_CHECKPOINTS snapshots (the newest), each O(chunks)
 * references, and one list of entries per chunk.
 */
/** Snapshots a JobFold keeps (the newest): see its comment. */
export const MAX_CHECKPOINTS = 8

interface Checkpoint {
  /** The state after the first `at` sorted entries. */
  at: number
  acc: Acc | undefined
}

export class JobFold {
  private readonly sorted: LogEntry[] = []
  private readonly ids = new Set<string>()
  private acc: Acc | undefined
  /** Snapshots of the state after the first `at` entries, so a late entry replays only a tail. */
  private checkpoints: Checkpoint[] = []
  private readonly isAdmin: (peer: PeerIdString) => boolean
  /** Chunk-local entries by the chunks they touch, each list in sorted order. */
  private readonly byChunk = new Map<number, LogEntry[]>()
  /** Position in `sorted` of the last entry that is not chunk-local (-1: none). */
  private lastNonLocal = -1
  /** The encode chunk's index (-1: none; undefined: no announce folded yet). */
  private encode: number | undefined

  constructor(options: ReduceOptions = {}) {
    this.isAdmin = options.isAdmin ?? (() => false)
  }

  /** Add one entry; false if it was already present. */
  add(entry: LogEntry): boolean {
    if (this.ids.has(entry.id)) return false
    this.ids.add(entry.id)
    const n = this.sorted.length
    const touched = touchedChunks(entry)
    if (touched) for (const c of touched) insertSorted(this.listOf(c), entry)
    if (n === 0 || compareEntries(this.sorted[n - 1], entry) < 0) {
      this.sorted.push(entry)
      if (!this.isLocal(entry, touched)) this.lastNonLocal = n
      this.apply(entry)
      this.layoutKnown()
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
    if (this.lastNonLocal >= lo) this.lastNonLocal++
    const local = this.isLocal(entry, touched)
    if (!local && lo > this.lastNonLocal) this.lastNonLocal = lo
    for (const cp of this.checkpoints) if (cp.at > lo) cp.at++
    if (local && this.lastNonLocal < lo && this.acc) {
      if (touched!.every((c) => this.lastOf(c) === entry)) {
        // Nothing after it touches its chunks: it commutes with all that follows.
        this.acc.apply(entry, this.isAdmin)
        for (const cp of this.checkpoints) if (cp.at > lo) cp.acc?.apply(entry, this.isAdmin)
        return true
      }
      if (touched!.length === 1 && this.refold(touched![0], entry, lo)) return true
    }
    this.replay(lo)
    return true
  }

  get state(): JobState | undefined {
    return this.acc?.s
  }

  get entries(): readonly LogEntry[] {
    return this.sorted
  }

  private listOf(chunk: number): LogEntry[] {
    let l = this.byChunk.get(chunk)
    if (!l) {
      l = []
      this.byChunk.set(chunk, l)
    }
    return l
  }

  private lastOf(chunk: number): LogEntry | undefined {
    const l = this.byChunk.get(chunk)
    return l?.[l.length - 1]
  }

  /** Chunk-local (see the class); before the announce nothing is. */
  private isLocal(e: LogEntry, touched: readonly number[] | undefined): boolean {
    if (!touched || this.encode === undefined) return false
    return e.kind === 'ack' || touched[0] !== this.encode
  }

  /** Once the announce is folded, the layout is fixed: classify what came before it. */
  private layoutKnown(): void {
    if (this.encode !== undefined || !this.acc) return
    const chunks = this.acc.s.chunks
    this.encode = chunks[chunks.length - 1]?.kind === 'encode' ? chunks.length - 1 : -1
    this.lastNonLocal = -1
    for (let i = 0; i < this.sorted.length; i++)
      if (!this.isLocal(this.sorted[i], touchedChunks(this.sorted[i]))) this.lastNonLocal = i
  }

  /**
   * Fold `chunk` alone from the newest checkpoint at or before `lo` past which every entry
   * is chunk-local: its record with and without `entry`, at the end and at each later
   * checkpoint; each of those takes the new record and the difference in duplicates.
   * False (nothing changed) when no checkpoint qualifies.
   */
  private refold(chunk: number, entry: LogEntry, lo: number): boolean {
    let base: Checkpoint | undefined
    for (const cp of this.checkpoints)
      if (cp.acc && cp.at <= lo && cp.at > this.lastNonLocal && (!base || cp.at > base.at))
        base = cp
    if (!base?.acc) return false
    const since = this.sorted[base.at - 1]
    const all = this.byChunk.get(chunk) ?? []
    const after = all.filter((e) => compareEntries(e, since) > 0)
    const later = this.checkpoints.filter((cp) => cp.at > lo && cp.acc)
    const bounds = [...later.map((cp) => this.sorted[cp.at - 1]), undefined]
    const before = chunkRuns(
      base.acc,
      chunk,
      after.filter((e) => e !== entry),
      bounds,
      this.isAdmin,
    )
    const now = chunkRuns(base.acc, chunk, after, bounds, this.isAdmin)
    if (!now) return false
    const targets = [...later.map((cp) => cp.acc!), this.acc!]
    for (let i = 0; i < targets.length; i++)
      if (!targets[i].replaceChunk(chunk, now[i].record, now[i].duplicates - before![i].duplicates))
        return false
    return true
  }

  /** Replay from the newest checkpoint before `lo`, checkpointing on the way. */
  private replay(lo: number): void {
    while (this.checkpoints.length > 0 && this.checkpoints[this.checkpoints.length - 1].at > lo)
      this.checkpoints.pop()
    const cp = this.checkpoints[this.checkpoints.length - 1]
    this.acc = cp?.acc?.copy()
    for (let i = cp?.at ?? 0; i < this.sorted.length; i++) {
      this.apply(this.sorted[i])
      this.maybeCheckpoint(i + 1)
    }
    this.layoutKnown()
  }

  private maybeCheckpoint(at = this.sorted.length): void {
    const last = this.checkpoints[this.checkpoints.length - 1]?.at ?? 0
    // A copy costs O(chunks) references: space them so it stays a small share of the fold.
    const every = Math.max(32, (this.acc?.s.chunks.length ?? 0) >> 4)
    if (at - last >= every) {
      this.checkpoints.push({ at, acc: this.acc?.copy() })
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

/** The chunks a claim, release, complete or ack names; undefined for other kinds. */
function touchedChunks(e: LogEntry): readonly number[] | undefined {
  const body = e.body as { chunk?: unknown; chunks?: unknown } | null
  if (e.kind === 'claim' || e.kind === 'release' || e.kind === 'complete') {
    return Number.isSafeInteger(body?.chunk) ? [body!.chunk as number] : undefined
  }
  if (e.kind === 'ack' && Array.isArray(body?.chunks) && body.chunks.length > 0) {
    const out = [...new Set(body.chunks)]
    return out.every((c) => Number.isSafeInteger(c)) ? (out as number[]) : undefined
  }
  return undefined
}

function insertSorted(list: LogEntry[], e: LogEntry): void {
  let i = list.length
  while (i > 0 && compareEntries(list[i - 1], e) > 0) i--
  list.splice(i, 0, e)
}

/**
 * `chunk`'s record and the job's duplicate count after folding `entries` (sorted, all on
 * that chunk) onto a copy of `base`, taken at each bound: after the entries sorting at or
 * before it (undefined: after all of them).
 */
function chunkRuns(
  base: Acc,
  chunk: number,
  entries: readonly LogEntry[],
  bounds: readonly (LogEntry | undefined)[],
  isAdmin: (p: PeerIdString) => boolean,
): { record: ChunkState; duplicates: number }[] | undefined {
  const scratch = base.copy()
  if (!scratch.s.chunks[chunk]) return undefined
  const out: { record: ChunkState; duplicates: number }[] = []
  let i = 0
  for (const bound of bounds) {
    while (i < entries.length && (!bound || compareEntries(entries[i], bound) <= 0))
      scratch.apply(entries[i++], isAdmin)
    out.push({ record: scratch.s.chunks[chunk], duplicates: scratch.s.duplicates })
    // The next bound folds further on the same scratch: it must not mutate what it gave.
    scratch.release(chunk)
  }
  return out
}

/**
 * A copy for an accumulator to mutate: job-wide fields it mutates in place (the failure
 * counts) are copied; chunk records are shared and copied on write by the Acc (own).
 * Frames, outputs and the announce body are never mutated, so shared.
 */
function cloneState(s: JobState): JobState {
  return {
    ...s,
    announce: { ...s.announce },
    nodeFailures: { ...s.nodeFailures },
    blocklist: s.blocklist.slice(),
    chunks: s.chunks.slice(),
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
  /** Chunk records this accumulator made and no copy shares: the ones it may mutate. */
  private owned = new WeakSet<ChunkState>()

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

  /** An independent copy, counters included; chunk records are shared until written. */
  copy(): Acc {
    this.owned = new WeakSet()
    return new Acc(cloneState(this.s), this)
  }

  /** Chunk `i`'s record, made this accumulator's own to mutate (copied if shared). */
  private own(i: number): ChunkState {
    const c = this.s.chunks[i]
    if (this.owned.has(c)) return c
    const mine = { ...c, failures: c.failures.slice() }
    this.s.chunks[i] = mine
    this.owned.add(mine)
    return mine
  }

  /** Chunk `i`'s record is handed out: a later write copies it first. */
  release(i: number): void {
    const c = this.s.chunks[i]
    if (c) this.owned.delete(c)
  }

  /**
   * Put `record` in place of chunk `i`'s (a re-fold of that chunk alone, JobFold.refold)
   * and add `duplicates` to the count; the counters follow the record. False, changing
   * nothing, if that would take a done chunk out of done: no chunk-local entry can.
   */
  replaceChunk(i: number, record: ChunkState, duplicates: number): boolean {
    const s = this.s
    const old = s.chunks[i]
    if (!old || (old.state === 'done' && record.state !== 'done')) return false
    const count = (c: ChunkState, sign: 1 | -1) => {
      if (c.state === 'done') {
        this.doneChunks += sign
        if (c.kind === 'frames') {
          this.doneFrameChunks += sign
          s.framesDone += sign * c.frames.length
        }
        if (c.acked) this.ackedChunks += sign
      }
      if (c.state === 'failed') this.failedChunks += sign
    }
    count(old, -1)
    count(record, 1)
    s.chunks[i] = record
    this.owned.delete(record)
    s.duplicates += duplicates
    if (record.attempt > 0 || record.state === 'done') this.active = true
    if (old.state !== 'done' && record.state === 'done') this.openEncodeIfReady()
    this.refresh()
    return true
  }

  /** Once every frames chunk is done, the waiting (encode) chunk opens. */
  private openEncodeIfReady(): void {
    if (this.doneFrameChunks !== this.frameChunks) return
    for (const x of this.s.chunks) if (x.state === 'waiting') this.own(x.index).state = 'open'
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
      ...(job.after ? { waiting: true as const } : {}),
    })
  }

  private refresh(): void {
    const s = this.s
    const n = s.chunks.length
    if (s.canceled) s.state = 'canceled'
    else if (this.failedChunks > 0 || s.abortReason !== undefined) s.state = 'failed'
    else if (this.doneChunks === n) s.state = 'done'
    else if (s.paused) s.state = 'paused'
    else if (s.waiting) s.state = 'waiting'
    else s.state = this.active ? 'rendering' : 'queued'
    s.allAcked = this.doneChunks === n && this.ackedChunks === n
  }

  private privileged(author: PeerIdString, isAdmin: (p: PeerIdString) => boolean): boolean {
    return author === this.s.submitter || isAdmin(author)
  }

  /** `c` must be this accumulator's own (own). */
  private setState(c: ChunkState, next: ChunkStatus): void {
    if (c.state === next) return
    if (c.state === 'failed') this.failedChunks--
    if (next === 'failed') this.failedChunks++
    c.state = next
    if (next !== 'claimed') delete c.holder
    if (next === 'done') {
      this.doneChunks++
      if (c.kind === 'frames') {
        this.doneFrameChunks++
        this.s.framesDone += c.frames.length
        this.openEncodeIfReady()
      }
    }
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
          this.setState(this.own(x.index), 'waiting')
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
        // Paused or waiting: no new holder (a running render keeps its lease and finishes).
        if (s.paused || s.waiting) return
        const c = s.chunks[v.body.chunk]
        if (!c || (c.state !== 'open' && c.state !== 'claimed')) return
        if (s.blocklist.includes(e.author) || v.body.attempt <= c.attempt) return
        // A higher attempt supersedes: that is how an observer reopens a dead lease.
        const m = this.own(c.index)
        this.setState(m, 'claimed')
        m.attempt = v.body.attempt
        m.holder = e.author
        m.claimClock = e.clock
        this.active = true
        break
      }
      case 'release': {
        const v = validated(e) as Validated<BodyOf['release']>
        if (!v.ok) return
        const c = s.chunks[v.body.chunk]
        if (c?.state !== 'claimed' || c.holder !== e.author || c.attempt !== v.body.attempt) return
        this.setState(this.own(c.index), 'open')
        break
      }
      case 'fail': {
        const v = validated(e) as Validated<BodyOf['fail']>
        if (!v.ok) return
        const c = s.chunks[v.body.chunk]
        if (!c || c.state === 'done' || c.state === 'waiting' || v.body.attempt > c.attempt) return
        if (c.failures.some((f) => f.node === e.author && f.attempt === v.body.attempt)) return
        const m = this.own(c.index)
        this.countFailure(m, e.author, v.body.attempt, v.body.reason)
        if (m.state === 'claimed' && m.holder === e.author && m.attempt === v.body.attempt)
          this.setState(m, 'open')
        if (new Set(m.failures.map((f) => f.node)).size >= this.maxNodes) this.setState(m, 'failed')
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
        const m = this.own(c.index)
        this.setState(m, 'done')
        m.outputs = v.body.outputs
        m.completedBy = e.author
        m.completedAttempt = v.body.attempt
        m.renderMs = v.body.renderMs
        if (v.body.log !== undefined) m.log = v.body.log
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
        const m = this.own(c.index)
        this.undone(m)
        // A new attempt: the next claim must be above the rejected one.
        m.attempt = Math.max(m.attempt, v.body.attempt)
        this.countFailure(m, node, v.body.attempt, `outputs rejected: ${v.body.reason}`)
        if (new Set(m.failures.map((f) => f.node)).size >= this.maxNodes) this.setState(m, 'failed')
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
          const m = this.own(c.index)
          this.setState(m, 'open')
          m.failures = []
          reopened = true
        }
        // An aborted job had no eligible node left: a fresh start for every unfinished chunk.
        if (s.abortReason !== undefined) {
          delete s.abortReason
          for (const c of s.chunks) if (c.state !== 'done') this.own(c.index).failures = []
          reopened = true
        }
        // A fresh start: otherwise a retried job may have no eligible node left.
        if (reopened) {
          s.nodeFailures = {}
          s.blocklist = []
        }
        break
      }
      case 'pause':
      case 'resume': {
        // The last of them in fold order decides; pausing an ended job changes nothing.
        if (!validated(e).ok || !this.privileged(e.author, isAdmin)) return
        if (e.kind === 'pause') s.paused = true
        else delete s.paused
        break
      }
      case 'ready': {
        if (!validated(e).ok || !this.privileged(e.author, isAdmin)) return
        delete s.waiting
        break
      }
      case 'unblock': {
        const v = validated(e) as Validated<BodyOf['unblock']>
        if (!v.ok || !this.privileged(e.author, isAdmin) || s.canceled) return
        // Its failures stay on the chunks (history, and M distinct nodes still fail a
        // chunk); the count restarts, so N new failures blocklist it again.
        const node = v.body.node
        if (node === undefined) {
          s.nodeFailures = {}
          s.blocklist = []
        } else {
          delete s.nodeFailures[node]
          s.blocklist = s.blocklist.filter((n) => n !== node)
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
            this.own(i).acked = true
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
  if (o.paused === true) s.paused = true
  // The Acc constructor recomputes the derived fields.
  return new Acc(s).s
}

// ---- the queue across jobs ------------------------------------------------------------

/** Queued or rendering, not canceled or deleted: a job whose open chunks may be claimed. */
export function isRunnable(s: JobState): boolean {
  return !s.canceled && !s.deleted && (s.state === 'queued' || s.state === 'rendering')
}

/**
 * A job whose held leases keep rendering: runnable, or paused (a pause stops new claims,
 * not the renders already running).
 */
export function keepsRenders(s: JobState): boolean {
  return isRunnable(s) || (!s.canceled && !s.deleted && s.state === 'paused')
}

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
  const live = jobs.filter((j) => !j.deleted && isRunnable(j))
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
