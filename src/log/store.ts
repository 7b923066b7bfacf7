/**
 * Persistence of log entries: entries by id (the exact signed bytes), a per-log index in
 * clock order, the heads of each log and its effective seal.
 *
 * Invariants:
 *  - the store never decodes or re-encodes entries: it keeps the bytes it is given;
 *  - `commit` is atomic (one LevelDB batch): entries, deletions, heads and seal of a log
 *    change together, so a crash never leaves heads naming entries that are not stored;
 *    it resolves once LevelDB has the batch in its write-ahead log (not fsync'd: a process
 *    crash keeps it, a power loss may not); an append group is one commit (append.ts);
 *  - the LevelDB layout lives under the sublevel 'log' with utf8 keys:
 *      e!<id>                         → envelope bytes
 *      i!<log>!<clock 16 digits>!<id> → empty      (per-log index, clock order)
 *      h!<log>                        → CBOR [heads...]
 *      s!<log>                        → utf8 id of the log's effective seal
 *    '!' sorts before every character allowed in a log id, so prefixes never collide.
 */
import { decodeBounded, encode } from '../util/cbor.js'
import type { EntryId, LogEntry, LogId } from './types.js'

export type EntryRef = Pick<LogEntry, 'id' | 'log' | 'clock'>

export interface LogChange {
  put?: readonly LogEntry[]
  del?: readonly EntryRef[]
  heads?: readonly EntryId[]
  seal?: EntryId
}

export interface LogStore {
  /** Atomically apply a change to one log. */
  commit(log: LogId, change: LogChange): Promise<void>
  putEntry(entry: LogEntry): Promise<void>
  deleteEntry(entry: EntryRef): Promise<void>
  getEntry(id: EntryId): Promise<Uint8Array | undefined>
  /** Many entries in one read (LevelDB getMany): loading a log of 20,000 took 20,000 reads. */
  getEntries(ids: readonly EntryId[]): Promise<Array<Uint8Array | undefined>>
  hasEntry(id: EntryId): Promise<boolean>
  /** Which of `ids` are stored, in one read. */
  hasEntries(ids: readonly EntryId[]): Promise<boolean[]>
  /** Ids of a log's stored entries in (clock, id) order. */
  listEntryIds(log: LogId): Promise<EntryId[]>
  getHeads(log: LogId): Promise<EntryId[]>
  setHeads(log: LogId, heads: readonly EntryId[]): Promise<void>
  getSeal(log: LogId): Promise<EntryId | undefined>
  /** Every log that has heads, in id order. */
  listLogs(): Promise<LogId[]>
}

const MAX_META_BYTES = 1 << 20

function indexKey(e: EntryRef): string {
  return `i!${e.log}!${String(e.clock).padStart(16, '0')}!${e.id}`
}

/** Build the single-entry helpers on top of commit so both stores share them. */
function withHelpers(core: Omit<LogStore, 'putEntry' | 'deleteEntry' | 'setHeads'>): LogStore {
  return {
    ...core,
    putEntry: (entry) => core.commit(entry.log, { put: [entry] }),
    deleteEntry: (entry) => core.commit(entry.log, { del: [entry] }),
    setHeads: (log, heads) => core.commit(log, { heads }),
  }
}

/** What the LevelDB store needs of an opened `level` database or sublevel. */
export interface SublevelParent {
  sublevel(name: string, options: { keyEncoding: 'utf8'; valueEncoding: 'view' }): unknown
}

/** The operations used on our own sublevel (keys utf8, values Uint8Array). */
interface LogSublevel {
  get(key: string): Promise<Uint8Array | undefined>
  getMany(keys: string[]): Promise<Array<Uint8Array | undefined>>
  has(key: string): Promise<boolean>
  hasMany(keys: string[]): Promise<boolean[]>
  batch(
    ops: Array<{ type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string }>,
  ): Promise<void>
  keys(range: { gt: string; lt: string }): AsyncIterable<string>
}

