/**
 * The append path of the log manager, with group commit: appends to one log issued while
 * that log's queue slot is busy (a write in flight, a join) or in the same tick are built
 * one on top of the other in memory and written in ONE store batch.
 *
 * Invariants:
 *  - a group runs in its log's queue slot (the manager's KeyedQueue), so it never races a
 *    join or another group of that log; groups run in call order;
 *  - appends to one log called in order A then B: B's clock is greater than A's and B names
 *    A among its parents (B is built on the heads A made, before A is written), listeners
 *    hear A then B, and both are announced after the batch holding them is written;
 *  - durability: an append's promise resolves only once its entry AND the heads naming it
 *    are written in one atomic store batch (LevelDB: the write-ahead log, not fsync'd, as
 *    every write of this node: a process crash loses nothing resolved; a power loss may
 *    lose the last resolved writes). If the batch fails, every append of the group rejects
 *    with the store's error, nothing of it is stored, and the log's heads stay those
 *    before the group, so a retry builds on them;
 *  - an append refused by its checks (kind, authorization, a body too large) rejects alone
 *    with its typed error; the next append of the group is built as if it had not been
 *    called;
 *  - a seal is a group of its own (it rewrites the log when applied);
 *  - a group holds at most MAX_GROUP appends (one bounded batch); the rest go in the next.
 */
import type { Clock } from '../util/clock.js'
import type { KeyedQueue } from '../util/queue.js'
import { createEntry, MAX_PARENTS } from './entry.js'
import { EntryUnauthorizedError } from './errors.js'
import { compareEntries, type EntryId, type LogEntry, type LogId, type Signer } from './types.js'

/** What ordering needs of a head: its id, clock and author. */
export type HeadKey = Pick<LogEntry, 'id' | 'clock' | 'author'>

/** Entries integrated but not written yet, and the heads they make: one store batch. */
export interface Stage {
  readonly added: Map<EntryId, LogEntry>
  heads: Set<EntryId>
}

/** Appends written in one batch at most (a burst of more goes in several). */
export const MAX_GROUP = 256

/** What the appender needs of the log manager. */
export interface AppendDeps {
  queue: KeyedQueue
  signer: Signer
  clock: Clock
  tokenId: () => string
  sealKind: string
  /** A stage on the log's stored heads. */
  openStage(log: LogId): Promise<Stage>
  /** A head's key from memory, or from the store (undefined when it is not stored). */
  headKey(id: EntryId): Promise<HeadKey | undefined>
  /**
   * Integrate this node's own entry into the stage (a seal is applied and written at
   * once); true when staged or stored, false when held pending, else throws the refusal.
   */
  integrateOwn(log: LogId, entry: LogEntry, stage: Stage): Promise<boolean>
  /** Write the stage in one batch, then announce its entries; on failure forget them. */
  commitStage(log: LogId, stage: Stage): Promise<void>
  /** Forget an entry held in the pending set (an append is never left waiting). */
  forgetPending(id: EntryId): void
}

export type Append = <Body>(log: LogId, kind: string, body: Body) => Promise<LogEntry<Body>>

interface Request {
  kind: string
  body: unknown
  resolve(entry: LogEntry): void
  reject(err: unknown): void
}

export function createAppender(deps: AppendDeps): Append {
  const { queue, signer, clock, tokenId } = deps
  const queued = new Map<LogId, Request[]>()
  const scheduled = new Set<LogId>()

  function schedule(log: LogId): void {
    if (scheduled.has(log)) return
    scheduled.add(log)
    // drain settles every request it takes and never throws.
    void queue.run(log, () => drain(log))
  }

  /** The next group: appends up to a seal (or the seal alone), at most MAX_GROUP. */
  function take(log: LogId): Request[] {
    const list = queued.get(log) ?? []
    let n = 0
    if (list[0]?.kind === deps.sealKind) n = 1
    else while (n < list.length && n < MAX_GROUP && list[n].kind !== deps.sealKind) n++
    const group = list.splice(0, n)
    if (list.length === 0) queued.delete(log)
    return group
  }

  async function build(log: LogId, kind: string, body: unknown, current: Iterable<EntryId>) {
    // Only ids and clocks are needed: the metadata cache spares decoding the heads
    // again for every append (a third of an append's cost in a burst, profiled).
    const heads: HeadKey[] = []
    for (const id of current) {
      const e = await deps.headKey(id)
      if (e) heads.push(e)
    }
    // Follow the newest heads when there are more than an entry may name.
    heads.sort((a, b) => compareEntries(b, a))
    const next = heads.slice(0, MAX_PARENTS)
    return createEntry(signer, {
      log,
      kind,
      body,
      clock: 1 + Math.max(0, ...next.map((h) => h.clock)),
      next: next.map((h) => h.id),
      wall: clock.wall(),
      tok: tokenId(),
    })
  }

  async function drain(log: LogId): Promise<void> {
    // Requests arriving from here on wait for the next group: it runs after this batch.
    scheduled.delete(log)
    const group = take(log)
    if (queued.has(log)) schedule(log)
    const made: Array<[Request, LogEntry]> = []
    try {
      const stage = await deps.openStage(log)
      for (const r of group) {
        try {
          const entry = await build(log, r.kind, r.body, stage.heads)
          if (!(await deps.integrateOwn(log, entry, stage))) {
            deps.forgetPending(entry.id)
            throw new EntryUnauthorizedError(
              'this node may not append this entry yet (its token is not known)',
            )
          }
          made.push([r, entry])
        } catch (err) {
          r.reject(err)
        }
      }
      await deps.commitStage(log, stage)
    } catch (err) {
      // The batch (or reading the heads) failed: nothing of the group is stored. A request
      // already refused by its own check keeps that error (a settled promise ignores this).
      for (const r of group) r.reject(err)
      return
    }
    for (const [r, e] of made) r.resolve(e)
  }

  return function append<Body>(log: LogId, kind: string, body: Body): Promise<LogEntry<Body>> {
    return new Promise<LogEntry<Body>>((resolve, reject) => {
      let list = queued.get(log)
      if (!list) {
        list = []
        queued.set(log, list)
      }
      list.push({ kind, body, resolve: resolve as (e: LogEntry) => void, reject })
      schedule(log)
    })
  }
}
