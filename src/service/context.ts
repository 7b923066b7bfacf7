/**
 * What the job service's modules share: the components the daemon gives it, the record of
 * the jobs this node submitted (LevelDB `local-jobs`), and the helpers every use case needs
 * (resolve a job id, pull a manifest from its holders into a local file).
 *
 * Invariants:
 *  - `localJobs` mirrors the `local-jobs` sublevel: written through `saveLocal` only;
 *  - `materialize` writes only where its local caller says (`dest`), never a peer's name;
 *  - ids typed by a user resolve to exactly one undeleted job, or throw a typed error.
 */
import type { Level } from 'level'
import type { EventBus } from '../api/events.js'
import type * as Api from '../api/types.js'
import type { BlockStore } from '../blobs/block-store.js'
import type { BlockExchange } from '../blobs/exchange.js'
import type { ProviderIndex } from '../blobs/providers.js'
import { safeFileName } from '../blobs/safe-name.js'
import type { Engine } from '../engines/types.js'
import type { EngineDevices } from '../jobs/devices.js'
import { VIDEO_EXTENSION } from '../engines/ffmpeg.js'
import type { LeaseManager } from '../jobs/lease-manager.js'
import type { JobState } from '../jobs/reducer.js'
import type { LogManager } from '../log/log.js'
import type { PresenceService } from '../net/presence.js'
import type { Clock } from '../util/clock.js'
import { InvalidInputError, NotFoundError, RmeshError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'

export class ConflictError extends RmeshError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('ERR_CONFLICT', message, { details })
    this.name = 'ConflictError'
  }
}

export interface LocalJob {
  jobId: string
  outDir: string
  scenePath: string
  /** Chunk indexes whose outputs are written in outDir. */
  written: number[]
  /** Paths the scene names that were missing at submit (allowMissing), at most 100. */
  missing?: string[]
}

export interface JobServiceComponents {
  self: string
  db: Level<string, unknown>
  log: LogManager
  leases: LeaseManager
  blocks: BlockStore
  exchange: BlockExchange
  providers: ProviderIndex
  presence: PresenceService
  engines: { get(name: string): Engine | undefined; names(): string[] }
  worker: { forgetJob(jobId: string): Promise<void> }
  events: EventBus
  clock: Clock
  logger: Logger
  /** This node may submit (its token has the capability). */
  canSubmit: () => boolean
  /** What this node can run (for the "no eligible node" hint). */
  selfEngines: () => readonly { name: string; version: string }[]
  selfSlots: () => number
  /** A passing reason this node takes no renders now (its data disk nearly full). */
  selfPaused?: () => string | undefined
  selfTags?: () => readonly string[]
  /** What this node's ffmpeg can encode (presence `video`). */
  selfVideo?: () => readonly string[] | undefined
  /** What render devices each of this node's engine versions sees (presence `devices`). */
  selfDevices?: () => readonly EngineDevices[]
  selfName?: () => string
  /** A job of ours that no live node can take for this long is failed (abort); default 60 s. */
  noEligibleGraceMs?: number
  /** The no-eligible check waits this long after start for presence to hear the peers. */
  noEligibleWarmupMs?: number
  /** maxQueuedJobs of a submitter's token, when it has one. */
  quotaOf?: (peerId: string) => number | undefined
  /** How long a done chunk's outputs may stay unobtainable before it is rejected (default 20 s). */
  outputGraceMs?: number
  /**
   * Preview videos of this node's jobs while frames come in (./preview-video.ts): where,
   * and how often. Absent: none.
   */
  previewVideo?: { dir: string; everyFrames: number; everyMs: number }
  /** TEST ONLY (RMESH_TEST_COLLECT_DELAY_MS): start collecting this long after a complete. */
  collectDelayMs?: number
}

export interface ServiceContext {
  readonly c: JobServiceComponents
  readonly logger: Logger
  /** The jobs this node submitted, by id. */
  readonly localJobs: Map<string, LocalJob>
  saveLocal(lj: LocalJob): Promise<void>
  deleteLocal(jobId: string): Promise<void>
  /** Loads `local-jobs` into `localJobs` (at start). */
  loadLocal(): Promise<void>
  jobOf(jobId: string): JobState
  resolveId(idOrPrefix: string): string
  /** Make sure a manifest is complete locally (fetching from holders), then export it. */
  materialize(
    manifest: string,
    holders: string[],
    dest: string,
    pinOwner: string,
    signal?: AbortSignal,
  ): Promise<void>
  videoName(s: JobState): string
  stopped(): boolean
  stop(): void
}