// classic-level hands out Buffers; callers get plain Uint8Arrays from every store.
function plain(raw: Uint8Array | undefined): Uint8Array | undefined {
  return raw ? new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength) : undefined
}

export function createLevelLogStore(db: SublevelParent): LogStore {
  const sub = db.sublevel('log', { keyEncoding: 'utf8', valueEncoding: 'view' }) as LogSublevel
  const empty = new Uint8Array(0)
  return withHelpers({
    async commit(log, change) {
      const ops: Array<
        { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string }
      > = []
      for (const e of change.del ?? []) {
        ops.push({ type: 'del', key: `e!${e.id}` }, { type: 'del', key: indexKey(e) })
      }
      for (const e of change.put ?? []) {
        ops.push(
          { type: 'put', key: `e!${e.id}`, value: e.bytes },
          { type: 'put', key: indexKey(e), value: empty },
        )
      }
      if (change.heads) ops.push({ type: 'put', key: `h!${log}`, value: encode([...change.heads]) })
      if (change.seal)
        ops.push({ type: 'put', key: `s!${log}`, value: new TextEncoder().encode(change.seal) })
      if (ops.length > 0) await sub.batch(ops)
    },
    async getEntry(id) {
      return plain(await sub.get(`e!${id}`))
    },
    async getEntries(ids) {
      if (ids.length === 0) return []
      return (await sub.getMany(ids.map((id) => `e!${id}`))).map(plain)
    },
    async hasEntry(id) {
      return sub.has(`e!${id}`)
    },
    async hasEntries(ids) {
      if (ids.length === 0) return []
      return sub.hasMany(ids.map((id) => `e!${id}`))
    },
    async listEntryIds(log) {
      const prefix = `i!${log}!`
      const ids: EntryId[] = []
      for await (const key of sub.keys({ gt: prefix, lt: `${prefix}\xff` })) {
        ids.push(key.slice(prefix.length + 17) as EntryId)
      }
      return ids
    },
    async getHeads(log) {
      const raw = await sub.get(`h!${log}`)
      return raw ? (decodeBounded(raw, MAX_META_BYTES, 'log heads') as EntryId[]) : []
    },
    async getSeal(log) {
      const raw = await sub.get(`s!${log}`)
      return raw ? (new TextDecoder().decode(raw) as EntryId) : undefined
    },
    async listLogs() {
      const logs: LogId[] = []
      for await (const key of sub.keys({ gt: 'h!', lt: 'h!\xff' })) logs.push(key.slice(2) as LogId)
      return logs
    },
  })
}

export function createMemoryLogStore(): LogStore {
  const entries = new Map<string, Uint8Array>()
  const index = new Map<string, Map<string, string>>() // log → id → sort key
  const heads = new Map<string, EntryId[]>()
  const seals = new Map<string, EntryId>()
  return withHelpers({
    async commit(log, change) {
      for (const e of change.del ?? []) {
        entries.delete(e.id)
        index.get(e.log)?.delete(e.id)
      }
      for (const e of change.put ?? []) {
        entries.set(e.id, e.bytes)
        let m = index.get(e.log)
        if (!m) {
          m = new Map()
          index.set(e.log, m)
        }
        m.set(e.id, indexKey(e))
      }
      if (change.heads) heads.set(log, [...change.heads])
      if (change.seal) seals.set(log, change.seal)
    },
    async getEntry(id) {
      return entries.get(id)
    },
    async getEntries(ids) {
      return ids.map((id) => entries.get(id))
    },
    async hasEntry(id) {
      return entries.has(id)
    },
    async hasEntries(ids) {
      return ids.map((id) => entries.has(id))
    },
    async listEntryIds(log) {
      const m = index.get(log)
      if (!m) return []
      return [...m.entries()]
        .sort((a, b) => (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
        .map(([id]) => id as EntryId)
    },
    async getHeads(log) {
      return [...(heads.get(log) ?? [])]
    },
    async getSeal(log) {
      return seals.get(log)
    },
    async listLogs() {
      return [...heads.keys()].sort() as LogId[]
    },
  })
}
