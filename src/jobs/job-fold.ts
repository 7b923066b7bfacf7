/**
 * Folding a job log: reduceJob (a batch) and JobFold (incremental, as entries arrive in any
 * order), both applying jobs/fold-rules.ts in compareEntries order, so the state depends only
 * on the set of entries. The lease manager and the simulator use JobFold to share the
 * reducer's exact semantics.
 */
import type { LogEntry, PeerIdString } from '../log/types.js'
import { compareEntries, jobLogId } from '../log/types.js'
import type { AnnounceBody, Validated } from './entries.js'
import { Acc, validated, validateJobState } from './fold-rules.js'
import type { ChunkState, JobState, ReduceOptions } from './job-state.js'

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
