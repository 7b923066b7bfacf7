/**
 * The worker interface: what the lease manager asks of whatever renders a chunk (the
 * Blender and ffmpeg engines, the test engine, the simulator's fake).
 *
 * Contract:
 *  - start() resolves only after every output is stored in the local block store (the
 *    lease manager writes the complete entry right after, so no output is ever lost);
 *  - it rejects with a ChunkFailedError (or any error: treated as a failure with its
 *    code) when the render fails, with a ChunkDeferredError when the chunk cannot start
 *    here for now through no fault of this node or the job (its scene has no reachable
 *    holder: the submitter is offline), and with an AbortedError once `signal` fires; on abort
 *    it must stop its process tree promptly (the lease manager frees the slot at once
 *    and ignores a late result);
 *  - progress is optional and advisory;
 *  - onRendered, when given, is called at most once, when the engine has finished and
 *    only the storing of outputs remains: the lease manager starts the next chunk then, so
 *    storing overlaps the next render (start() still resolves only once stored).
 */
import { RmeshError } from '../util/errors.js'
import type { AnnounceBody, ChunkOutput } from './entries.js'
import type { ChunkKind } from './reducer.js'

export interface ChunkTask {
  jobId: string
  job: AnnounceBody
  chunk: number
  attempt: number
  frames: readonly number[]
  kind: ChunkKind
}

export interface ChunkResult {
  outputs: ChunkOutput[]
  /** CID of the stored render log. */
  log?: string
  renderMs: number
}

export interface ChunkProgress {
  frame?: number
  /** 0..1 of the chunk. */
  fraction?: number
  message?: string
}

export interface ChunkRunner {
  start(
    task: ChunkTask,
    signal: AbortSignal,
    onProgress?: (p: ChunkProgress) => void,
    onRendered?: () => void,
  ): Promise<ChunkResult>
  /**
   * A chunk of this task's job is being claimed: get its inputs ready (fetch the scene)
   * while the claim is written, so start() does not wait for them. Best effort: never
   * throws, and start() retries whatever it could not do.
   */
  prepare?(task: ChunkTask): void
}

/**
 * The chunk cannot start here for now, and that is neither this node's fault nor the
 * job's (its scene has no reachable holder: the submitter is offline and nobody else has
 * it yet). Becomes a release entry, not a fail: it must not count towards failing the job
 * or blocklisting the node; the node waits before taking the job again.
 */
export class ChunkDeferredError extends RmeshError {
  readonly reason: string

  constructor(reason: string, options: { cause?: unknown } = {}) {
    super('ERR_CHUNK_DEFERRED', `chunk deferred: ${reason}`, { cause: options.cause })
    this.name = 'ChunkDeferredError'
    this.reason = reason
  }
}

/** A render that failed on its own (not aborted): becomes a fail entry. */
export class ChunkFailedError extends RmeshError {
  readonly reason: string
  readonly log?: string

  constructor(reason: string, options: { log?: string; cause?: unknown } = {}) {
    super('ERR_CHUNK_FAILED', `chunk render failed: ${reason}`, { cause: options.cause })
    this.name = 'ChunkFailedError'
    this.reason = reason
    this.log = options.log
  }
}
