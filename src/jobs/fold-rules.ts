/**
 * How each entry kind changes a job's state (protocols/job-entries.md, "Reducer rules"):
 * the accumulator the folds (jobs/job-fold.ts) apply entries with, and the validation of a
 * sealed state from a peer, whose derived fields the same accumulator recomputes.
 *
 * Invariants: total (an entry with an unknown kind, an invalid body or an unauthorised author
 * changes nothing and never throws); an entry costs O(size of its body); chunk records are
 * copied on write, so copies (checkpoints) share unchanged records.
 */
import type { EntryId, LogEntry, PeerIdString } from '../log/types.js'
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
import {
  type ChunkFailure,
  type ChunkState,
  type ChunkStatus,
  cloneState,
  type JobState,
} from './job-state.js'

/**
 * Entries are immutable, so a body's validation is computed once per entry object
 * (replays after a late entry would otherwise re-parse every CID).
 */
const validations = new WeakMap<object, Validated<unknown>>()
export function validated(e: LogEntry): Validated<unknown> {
  let v = validations.get(e)
  if (!v) {
    v = validateBody(e.kind, e.body)
    validations.set(e, v)
  }
  return v
}

/** The mutable accumulator; keeps counters so each entry costs O(size of its body). */
export class Acc {
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
