/**
 * The log manager's contract: what callers (sync, jobs, node, api) see of it, its
 * components and options, and the shape of a join's result. The implementation is
 * log.ts (which re-exports these names).
 */
import type { Clock } from '../util/clock.js'
import type { Logger } from '../util/logger.js'
import type { RmeshError } from '../util/errors.js'
import type { LogStore } from './store.js'
import type { EntryId, LogEntry, LogId, Signer } from './types.js'

export type EntryOrigin = 'append' | 'join'
export type EntryListener = (entry: LogEntry, origin: EntryOrigin) => void

export interface JoinRejection {
  id?: EntryId
  error: RmeshError
}

export interface JoinResult {
  /** Entries stored by this call (and entries it released from pending), parents first. */
  added: LogEntry[]
  /** Parent ids this node lacks; the sync fetches them. */
  missing: EntryId[]
  rejected: JoinRejection[]
  /** Entries already stored or already pending. */
  duplicates: number
  /** Entries covered by a seal (or not descended from it): dropped without error. */
  ignored: number
  /** Entries of this call now waiting in the pending set. */
  pending: number
}

export interface LogManagerComponents {
  store: LogStore
  signer: Signer
  clock: Clock
  logger: Logger
  /** Throw to refuse an entry; an error with code ERR_AUTH_PENDING holds it for retryPending(). */
  authorize?: (entry: LogEntry) => Promise<void>
  /** Id of the admission token this node holds, written in every entry it appends. */
  tokenId: () => string
}

export interface LogManagerOptions {
  /** Entry kinds accepted; others are rejected with ERR_ENTRY_KIND. Default: any well-formed kind. */
  kinds?: Iterable<string>
  maxPendingEntries?: number
  maxPendingBytes?: number
  /** How many ids of dropped (sealed-over) entries to remember so they are not fetched again. */
  maxDroppedIds?: number
  /** Logs whose decoded entries stay in memory (for entries() and diff()). */
  cachedLogs?: number
  /** Logs whose effective seal (or its absence) stays in memory; the store holds them all. */
  cachedSeals?: number
}

export interface LogDiff {
  /** What the other side lacks of this log, parents first. */
  entries: LogEntry[]
  /** False when some of the other side's heads are unknown here (the diff may hold extras). */
  complete: boolean
}

export interface LogManager {
  append<Body>(log: LogId, kind: string, body: Body): Promise<LogEntry<Body>>
  join(input: JoinInput): Promise<JoinResult>
  /**
   * Size, schema and signature of one envelope, as join checks them (the signature is
   * skipped when this node holds the entry already). Resolves to the entry, trusted by
   * join, or to undefined when this node holds, awaits or dropped it. Throws an EntryError.
   */
  validate(bytes: Uint8Array): Promise<LogEntry | undefined>
  heads(log: LogId): Promise<EntryId[]>
  /** The log's retained entries in fold order (compareEntries): a seal, if any, first. */
  entries(log: LogId): Promise<LogEntry[]>
  get(id: EntryId): Promise<LogEntry | undefined>
  has(id: EntryId): Promise<boolean>
  logs(): Promise<LogId[]>
  onEntry(listener: EntryListener): () => void
  /** Append a seal carrying the caller's final state, and drop what it covers. */
  seal<Body>(log: LogId, body: Body): Promise<LogEntry<Body>>
  /** Retry entries held because their author's token was not known yet. */
  retryPending(): Promise<JoinResult>
  /** Entries this log holds that a peer with `theirHeads` lacks. */
  diff(log: LogId, theirHeads: readonly string[]): Promise<LogDiff>
  /** Ids awaited by pending entries (for the sync). */
  missing(): EntryId[]
  readonly pendingCount: number
  /** Fill of the bounded in-memory caches (for /metrics and the soak's memory verdict). */
  caches(): CacheFill[]
}

export interface CacheFill {
  name: string
  size: number
  capacity: number
}

export type JoinInput = Uint8Array | LogEntry | ReadonlyArray<Uint8Array | LogEntry>
