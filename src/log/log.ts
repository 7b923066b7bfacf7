/**
 * The log manager: append, join, read and compact signed logs (a Merkle-CRDT).
 *
 * Invariants:
 *  - every append group and join to one log runs in one KeyedQueue slot, so heads never
 *    race; appends issued together are written in one store batch (group commit,
 *    append.ts), and an append resolves only once the batch holding its entry and the heads
 *    naming it is written (not fsync'd: see append.ts); a failed batch stores, announces
 *    and remembers nothing of it;
 *  - an entry is stored only after: size → decode → schema → signature (entry.ts) →
 *    all parents stored → clock greater than every parent's → authorize hook; parents are
 *    always stored before their children, and listeners see them in that order; a copy
 *    of an entry held (stored, pending or dropped) is recognised by the hash of its exact
 *    bytes before any decode: the same bytes passed every check when first seen;
 *  - the retained content of a log is a function of the set of entries seen, whatever
 *    the order: without a seal, every valid entry whose parents are retained; with an
 *    effective seal S (the greatest seal seen, by compareEntries), S plus the entries whose
 *    parents are all retained (protocols/log-entry.md, "Seal");
 *  - join never throws for peer input: each bad entry becomes a typed rejection; the
 *    pending set (entries waiting for parents or for their author's token) is bounded in
 *    count and bytes, oldest evicted first, and sync fetches what was lost again.
 */
import { isRmeshError, RmeshError } from '../util/errors.js'
import { fullDiff, walkDiff } from './diff.js'
import { trimToBound } from '../util/bounded.js'
import { KeyedQueue } from '../util/queue.js'
import {
  decodeEntry,
  entryIdOf,
  ID_CACHE_MAX,
  isTrustedEntry,
  readEntry,
  type UnverifiedEntry,
  verifiedCacheFill,
} from './entry.js'
import {
  EntryClockError,
  EntryError,
  EntryKindError,
  EntryParentError,
  EntryPendingFullError,
  EntryUnauthorizedError,
} from './errors.js'
import { createAppender, type Stage } from './append.js'
import { createPendingSet } from './pending.js'
import type {
  EntryListener,
  EntryOrigin,
  JoinInput,
  JoinResult,
  LogManager,
  LogManagerComponents,
  LogManagerOptions,
} from './manager.js'
import { compareEntries, type EntryId, type LogEntry, type LogId } from './types.js'

export const SEAL_KIND = 'seal'
export const AUTH_PENDING_CODE = 'ERR_AUTH_PENDING'

export type {
  CacheFill,
  EntryListener,
  EntryOrigin,
  JoinInput,
  JoinRejection,
  JoinResult,
  LogDiff,
  LogManager,
  LogManagerComponents,
  LogManagerOptions,
} from './manager.js'

/** What ordering against a seal needs (compareEntries), without its body. */
type SealKey = Pick<LogEntry, 'id' | 'clock' | 'author'>

