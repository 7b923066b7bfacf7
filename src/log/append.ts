/**
 * The append path of the log manager: build this node's next entry of a log on its heads,
 * sign it and hand it to the one integrate path that joins use too.
 *
 * Invariants:
 *  - an append runs in its log's queue slot (the manager's KeyedQueue), so it never races
 *    a join or another append of that log;
 *  - the new entry names the log's heads (the MAX_PARENTS newest) and its clock is one more
 *    than the greatest of theirs;
 *  - the promise resolves with the entry once it is stored, and rejects with the typed
 *    error of the check that refused it (nothing is stored then).
 */
import type { Clock } from '../util/clock.js'
import type { KeyedQueue } from '../util/queue.js'
import { createEntry, MAX_PARENTS } from './entry.js'
import { EntryUnauthorizedError } from './errors.js'
import { compareEntries, type EntryId, type LogEntry, type LogId, type Signer } from './types.js'

/** What ordering needs of a head: its id, clock and author. */
export type HeadKey = Pick<LogEntry, 'id' | 'clock' | 'author'>

/** What the appender needs of the log manager. */
export interface AppendDeps {
  queue: KeyedQueue
  signer: Signer
  clock: Clock
  tokenId: () => string
  headsOf(log: LogId): Promise<EntryId[]>
  /** A head's key from memory, or from the store (undefined when it is not stored). */
  headKey(id: EntryId): Promise<HeadKey | undefined>
  /** Integrate this node's own entry; true when stored, else throws the refusal. */
  integrateOwn(log: LogId, entry: LogEntry): Promise<boolean>
  /** Forget an entry held in the pending set (an append is never left waiting). */
  forgetPending(id: EntryId): void
}

export type Append = <Body>(log: LogId, kind: string, body: Body) => Promise<LogEntry<Body>>

export function createAppender(deps: AppendDeps): Append {
  const { queue, signer, clock, tokenId } = deps

  return function append<Body>(log: LogId, kind: string, body: Body): Promise<LogEntry<Body>> {
    return queue.run(log, async () => {
      const current = await deps.headsOf(log)
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
      const entry = await createEntry(signer, {
        log,
        kind,
        body,
        clock: 1 + Math.max(0, ...next.map((h) => h.clock)),
        next: next.map((h) => h.id),
        wall: clock.wall(),
        tok: tokenId(),
      })
      if (!(await deps.integrateOwn(log, entry))) {
        deps.forgetPending(entry.id)
        throw new EntryUnauthorizedError(
          'this node may not append this entry yet (its token is not known)',
        )
      }
      return entry
    })
  }
}
