/**
 * The shapes shared by the log, the sync protocol, the reducers and the simulator.
 *
 * An entry is immutable once signed: `bytes` are the exact signed envelope received or
 * produced, `id` is the CID of the SHA-256 of `bytes`, and every other field is what
 * those bytes decode to. Nothing is ever re-encoded to verify.
 */

/** CID string of an entry's signed bytes. */
export type EntryId = string & { readonly __brand: 'EntryId' }
/** A log's name: `mesh` for the mesh log, `job/<jobId>` for a job's log. */
export type LogId = string & { readonly __brand: 'LogId' }
/** A libp2p peer id in its string form (an Ed25519 identity multihash). */
export type PeerIdString = string & { readonly __brand: 'PeerIdString' }

export const MESH_LOG = 'mesh' as LogId

export function jobLogId(jobId: string): LogId {
  return `job/${jobId}` as LogId
}

export function jobIdOfLog(log: LogId | string): string | undefined {
  return log.startsWith('job/') ? log.slice(4) : undefined
}

export const ENTRY_FORMAT_VERSION = 1

export interface LogEntry<Body = unknown> {
  readonly id: EntryId
  readonly v: number
  readonly log: LogId
  readonly kind: string
  readonly body: Body
  /** Lamport clock: greater than every entry in `next`. */
  readonly clock: number
  readonly author: PeerIdString
  /** Author's wall time in ms; informational, never used to decide anything. */
  readonly wall: number
  /** The heads of the log the author had when it wrote this entry. */
  readonly next: readonly EntryId[]
  /** Id of the admission token the author held (see protocols/token.md). */
  readonly tok: string
  /** The exact signed envelope bytes. */
  readonly bytes: Uint8Array
}

/** The deterministic total order used to fold a log: clock, then author, then id. */
export function compareEntries(
  a: Pick<LogEntry, 'clock' | 'author' | 'id'>,
  b: Pick<LogEntry, 'clock' | 'author' | 'id'>,
): number {
  if (a.clock !== b.clock) return a.clock - b.clock
  if (a.author !== b.author) return a.author < b.author ? -1 : 1
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

/** Signs with this node's key. */
export interface Signer {
  readonly peerId: PeerIdString
  sign(bytes: Uint8Array): Promise<Uint8Array>
}