export function createLogManager(
  components: LogManagerComponents,
  options: LogManagerOptions = {},
): LogManager {
  const { store, signer, clock, authorize, tokenId } = components
  const logger = components.logger.child('log')
  const kinds = options.kinds ? new Set(options.kinds) : undefined
  const maxPendingEntries = options.maxPendingEntries ?? 10_000
  const maxPendingBytes = options.maxPendingBytes ?? 32 * 1024 * 1024
  // Only an optimisation (an entry at or below its log's seal is ignored by its clock
  // anyway): recent seals' ids suffice, and each remembered id costs ~120 bytes for hours.
  const maxDroppedIds = options.maxDroppedIds ?? ID_CACHE_MAX
  const cachedLogs = options.cachedLogs ?? 16
  const cachedSeals = options.cachedSeals ?? 256

  const queue = new KeyedQueue()
  const listeners = new Set<EntryListener>()
  const pending = createPendingSet({
    maxEntries: maxPendingEntries,
    maxBytes: maxPendingBytes,
    logger,
  })
  const dropped = new Set<EntryId>()
  // A cache of each log's effective seal, or null for none. Only what ordering needs: a
  // seal entry carries a whole job state (tens of KiB), and every job ever run has a log.
  const seals = new Map<LogId, SealKey | null>()
  const logCache = new Map<LogId, Map<EntryId, LogEntry>>()
  const meta = new Map<EntryId, { clock: number; log: LogId; author: LogEntry['author'] }>()
  // A cache for parent lookups while joining (a miss reads LevelDB): parents are recent
  // entries, so a few minutes' worth is ample; at ~200 bytes an id, a larger bound only
  // holds memory (a miss costs one LevelDB read). Seals trim it: it may never fill.
  const META_MAX = ID_CACHE_MAX
  // Heads of recently used logs. Only this module writes heads (flush and applySeal, in the
  // log's queue slot), so a cached value is exact; without it every gossip message cost a
  // LevelDB read on every node (a third of a bystander's CPU per chunk, profiled).
  const headsCache = new Map<LogId, readonly EntryId[]>()

  async function headsOf(log: LogId): Promise<EntryId[]> {
    const hit = headsCache.get(log)
    if (hit) {
      headsCache.delete(log)
      headsCache.set(log, hit) // most recently used last
      return [...hit]
    }
    const heads = await store.getHeads(log)
    cacheHeads(log, heads)
    return heads
  }

  function cacheHeads(log: LogId, heads: readonly EntryId[]): void {
    headsCache.delete(log)
    headsCache.set(log, [...heads])
    if (headsCache.size > cachedSeals) {
      const oldest = headsCache.keys().next().value
      if (oldest !== undefined) headsCache.delete(oldest)
    }
  }

  /**
   * What memory knows of whether `id` (with Lamport `clock`, when known, and of `log`) is
   * stored, without a store read: a remembered id is (meta holds stored entries only); an id
   * whose clock is above every head's is not, since every stored entry is a head or below
   * one and clocks grow along the DAG. New gossip is mostly the latter: a store read per
   * entry was a bystander's largest cost per chunk (issue 17). Undefined: ask the store.
   */
  async function storedByMemory(
    log: LogId,
    id: EntryId,
    clock: number | undefined,
  ): Promise<boolean | undefined> {
    // Stored anywhere counts, as for the store's own check: a parent in another log is
    // found, and then refused by its log (ERR_ENTRY_PARENT), not awaited.
    if (meta.has(id)) return true
    if (clock === undefined) return undefined
    let top = Number.NEGATIVE_INFINITY
    // Read-only: no copy, no recency update (this runs for every entry received).
    for (const h of headsCache.get(log) ?? (await headsOf(log))) {
      const hm = meta.get(h)
      if (!hm) return undefined
      top = Math.max(top, hm.clock)
    }
    return clock > top ? false : undefined
  }

  /**
   * Whether `id` is stored in `log`: a cached log's map is exact; else `known` (what one
   * batched read found, kept current by the caller), else memory, else ask the store.
   */
  async function isStored(
    log: LogId,
    id: EntryId,
    known?: Map<EntryId, boolean>,
    clock?: number,
  ): Promise<boolean> {
    const cached = logCache.get(log)
    if (cached) return cached.has(id)
    const k = known?.get(id)
    if (k !== undefined) return k
    return (await storedByMemory(log, id, clock)) ?? store.hasEntry(id)
  }

  /** One store read for many stored-checks (a catch-up batch and its parents). */
  async function prefetchStored(
    log: LogId,
    items: Iterable<{ id: EntryId; clock?: number }>,
  ): Promise<Map<EntryId, boolean> | undefined> {
    if (logCache.has(log)) return undefined
    const out = new Map<EntryId, boolean>()
    const ask: EntryId[] = []
    for (const { id, clock } of items) {
      if (out.has(id)) continue
      const mem = await storedByMemory(log, id, clock)
      out.set(id, mem ?? false)
      if (mem === undefined) ask.push(id)
    }
    if (ask.length > 0) {
      const found = await store.hasEntries(ask)
      for (let i = 0; i < ask.length; i++) out.set(ask[i], found[i])
    }
    return out
  }

  function remember(entry: LogEntry): void {
    meta.set(entry.id, { clock: entry.clock, log: entry.log, author: entry.author })
    trimToBound(meta, META_MAX)
  }

  function cacheSeal(log: LogId, entry: SealKey | null): void {
    seals.delete(log)
    seals.set(log, entry && { id: entry.id, clock: entry.clock, author: entry.author }) // MRU last
    if (seals.size > cachedSeals) {
      const oldest = seals.keys().next().value
      if (oldest !== undefined) seals.delete(oldest)
    }
  }

  function rememberDropped(id: EntryId): void {
    dropped.add(id)
    trimToBound(dropped, maxDroppedIds)
  }

  async function load(id: EntryId): Promise<LogEntry | undefined> {
    const bytes = await store.getEntry(id)
    if (!bytes) return undefined
    const entry = await decodeEntry(bytes, { trustedSource: true })
    remember(entry)
    return entry
  }

  async function effectiveSeal(log: LogId): Promise<SealKey | undefined> {
    const cached = seals.get(log)
    if (cached !== undefined) return cached ?? undefined
    const id = await store.getSeal(log)
    const entry = id ? await load(id) : undefined
    cacheSeal(log, entry ?? null)
    return seals.get(log) ?? undefined
  }

  async function loadLog(log: LogId): Promise<Map<EntryId, LogEntry>> {
    const hit = logCache.get(log)
    if (hit) {
      logCache.delete(log)
      logCache.set(log, hit) // most recently used last
      return hit
    }
    const map = new Map<EntryId, LogEntry>()
    const ids = await store.listEntryIds(log)
    for (let i = 0; i < ids.length; i += 1024) {
      const slice = ids.slice(i, i + 1024)
      const raw = await store.getEntries(slice)
      for (let j = 0; j < slice.length; j++) {
        const bytes = raw[j]
        if (!bytes) continue
        const e = await decodeEntry(bytes, { trustedSource: true })
        remember(e)
        map.set(slice[j], e)
      }
    }
    logCache.set(log, map)
    while (logCache.size > cachedLogs) {
      const oldest = logCache.keys().next().value
      if (oldest === undefined) break
      logCache.delete(oldest)
    }
    return map
  }

  function emit(entry: LogEntry, origin: EntryOrigin): void {
    for (const l of listeners) {
      try {
        l(entry, origin)
      } catch (err) {
        logger.warn('entry listener threw', { err: String(err) })
      }
    }
  }

  function emptyResult(): JoinResult {
    return { added: [], missing: [], rejected: [], duplicates: 0, ignored: 0, pending: 0 }
  }

  async function openStage(log: LogId): Promise<Stage> {
    return { added: new Map(), heads: new Set(await headsOf(log)) }
  }

  /**
   * Write what a stage holds and the heads it makes in one store batch, then announce it.
   * If the batch fails, nothing of it is stored: its entries are forgotten (meta named them
   * stored) and the cached heads stay the stored ones, so the log stays consistent.
   */
  async function commitStage(
    log: LogId,
    stage: Stage,
    origin: EntryOrigin,
    result: JoinResult,
    known?: Map<EntryId, boolean>,
  ): Promise<void> {
    if (stage.added.size === 0) return
    const batch = [...stage.added.values()]
    const heads = [...stage.heads]
    stage.added.clear()
    try {
      await store.commit(log, { put: batch, heads })
    } catch (err) {
      for (const e of batch) meta.delete(e.id)
      throw err
    }
    cacheHeads(log, heads)
    const cached = logCache.get(log)
    for (const e of batch) {
      cached?.set(e.id, e)
      known?.set(e.id, true)
      result.added.push(e)
    }
    for (const e of batch) emit(e, origin)
  }

  /**
   * The one path by which entries enter a log, for appends and joins alike. Runs inside
   * the log's queue slot.
   */
  async function integrate(
    log: LogId,
    incoming: LogEntry[],
    origin: EntryOrigin,
    result: JoinResult,
    /** An append group's stage: entries are staged in it, and the caller writes it. */
    outer?: Stage,
  ): Promise<void> {
    let seal: SealKey | undefined = await effectiveSeal(log)
    // A seal newer than the effective one is applied first, so the entries it covers in
    // the same batch are ignored instead of being stored and then deleted.
    const newSeals = incoming
      .filter((e) => e.kind === SEAL_KIND && (!seal || compareEntries(e, seal) > 0))
      .sort(compareEntries)
    const work = [
      ...newSeals.reverse(),
      ...incoming.filter((e) => !newSeals.includes(e)).sort(compareEntries),
    ]
    const known = await prefetchStored(
      log,
      incoming.flatMap((e) => [{ id: e.id, clock: e.clock }, ...e.next.map((id) => ({ id }))]),
    )
    const stage = outer ?? (await openStage(log))
    const added = stage.added
    const newlyPending: EntryId[] = []
    const flush = () => commitStage(log, stage, origin, result, known)

    for (let i = 0; i < work.length; i++) {
      const e = work[i]
      // With its clock: an entry released from pending is not in `known`, and memory
      // answers for it without a store read.
      if (added.has(e.id) || (await isStored(log, e.id, known, e.clock))) {
        result.duplicates++
        continue
      }
      if (pending.has(e.id)) {
        // Still waiting (for parents, or for retryPending when its author's token is unknown).
        result.duplicates++
        continue
      }
      if (e.kind === SEAL_KIND && (!seal || compareEntries(e, seal) > 0)) {
        await flush()
        const present = await loadLog(log)
        const parents = e.next.map((p) => present.get(p)).filter((p) => p !== undefined)
        const ok = await checkAndAuthorize(e, parents, result)
        if (!ok) continue
        await applySeal(log, e, origin, result)
        seal = e
        stage.heads = new Set(await headsOf(log))
        wake(log, e.id, work)
        continue
      }
      if (seal && (e.kind === SEAL_KIND || e.clock <= seal.clock)) {
        rememberDropped(e.id)
        result.ignored++
        dropChildren(e.id, result)
        continue
      }
      const missing = new Set<EntryId>()
      const parents: Array<{ clock: number; log: LogId }> = []
      let isDropped = false
      for (const p of e.next) {
        const a = added.get(p)
        if (a) {
          parents.push(a)
          continue
        }
        if (dropped.has(p)) {
          isDropped = true
          break
        }
        if (!(await isStored(log, p, known))) {
          missing.add(p)
          continue
        }
        const m = meta.get(p) ?? (await load(p))
        if (m) parents.push(m)
        else missing.add(p)
      }
      if (isDropped) {
        // A parent the seal dropped: this entry does not descend from the seal.
        pending.remove(e.id)
        rememberDropped(e.id)
        result.ignored++
        dropChildren(e.id, result)
        continue
      }
      if (missing.size > 0) {
        if (pending.has(e.id)) continue
        if (pending.add(e, missing)) {
          newlyPending.push(e.id)
        } else {
          result.rejected.push({ id: e.id, error: new EntryPendingFullError() })
        }
        continue
      }
      const ok = await checkAndAuthorize(e, parents, result)
      if (!ok) {
        if (!pending.has(e.id)) dropChildren(e.id, result)
        continue
      }
      pending.remove(e.id)
      added.set(e.id, e)
      remember(e)
      for (const p of e.next) stage.heads.delete(p)
      stage.heads.add(e.id)
      wake(log, e.id, work)
      // Bound one LevelDB batch; a catch-up of thousands of entries commits in slices.
      // (An append group is bounded by its own size, and written by its caller.)
      if (!outer && added.size >= 1000) await flush()
    }
    if (!outer) await flush()
    const stillPending = newlyPending.filter((id) => pending.has(id))
    result.pending += stillPending.length
    const missingIds = new Set(result.missing)
    for (const id of pending.missingOf(
      stillPending.flatMap((id) => [...(pending.get(id)?.missing ?? [])]),
      dropped,
    )) {
      missingIds.add(id)
    }
    result.missing = [...missingIds]
  }

  /** Move pending children of a newly stored entry into the work list once all their parents are in. */
  function wake(log: LogId, id: EntryId, work: LogEntry[]): void {
    for (const e of pending.release(log, id)) work.push(e)
  }

  function dropChildren(id: EntryId, result: JoinResult): void {
    pending.dropDescendants(id, (c) => {
      rememberDropped(c)
      result.ignored++
    })
  }

  async function checkAndAuthorize(
    e: LogEntry,
    parents: Array<{ clock: number; log: LogId }> | undefined,
    result: JoinResult,
  ): Promise<boolean> {
    try {
      if (kinds && !kinds.has(e.kind)) throw new EntryKindError(e.kind)
      for (const p of parents ?? []) {
        if (p.log !== e.log)
          throw new EntryParentError('log entry names a parent in another log', { log: e.log })
        if (e.clock <= p.clock) throw new EntryClockError(e.clock, p.clock)
      }
      if (authorize) await authorize(e)
      return true
    } catch (err) {
      if (isRmeshError(err, AUTH_PENDING_CODE)) {
        if (!pending.has(e.id)) {
          if (pending.add(e, new Set())) result.pending++
          else result.rejected.push({ id: e.id, error: new EntryPendingFullError() })
        }
        return false
      }
      pending.remove(e.id)
      const error =
        err instanceof EntryError
          ? err
          : new EntryUnauthorizedError(
              err instanceof Error
                ? `entry refused: ${err.message}`
                : 'entry refused by the authorization hook',
              err,
            )
      result.rejected.push({ id: e.id, error })
      logger.debug('entry rejected', { id: e.id, code: error.code })
      return false
    }
  }

  /** Make `s` the log's effective seal: keep it and the entries that descend from it only. */
  async function applySeal(
    log: LogId,
    s: LogEntry,
    origin: EntryOrigin,
    result: JoinResult,
  ): Promise<void> {
    const all = [...(await loadLog(log)).values()].sort(compareEntries)
    const retained = new Map<EntryId, LogEntry>([[s.id, s]])
    const del: LogEntry[] = []
    for (const e of all) {
      if (e.id === s.id) continue
      if (e.kind !== SEAL_KIND && e.clock > s.clock && e.next.every((p) => retained.has(p)))
        retained.set(e.id, e)
      else del.push(e)
    }
    const hasChild = new Set<EntryId>()
    for (const e of retained.values()) for (const p of e.next) hasChild.add(p)
    const heads = [...retained.keys()].filter((id) => !hasChild.has(id))
    await store.commit(log, { put: [s], del, heads, seal: s.id })
    cacheHeads(log, heads)
    for (const e of del) {
      rememberDropped(e.id)
      meta.delete(e.id)
    }
    remember(s)
    cacheSeal(log, s)
    logCache.set(log, retained)
    for (const p of [...pending.values()])
      if (p.entry.log === log && p.entry.clock <= s.clock) pending.remove(p.entry.id)
    result.added.push(s)
    emit(s, origin)
  }

  /**
   * Decode and verify what a join brings, skipping the signature check (and the entry) when
   * this node already holds, awaits or dropped the id: a copy costs a hash, not a verify.
   */
  async function toEntries(input: JoinInput, result: JoinResult): Promise<LogEntry[]> {
    const items = Array.isArray(input) ? input : [input as Uint8Array | LogEntry]
    // Decode all first, then one store read per log for the batch's stored-checks, then
    // verify in input order (rejections are reported in the order of the input).
    const slots: Array<LogEntry | UnverifiedEntry | { error: unknown } | 'seen'> = items.map(
      (item) => {
        try {
          if (!(item instanceof Uint8Array) && item && isTrustedEntry(item as LogEntry))
            return item as LogEntry
          const bytes = item instanceof Uint8Array ? item : (item as LogEntry)?.bytes
          const id = entryIdOf(bytes)
          const seen = seenInMemory(id)
          if (seen === 'dropped') result.ignored++
          else if (seen) result.duplicates++
          return seen ? 'seen' : readEntry(bytes, id)
        } catch (error) {
          return { error }
        }
      },
    )
    const known = new Map<EntryId, boolean>()
    const byLog = new Map<LogId, Array<{ id: EntryId; clock: number }>>()
    for (const slot of slots) {
      if (slot === 'seen' || !('verify' in slot)) continue
      const { entry } = slot
      if (pending.has(entry.id) || dropped.has(entry.id) || logCache.has(entry.log)) continue
      byLog.set(entry.log, [...(byLog.get(entry.log) ?? []), { id: entry.id, clock: entry.clock }])
    }
    for (const [log, ids] of byLog)
      for (const [id, stored] of (await prefetchStored(log, ids)) ?? []) known.set(id, stored)
    const out: LogEntry[] = []
    for (const slot of slots) {
      if (slot === 'seen') continue
      try {
        if ('error' in slot) throw slot.error
        if (!('verify' in slot)) {
          out.push(slot)
          continue
        }
        const seen = await alreadySeen(slot.entry, known)
        if (seen === 'dropped') result.ignored++
        else if (seen) result.duplicates++
        else out.push(await slot.verify())
      } catch (err) {
        const error =
          err instanceof RmeshError
            ? err
            : new EntryUnauthorizedError('entry could not be checked', err)
        result.rejected.push({ error })
      }
    }
    return out
  }

  /**
   * What memory alone knows of an id: held (meta names stored entries only), pending or
   * dropped. A copy from gossip or sync is then skipped before it is even decoded.
   */
  function seenInMemory(id: EntryId): 'stored' | 'pending' | 'dropped' | false {
    if (meta.has(id)) return 'stored'
    if (pending.has(id)) return 'pending'
    if (dropped.has(id)) return 'dropped'
    return false
  }

  async function alreadySeen(
    e: LogEntry,
    known?: Map<EntryId, boolean>,
  ): Promise<'stored' | 'pending' | 'dropped' | false> {
    if (pending.has(e.id)) return 'pending'
    if (dropped.has(e.id)) return 'dropped'
    if (await isStored(e.log, e.id, known, e.clock)) return 'stored'
    return false
  }

  async function joinEntries(entries: LogEntry[], result: JoinResult): Promise<void> {
    const byLog = new Map<LogId, LogEntry[]>()
    for (const e of entries) {
      let list = byLog.get(e.log)
      if (!list) {
        list = []
        byLog.set(e.log, list)
      }
      list.push(e)
    }
    await Promise.all(
      [...byLog].map(([log, list]) => queue.run(log, () => integrate(log, list, 'join', result))),
    )
  }

  const appendEntry = createAppender({
    queue,
    signer,
    clock,
    tokenId,
    async headKey(id) {
      const m = meta.get(id)
      return m ? { id, clock: m.clock, author: m.author } : await load(id)
    },
    sealKind: SEAL_KIND,
    openStage,
    async integrateOwn(log, entry, stage) {
      const result = emptyResult()
      await integrate(log, [entry], 'append', result, stage)
      if (result.rejected.length > 0) throw result.rejected[0].error
      // A seal is applied (and written) at once; any other entry is staged.
      return stage.added.has(entry.id) || result.added.some((e) => e.id === entry.id)
    },
    commitStage: (log, stage) => commitStage(log, stage, 'append', emptyResult()),
    forgetPending: (id) => pending.remove(id),
  })

  return {
    append: appendEntry,
    seal: (log, body) => appendEntry(log, SEAL_KIND, body),

    caches: () => [
      { name: 'entry-meta', size: meta.size, capacity: META_MAX },
      { name: 'dropped-ids', size: dropped.size, capacity: maxDroppedIds },
      { name: 'seals', size: seals.size, capacity: cachedSeals },
      { name: 'logs', size: logCache.size, capacity: cachedLogs },
      { name: 'log-heads', size: headsCache.size, capacity: cachedSeals },
      { name: 'verified-ids', ...verifiedCacheFill() },
    ],

    async join(input) {
      const result = emptyResult()
      const entries = await toEntries(input, result)
      await joinEntries(entries, result)
      return result
    },

    async validate(bytes) {
      const id = entryIdOf(bytes)
      if (seenInMemory(id)) return undefined
      const read = readEntry(bytes, id)
      return (await alreadySeen(read.entry)) ? undefined : read.verify()
    },

    async retryPending() {
      const result = emptyResult()
      const held = [...pending.values()].filter((p) => p.missing.size === 0).map((p) => p.entry)
      for (const e of held) pending.remove(e.id)
      await joinEntries(held, result)
      return result
    },

    heads: (log) => headsOf(log),

    async entries(log) {
      return queue.run(log, async () => [...(await loadLog(log)).values()].sort(compareEntries))
    },

    async get(id) {
      return load(id)
    },

    has: (id) => store.hasEntry(id),
    logs: () => store.listLogs(),

    onEntry(listener) {
      listeners.add(listener)
      return () => {
        listeners.delete(listener)
      }
    },

    async diff(log, theirHeads) {
      return queue.run(log, async () => {
        const byId = await loadLog(log)
        let complete = true
        const known: EntryId[] = []
        for (const h of theirHeads) {
          if (byId.has(h as EntryId)) known.push(h as EntryId)
          else if (!dropped.has(h as EntryId)) complete = false
        }
        const ours = await headsOf(log)
        const sorted = () => [...byId.values()].sort(compareEntries)
        if (known.length === 0) return { entries: sorted(), complete }
        if (!ours.every((h) => byId.has(h))) {
          // Not expected (every retained entry is a head or below one); the full walk
          // below does not rely on it.
          return { entries: fullDiff(sorted(), byId, known), complete }
        }
        return { entries: walkDiff(byId, ours, known), complete }
      })
    },

    missing() {
      return pending.missingOf([...pending.awaited()], dropped)
    },

    get pendingCount() {
      return pending.size
    },
  }
}
