/**
 * Collecting the outputs of the jobs this node submitted: pull each finished output from
 * the peers that hold it, write it into the output folder with Blender's frame numbering,
 * then ack; reject a done chunk whose outputs cannot be obtained; let go of a renderer's
 * copies once the submitter acked them; clean up after a delete.
 *
 * Invariants:
 *  - only the submitter writes into an output folder, and only under the folder chosen
 *    locally at submit time; file names come from frame numbers, never from peers;
 *  - an ack is appended only after the output file is fully written (temp + rename);
 *  - a done chunk's outputs that cannot be obtained are rejected (the chunk is re-rendered):
 *    at once when its completer answers with bytes that fail the hash check, after
 *    outputGraceMs when the completer lacks them or is unreachable and nobody else
 *    supplied them; never a chunk already written here or acked, nor twice the same attempt;
 *  - a deleted job's blocks are unpinned on every node that sees the delete entry.
 */
import { withDeadline } from '../util/abort.js'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { removeStaleExports } from '../blobs/block-store.js'
import { safeExtension } from '../blobs/safe-name.js'
import { LIMITS } from '../jobs/entries.js'
import { formatFrames } from '../jobs/frame-spec.js'
import type { ChunkState, JobState } from '../jobs/reducer.js'
import { jobLogId } from '../log/types.js'
import { describeError, isRmeshError } from '../util/errors.js'
import { filesPinOwner, outputsPinOwner, scenePinOwner } from '../worker/runner.js'
import { frameFileName, type LocalJob, type ServiceContext } from './context.js'

/**
 * How long collected chunks wait to be acknowledged together while the job still has
 * chunks to come. An ack is one log entry every node stores and gossips; one per chunk
 * was a third of the mesh's messages. The renderer keeps its copy until the ack, so a
 * later ack costs nothing but that copy's lifetime; the job's last chunks are acked at once.
 */
const ACK_COALESCE_MS = 1_000

const THUMB_FETCH_MS = 10_000

export interface Collector {
  collect(jobId: string): Promise<void>
  /** The submitter holds these outputs now: a renderer lets go of its copies. */
  releaseAcked(s: JobState, chunks: unknown): Promise<void>
  cleanupDeleted(jobId: string): Promise<void>
  stats(): { outputsRejected: { hash: number; unavailable: number } }
  stop(): void
}

