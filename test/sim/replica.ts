/**
 * One simulated node's replica of the job logs: assigns Lamport clocks, folds every entry
 * with the real reducer and checks the safety invariants on every add (at most one holder
 * per chunk, done never reverts except by the submitter's reject of that exact attempt,
 * test/helpers/job-invariants.ts); a violation is reported to the mesh with the seed.
 *
 * Invariants: each add checks every chunk record the entry may have changed
 * (jobs/fold-changes.ts: the chunk it names and the encode chunk, every chunk after a
 * replay), so checking costs O(1) per entry and nothing that changed goes unchecked; the
 * anti-entropy summary is what the replica holds per author (the contiguous prefix of
 * each author's sequence and the few entries beyond it), so comparing two replicas costs
 * what they differ by, not the size of the log.
 */
import { AbortedError } from '../../src/util/errors.js'
import type { EntryId, LogEntry, LogId, PeerIdString } from '../../src/log/types.js'
import { jobIdOfLog } from '../../src/log/types.js'
import type { JobLogView } from '../../src/jobs/lease-manager.js'
import { foldChanges, markFold } from '../../src/jobs/fold-changes.js'
import { type ChunkState, JobFold } from '../../src/jobs/reducer.js'
import { illegalDoneRevert } from '../helpers/job-invariants.js'
import type { SimNode } from './mesh.js'

/** What a replica holds of one author's entries: seq 1..prefix, and `extras` beyond it. */
export interface AuthorSummary {
  prefix: number
  extras: number[]
}
export type ReplicaSummary = Map<PeerIdString, AuthorSummary>

interface AuthorLog {
  bySeq: (LogEntry | undefined)[]
  prefix: number
  extras: Set<number>
}

/** The sequence number in a simulated entry id (`e<seq>-<author>`). */
const seqOf = (id: string) => Number(id.slice(1, id.indexOf('-')))

/** One node's replica of the logs: assigns Lamport clocks, checks invariants on every add. */
export class Replica implements JobLogView {
  readonly logs = new Map<string, Map<string, LogEntry>>()
  readonly folds = new Map<string, JobFold>()
  /** Entries held, over every log. */
  size = 0
  private readonly maxClock = new Map<string, number>()
  private readonly authors = new Map<PeerIdString, AuthorLog>()
  private readonly doneSeen = new Map<string, (PeerIdString | undefined)[]>()
  private listeners = new Set<(e: LogEntry) => void>()
  private seq = 0

  constructor(private readonly node: SimNode) {}

  has(id: string): boolean {
    for (const m of this.logs.values()) if (m.has(id)) return true
    return false
  }

  allEntries(): LogEntry[] {
    const out: LogEntry[] = []
    for (const m of this.logs.values()) out.push(...m.values())
    return out
  }

  summary(): ReplicaSummary {
    const out: ReplicaSummary = new Map()
    for (const [a, l] of this.authors) out.set(a, { prefix: l.prefix, extras: [...l.extras] })
    return out
  }

  /** The entries this replica holds that a replica with summary `theirs` lacks. */
  missingFrom(theirs: ReplicaSummary): LogEntry[] {
    const out: LogEntry[] = []
    for (const [a, l] of this.authors) {
      const t = theirs.get(a)
      const extras = new Set(t?.extras)
      for (let q = (t?.prefix ?? 0) + 1; q < l.bySeq.length; q++) {
        const e = l.bySeq[q]
        if (e && !extras.has(q)) out.push(e)
      }
    }
    return out
  }

  async append(log: LogId, kind: string, body: unknown): Promise<LogEntry> {
    if (!this.node.alive) throw new AbortedError('append on a dead node')
    const clock = (this.maxClock.get(log) ?? 0) + 1
    const entry: LogEntry = Object.freeze({
      id: `e${String(++this.seq).padStart(6, '0')}-${this.node.id}` as EntryId,
      v: 1,
      log,
      kind,
      body: structuredClone(body),
      clock,
      author: this.node.id,
      wall: this.node.clock.wall(),
      next: [],
      tok: '',
      bytes: new Uint8Array(),
    })
    this.add(entry)
    this.node.mesh.gossip(this.node, entry)
    return entry
  }

  entries(log: LogId): readonly LogEntry[] {
    return [...(this.logs.get(log)?.values() ?? [])]
  }
  jobLogs(): readonly LogId[] {
    return [...this.logs.keys()] as LogId[]
  }
  onEntry(listener: (e: LogEntry) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }
  resetListeners(): void {
    this.listeners = new Set()
  }

  add(entry: LogEntry): boolean {
    let m = this.logs.get(entry.log)
    if (!m) {
      m = new Map()
      this.logs.set(entry.log, m)
    }
    if (m.has(entry.id)) return false
    m.set(entry.id, entry)
    this.size++
    this.maxClock.set(entry.log, Math.max(this.maxClock.get(entry.log) ?? 0, entry.clock))
    const seq = seqOf(entry.id)
    this.noteSeq(entry, seq)
    // A restarted node's sequence must not reuse ids it wrote before.
    if (entry.author === this.node.id) this.seq = Math.max(this.seq, seq)
    this.check(entry)
    if (this.node.alive) for (const l of [...this.listeners]) l(entry)
    return true
  }

  private noteSeq(entry: LogEntry, seq: number): void {
    let l = this.authors.get(entry.author)
    if (!l) {
      l = { bySeq: [], prefix: 0, extras: new Set() }
      this.authors.set(entry.author, l)
    }
    l.bySeq[seq] = entry
    if (seq !== l.prefix + 1) {
      l.extras.add(seq)
      return
    }
    l.prefix = seq
    while (l.extras.delete(l.prefix + 1)) l.prefix++
  }

  private check(entry: LogEntry): void {
    const jobId = jobIdOfLog(entry.log)!
    let fold = this.folds.get(jobId)
    if (!fold) {
      fold = new JobFold()
      this.folds.set(jobId, fold)
    }
    const mark = markFold(fold)
    fold.add(entry)
    const s = fold.state
    if (!s) return
    let done = this.doneSeen.get(jobId)
    if (!done) {
      done = []
      this.doneSeen.set(jobId, done)
    }
    const changes = foldChanges(fold, mark, entry)
    if (changes === 'all') for (const c of s.chunks) this.checkChunk(fold, c, done)
    else
      for (const i of changes) {
        const c = s.chunks[i]
        if (c) this.checkChunk(fold, c, done)
      }
  }

  private checkChunk(fold: JobFold, c: ChunkState, done: (PeerIdString | undefined)[]): void {
    if ((c.state === 'claimed') !== (c.holder !== undefined)) {
      this.node.mesh.violation(`${this.node.id}: chunk ${c.index} holder/state mismatch`)
    }
    const was = done[c.index]
    if (was !== undefined) {
      if (c.state !== 'done') {
        // Only the submitter's reject of the exact attempt that made it done reopens it.
        const why = illegalDoneRevert(fold.entries)
        if (why) this.node.mesh.violation(`${this.node.id}: done chunk ${c.index} reverted: ${why}`)
        done[c.index] = undefined
      }
      // A concurrent complete that sorts first may replace the outputs (both are valid
      // stored renders); count it, it is part of the duplicate cost.
      else if (c.completedBy !== was) {
        done[c.index] = c.completedBy!
        this.node.mesh.outputSwitches++
      }
    } else if (c.state === 'done') {
      done[c.index] = c.completedBy!
    }
  }
}