/** Output file name of a frame: Blender's numbering (#### → zero-padded to 4). */
export function frameFileName(frame: number, ext: string): string {
  const n = frame < 0 ? `-${String(-frame).padStart(4, '0')}` : String(frame).padStart(4, '0')
  return `${n}${ext}`
}

/** A whole number from the API in [min, max], or `dflt` when absent. */
export function intField(
  v: unknown,
  field: string,
  min: number,
  max: number,
  dflt: number,
): number {
  if (v === undefined || v === null) return dflt
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new InvalidInputError(`${field} must be a whole number from ${min} to ${max}`, {
      field,
    })
  return v
}

export const FORMAT_TO_ENGINE: Partial<Record<Api.OutputFormat, 'PNG' | 'OPEN_EXR' | 'JPEG'>> = {
  png: 'PNG',
  exr: 'OPEN_EXR',
  jpeg: 'JPEG',
}
export const FORMAT_FROM_ENGINE: Record<string, Api.OutputFormat> = {
  PNG: 'png',
  OPEN_EXR: 'exr',
  JPEG: 'jpeg',
  OPEN_EXR_MULTILAYER: 'exr-multilayer',
  TIFF: 'tiff',
}

export function createServiceContext(c: JobServiceComponents): ServiceContext {
  const local = c.db.sublevel<string, LocalJob>('local-jobs', { valueEncoding: 'json' })
  const localJobs = new Map<string, LocalJob>()
  let stopped = false

  const jobOf = (jobId: string): JobState => {
    const s = c.leases.job(jobId)
    if (!s) throw new NotFoundError(`job ${jobId}`, { jobId })
    return s
  }

  const resolveId = (idOrPrefix: string): string => {
    if (typeof idOrPrefix !== 'string' || !/^[a-z2-7]{1,8}$/.test(idOrPrefix)) {
      throw new InvalidInputError(
        `${JSON.stringify(String(idOrPrefix).slice(0, 40))} is not a job id (8 letters and digits, as shown by rmesh jobs)`,
      )
    }
    const ids = c.leases
      .jobs()
      .filter((j) => !j.deleted)
      .map((j) => j.jobId)
    if (ids.includes(idOrPrefix)) return idOrPrefix
    const matches = ids.filter((id) => id.startsWith(idOrPrefix))
    if (matches.length === 1 && idOrPrefix.length >= 4) return matches[0]
    if (matches.length > 1)
      throw new ConflictError(`job id ${idOrPrefix} is ambiguous: ${matches.join(', ')}`, {
        matches,
      })
    throw new NotFoundError(`job ${idOrPrefix} (see rmesh jobs for the ids)`, { jobId: idOrPrefix })
  }

  const providersFor = (manifest: string, known: string[]) =>
    c.providers
      .findProviders(manifest, { known, timeoutMs: 2_000 })
      .catch(() => known.filter((p) => p !== c.self))

  const materialize: ServiceContext['materialize'] = async (
    manifest,
    holders,
    dest,
    pinOwner,
    signal,
  ) => {
    if ((await c.blocks.missingBlocks(manifest).catch(() => ['?'])).length > 0) {
      await c.exchange.fetchManifest(manifest, {
        providers: await providersFor(manifest, holders),
        signal,
        pinOwner,
      })
    } else {
      await c.blocks.pin(pinOwner, manifest)
    }
    // exportFile writes a temporary file and renames it into place when whole.
    await c.blocks.exportFile(manifest, dest, { signal })
  }

  return {
    c,
    logger: c.logger,
    localJobs,
    async saveLocal(lj) {
      localJobs.set(lj.jobId, lj)
      await local.put(lj.jobId, lj)
    },
    async deleteLocal(jobId) {
      localJobs.delete(jobId)
      await local.del(jobId)
    },
    async loadLocal() {
      for await (const [, lj] of local.iterator()) localJobs.set(lj.jobId, lj)
    },
    jobOf,
    resolveId,
    materialize,
    videoName: (s) =>
      `${safeFileName(s.name, 'video')}.${VIDEO_EXTENSION[s.job.output.video ?? 'h264']}`,
    stopped: () => stopped,
    stop() {
      stopped = true
    },
  }
}