export function createCollector(
  ctx: ServiceContext,
  hooks: { onWritten(jobId: string): void; onForget(jobId: string): void },
): Collector {
  const { c } = ctx
  const logger = ctx.logger
  const collecting = new Set<string>()
  const outputGraceMs = c.outputGraceMs ?? 20_000
  /** `jobId/chunk/completedAttempt` → monotonic time its outputs were first found unobtainable. */
  const unobtainableSince = new Map<string, number>()
  /** Per job: the `chunk/completedAttempt`s this node rejected (a reject is written once). */
  const rejectedByJob = new Map<string, Set<string>>()
  const outputsRejected = { hash: 0, unavailable: 0 }

  const swept = new Set<string>()
  const collect = async (jobId: string) => {
    if (collecting.has(jobId) || ctx.stopped()) return
    const lj = ctx.localJobs.get(jobId)
    const s = c.leases.job(jobId)
    if (!lj) return
    if (!s) {
      // At start-up the lease manager has not loaded the logs yet: a job that finished
      // while this node was down gets no new complete entry to trigger collection.
      setTimeout(() => void collect(jobId), 1_000).unref()
      return
    }
    if (s.deleted) return
    collecting.add(jobId)
    try {
      if (!swept.has(jobId)) {
        // Once per job and process: a submitter killed mid-write left a temporary file.
        swept.add(jobId)
        const removed = await removeStaleExports(lj.outDir)
        if (removed > 0) c.logger.info('removed half-written outputs', { jobId, removed })
      }
      let unacked: number[] = []
      let firstUnackedAt = 0
      const ack = async () => {
        if (unacked.length === 0) return
        const chunks = unacked.sort((a, b) => a - b)
        unacked = []
        await c.log.append(jobLogId(jobId), 'ack', { chunks })
      }
      try {
        for (;;) {
          const cur = c.leases.job(jobId)
          if (!cur || cur.deleted || ctx.stopped()) return
          const todo = cur.chunks.filter(
            (ch) => ch.state === 'done' && !lj.written.includes(ch.index) && ch.outputs,
          )
          if (todo.length === 0) {
            const more = cur.chunks.some((ch) => ch.state !== 'done')
            if (unacked.length > 0 && more && Date.now() - firstUnackedAt < ACK_COALESCE_MS) {
              await new Promise((r) => setTimeout(r, 100))
              continue
            }
            break
          }
          const acked = await collectChunks(cur, todo)
          if (acked.length === 0) {
            // Nothing could be pulled now (holders offline?): try again later.
            setTimeout(() => void collect(jobId), 3_000).unref()
            break
          }
          if (unacked.length === 0) firstUnackedAt = Date.now()
          unacked.push(...acked)
          hooks.onWritten(jobId)
        }
      } finally {
        // Whatever was written is acknowledged, also when the loop ends early.
        if (!c.leases.job(jobId)?.deleted) await ack()
      }
    } finally {
      collecting.delete(jobId)
    }
  }

  /** Pull the outputs of `todo` into the output folder; the indexes of those written. */
  const collectChunks = async (cur: JobState, todo: JobState['chunks']): Promise<number[]> => {
    const lj = ctx.localJobs.get(cur.jobId)
    if (!lj) return []
    const acked: number[] = []
    await Promise.all(
      todo.map(async (ch) => {
        try {
          await writeChunk(cur, ch, lj)
          lj.written.push(ch.index)
          acked.push(ch.index)
        } catch (err) {
          if (await rejectIfUnobtainable(cur, ch)) return
          logger.warn('could not collect outputs yet; will retry', {
            jobId: cur.jobId,
            chunk: ch.index,
            err: describeError(err),
          })
        }
      }),
    )
    if (acked.length > 0) {
      lj.written.sort((a, b) => a - b)
      await ctx.saveLocal(lj)
    }
    return acked
  }

  /**
   * Why a failed collection cannot succeed, asked of the completer (the one peer that
   * must hold the outputs) for the first thing still missing of each output: 'corrupt'
   * when it answers with bytes that fail the hash check (or otherwise misbehaves),
   * 'missing' when it lacks them or cannot be reached, 'ok' when it serves them (the
   * failure was transient or local: never a reason to reject).
   */
  const probeCompleter = async (
    ch: ChunkState,
  ): Promise<{ verdict: 'ok' | 'missing' | 'corrupt'; why?: string }> => {
    const node = ch.completedBy
    if (!node) return { verdict: 'ok' }
    for (const o of ch.outputs ?? []) {
      let cid = o.manifest
      if (await c.blocks.hasManifest(o.manifest).catch(() => false)) {
        const missing = await c.blocks.missingBlocks(o.manifest).catch(() => [] as string[])
        if (missing.length === 0) continue
        cid = missing[0]
      }
      if (node === c.self) return { verdict: 'missing', why: 'this node lost them' }
      try {
        const bytes = await c.exchange.requestOne(node, cid, { timeoutMs: 10_000 })
        if (!bytes) return { verdict: 'missing', why: 'does not have them' }
      } catch (err) {
        if (isRmeshError(err, 'ERR_PEER_MISBEHAVED'))
          return { verdict: 'corrupt', why: String(err.details?.reason ?? err.message) }
        return { verdict: 'missing', why: 'is gone' }
      }
    }
    return { verdict: 'ok' }
  }

  /** After a failed collection: reject the chunk if its outputs cannot be obtained. */
  const rejectIfUnobtainable = async (s: JobState, ch: ChunkState): Promise<boolean> => {
    const attempt = ch.completedAttempt
    if (s.canceled || s.deleted || ch.acked || attempt === undefined || ctx.stopped()) return false
    const instance = `${ch.index}/${attempt}`
    const key = `${s.jobId}/${instance}`
    const rejected = rejectedByJob.get(s.jobId) ?? new Set<string>()
    if (rejected.has(instance)) return false
    const { verdict, why } = await probeCompleter(ch)
    const now = c.clock.monotonic()
    if (verdict === 'ok') {
      unobtainableSince.delete(key)
      return false
    }
    const since = unobtainableSince.get(key) ?? now
    unobtainableSince.set(key, since)
    if (verdict === 'missing' && now - since < outputGraceMs) return false
    // Re-read: the chunk may have been written, acked or rejected meanwhile.
    const cur = c.leases.job(s.jobId)?.chunks[ch.index]
    if (cur?.state !== 'done' || cur.acked || cur.completedAttempt !== attempt) return false
    if (ctx.localJobs.get(s.jobId)?.written.includes(ch.index)) return false
    const node = ch.completedBy ?? 'unknown'
    const name = c.presence.peers().get(node)?.presence.name ?? node.slice(-8)
    const what =
      ch.kind === 'encode'
        ? 'the video'
        : `frame${ch.frames.length > 1 ? 's' : ''} ${formatFrames(ch.frames)}`
    const reason = (
      verdict === 'corrupt'
        ? `outputs of ${what} failed their hash check from ${name} (${why})`
        : `outputs of ${what} unavailable for ${Math.round((now - since) / 1000)} s: ${name} ${why}`
    ).slice(0, LIMITS.maxRejectReason)
    await c.log.append(jobLogId(s.jobId), 'reject', { chunk: ch.index, attempt, reason })
    rejected.add(instance)
    rejectedByJob.set(s.jobId, rejected)
    unobtainableSince.delete(key)
    outputsRejected[verdict === 'corrupt' ? 'hash' : 'unavailable']++
    logger.warn('rejected outputs that cannot be obtained; the chunk will be re-rendered', {
      jobId: s.jobId,
      chunk: ch.index,
      attempt,
      node,
      reason,
    })
    return true
  }

  const writeChunk = async (s: JobState, ch: ChunkState, lj: LocalJob) => {
    await mkdir(lj.outDir, { recursive: true })
    const holders = ch.completedBy ? [ch.completedBy] : []
    for (const o of ch.outputs ?? []) {
      const name =
        ch.kind === 'encode' ? ctx.videoName(s) : frameFileName(o.frame, safeExtension(o.name))
      await ctx.materialize(o.manifest, holders, join(lj.outDir, name), `job-collected/${s.jobId}`)
      if (o.thumb && o.thumb.manifest !== o.manifest) {
        // The submitter keeps the thumbnail for the web UI once the renderer lets go of it;
        // a thumbnail that cannot be had is no reason to hold back the frame.
        const thumb = o.thumb.manifest
        await withDeadline(THUMB_FETCH_MS, undefined, (signal) =>
          c.exchange.fetchManifest(thumb, {
            providers: holders,
            pinOwner: `job-collected/${s.jobId}`,
            signal,
          }),
        ).catch((err) =>
          logger.debug('thumbnail not collected', { jobId: s.jobId, err: describeError(err) }),
        )
      }
    }
  }

  const releaseAcked = async (s: JobState, chunks: unknown) => {
    if (!Array.isArray(chunks)) return
    let released = 0
    for (const i of chunks) {
      const ch = typeof i === 'number' ? s.chunks[i] : undefined
      if (!ch || ch.completedBy !== c.self) continue
      for (const cid of [
        ...(ch.outputs ?? []).flatMap((o) => [o.manifest, ...(o.thumb ? [o.thumb.manifest] : [])]),
        ...(ch.log ? [ch.log] : []),
      ]) {
        await c.blocks.unpin(outputsPinOwner(s.jobId), cid).catch(() => {})
        released++
      }
    }
    if (released > 0) scheduleGc()
  }

  let gcTimer: ReturnType<typeof setTimeout> | undefined
  const scheduleGc = () => {
    if (gcTimer || ctx.stopped()) return
    gcTimer = setTimeout(() => {
      gcTimer = undefined
      // The grace keeps blocks of imports still in flight (written, not yet pinned).
      void c.blocks
        .gc({ graceMs: 5 * 60_000 })
        .catch((err) => logger.warn('gc failed', { err: describeError(err) }))
    }, 30_000)
    gcTimer.unref?.()
  }

  const cleanupDeleted = async (jobId: string) => {
    // Per-job state, else kept for every job ever deleted.
    hooks.onForget(jobId)
    rejectedByJob.delete(jobId)
    for (const k of unobtainableSince.keys())
      if (k.startsWith(`${jobId}/`)) unobtainableSince.delete(k)
    await c.worker.forgetJob(jobId)
    for (const owner of [
      outputsPinOwner(jobId),
      scenePinOwner(jobId),
      filesPinOwner(jobId),
      `job-collected/${jobId}`,
    ])
      await c.blocks.unpin(owner).catch(() => {})
    // Not zero: another job's output is unpinned between its import and its pin, and a
    // grace-free GC here deleted it under a complete entry (found by the soak).
    await c.blocks.gc({ graceMs: 60_000 }).catch(() => {})
  }

  return {
    collect,
    releaseAcked,
    cleanupDeleted,
    stats: () => ({ outputsRejected: { ...outputsRejected } }),
    stop() {
      if (gcTimer) clearTimeout(gcTimer)
    },
  }
}
