/**
 * Per-author summaries of a log and the ranges they show a peer lacks
 * (protocols/log-sync.md, "Summaries and ranges"). Pure functions over entries in fold
 * order (LogManager.entries): the session and the property tests share them.
 *
 * Why a summary names a node's holding exactly: a node stores an entry only after its
 * parents, and an honest author's entries in one log form a chain (each one follows its
 * author's previous entry, a head or an ancestor of one when it is written). So what a
 * node holds of one author is a prefix of that chain in clock order, named by its last
 * clock, its count and a fingerprint of its ids. The peer that is behind asks for "after
 * clock c, given that I hold these n entries (fingerprint f) up to c"; the holder sends
 * what follows c when its own prefix up to c matches, and all of the author's entries
 * when it does not (a forked author, a seal that dropped other entries): more bytes,
 * never a missed entry. A node that lacks the other's seal asks for everything it holds
 * (a sealed log is small); a node whose seal is newer asks for nothing (the other is
 * behind and will fetch the seal with a session of its own).
 */
import { createHash } from 'node:crypto'
import { SEAL_KIND } from '../log/log.js'
import {
  compareEntries,
  type EntryId,
  type LogEntry,
  type LogId,
  type PeerIdString,
} from '../log/types.js'

export const FINGERPRINT_BYTES = 16

/** What one node holds of one author in one log (as a summary), or a request for more. */
export interface AuthorRange {
  author: PeerIdString
  /** Summary: the greatest clock held. Request: send the entries after this clock (-1: all). */
  max: number
  /** How many entries of the author the node holds with clock ≤ max. */
  count: number
  /** Fingerprint of those entries' ids (see fingerprint). */
  fp: Uint8Array
}

export interface SealRef {
  id: EntryId
  clock: number
  author: PeerIdString
}

export interface LogSummary {
  log: LogId
  /** The log's effective seal, if any. */
  seal: SealRef | null
  authors: AuthorRange[]
}

/** First 16 bytes of SHA-256 over the ids, each followed by a newline, in (clock, id) order. */
export function fingerprint(
  entries: readonly Pick<LogEntry, 'id'>[],
  upto = entries.length,
): Uint8Array {
  const h = createHash('sha256')
  for (let i = 0; i < upto; i++) h.update(`${entries[i].id}\n`)
  return new Uint8Array(h.digest().subarray(0, FINGERPRINT_BYTES))
}

/** Entries grouped by author; each group keeps the input's fold order, i.e. (clock, id). */
export function byAuthor(entries: readonly LogEntry[]): Map<PeerIdString, LogEntry[]> {
  const out = new Map<PeerIdString, LogEntry[]>()
  for (const e of entries) {
    let list = out.get(e.author)
    if (!list) {
      list = []
      out.set(e.author, list)
    }
    list.push(e)
  }
  return out
}

export function sealOf(entries: readonly LogEntry[]): SealRef | null {
  const s = entries.find((e) => e.kind === SEAL_KIND)
  return s ? { id: s.id, clock: s.clock, author: s.author } : null
}

export function summarize(log: LogId, entries: readonly LogEntry[]): LogSummary {
  const authors: AuthorRange[] = []
  for (const [author, list] of byAuthor(entries)) {
    authors.push({
      author,
      max: list[list.length - 1].clock,
      count: list.length,
      fp: fingerprint(list),
    })
  }
  return { log, seal: sealOf(entries), authors }
}

/** How many of `list` (sorted by clock) have a clock ≤ max. */
function prefixLength(list: readonly LogEntry[], max: number): number {
  let lo = 0
  let hi = list.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (list[mid].clock <= max) lo = mid + 1
    else hi = mid
  }
  return lo
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((x, i) => x === b[i])
}

/** The ranges to ask of a peer whose summary of a log is `theirs`, given what we hold (`mine`). */
export function rangesToRequest(mine: readonly LogEntry[], theirs: LogSummary): AuthorRange[] {
  const mySeal = sealOf(mine)
  if (theirs.seal && theirs.seal.id !== mySeal?.id) {
    if (mySeal && compareEntries(theirs.seal, mySeal) < 0) return []
    // Their seal is newer: ask for all they hold (a sealed log is small).
    return theirs.authors.map((a) => ({ author: a.author, max: -1, count: 0, fp: fingerprint([]) }))
  }
  if (!theirs.seal && mySeal) return []
  const ours = byAuthor(mine)
  const out: AuthorRange[] = []
  for (const a of theirs.authors) {
    const list = ours.get(a.author) ?? []
    const n = prefixLength(list, a.max)
    if (n === a.count && sameBytes(fingerprint(list, n), a.fp)) continue
    out.push({
      author: a.author,
      max: list.length > 0 ? list[list.length - 1].clock : -1,
      count: list.length,
      fp: fingerprint(list),
    })
  }
  return out
}

/** What to send for `requests` from what we hold (`mine`): in fold order, parents first. */
export function answerRanges(
  mine: readonly LogEntry[],
  requests: readonly AuthorRange[],
): LogEntry[] {
  const ours = byAuthor(mine)
  const out = new Map<EntryId, LogEntry>()
  for (const r of requests) {
    const list = ours.get(r.author)
    if (!list) continue
    const n = prefixLength(list, r.max)
    const from = n === r.count && sameBytes(fingerprint(list, n), r.fp) ? n : 0
    for (let i = from; i < list.length; i++) out.set(list[i].id, list[i])
  }
  return [...out.values()].sort(compareEntries)
}
