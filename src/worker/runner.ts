/**
 * The worker: runs a leased chunk on this machine. It fetches the job's scene from the
 * peers that hold it, runs the engine into a work folder, stores every output (and the
 * render log) in the block store, and only then returns — so a complete entry is never
 * written for an output that is not stored (the "no output lost" promise).
 *
 * Invariants:
 *  - paths on disk are chosen here from job ids (validated by the reducer's schema) and
 *    numbers; names from peers are display-only and pass through safeFileName;
 *  - every output is pinned under the job until the submitter's ack (the job service
 *    unpins on ack or delete), so garbage collection cannot take it;
 *  - an aborted render (lease lost, job canceled) leaves no half-imported outputs behind
 *    that are pinned, and the engine's process tree is gone when start() settles;
 *  - the work folder is scratch: emptied at start (clearScratch), a chunk's folder
 *    removed when it settles, a job's when it is forgotten.
 */
import { mkdir, rm, statfs } from 'node:fs/promises'
import { join } from 'node:path'
import type { BlockExchange } from '../blobs/exchange.js'
import { type BlockStore, DiskFullError } from '../blobs/block-store.js'
import type { ProviderIndex } from '../blobs/providers.js'
import { safeExtension, safeFileName } from '../blobs/safe-name.js'
import { encodeVideo, VIDEO_EXTENSION } from '../engines/ffmpeg.js'
import { isOwnThumbnail } from '../engines/thumbnail.js'
import { type Engine, isEngineError, type OutputFormat } from '../engines/types.js'
import type { ChunkOutput } from '../jobs/entries.js'
import type { JobState } from '../jobs/reducer.js'
import { deviceLabel, type EngineDevices, pickRunnable } from '../jobs/devices.js'
import {
  ChunkDeferredError,
  ChunkFailedError,
  type ChunkProgress,
  type ChunkResult,
  type ChunkRunner,
  type ChunkTask,
} from '../jobs/runner.js'
import { raceSignal } from '../util/abort.js'
import { describeError, isRmeshError, RmeshError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'
import { createTreeLayout } from './tree.js'

export const VIDEO_FRAME = -1

function compactOptions<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}

export interface WorkerComponents {
  blocks: BlockStore
  exchange: BlockExchange
  providers: ProviderIndex
  engines: {
    get(name: string): Engine | undefined
    /** Installed engines and versions (the registry's `describe()`), to run a pinned version. */
    versions?: () => readonly { name: string; version: string }[]
    /** The devices each version sees (the registry's `devices()`), for a job's device. */
    devices?: () => readonly EngineDevices[]
  }
  /** The job's current state (for the encode task: which node holds which frame). */
  jobState: (jobId: string) => JobState | undefined
  workRoot: string
  logger: Logger
  /** Live render log lines (for `rmesh logs --follow` and the dashboard). */
  onLogLine?: (task: ChunkTask, frame: number, line: string) => void
  /** Write a thumbnail of a frame (engines/thumbnail.ts); absent: only own-thumbnails. */
  makeThumb?: (
    input: string,
    output: string,
    format: OutputFormat,
    signal: AbortSignal,
  ) => Promise<boolean>
}

/**
 * An input nobody reachable holds (ERR_NO_PROVIDERS: the submitter is offline and no other
 * node has the scene, or a frame, yet) is no fault of this node or the job: the chunk is
 * deferred (released, retried later), not failed. Anything else is a failure.
 */
function unavailableOr(err: unknown, reason: string): ChunkDeferredError | ChunkFailedError {
  return isRmeshError(err) && err.code === 'ERR_NO_PROVIDERS'
    ? new ChunkDeferredError(reason, { cause: err })
    : new ChunkFailedError(reason, { cause: err })
}

/** Free space under which a failed render is blamed on the disk. */
const DISK_FULL_BELOW_BYTES = 1024 * 1024

/**
 * The disk-full error behind a failed render, if that is what it was: an ENOSPC/EDQUOT
 * anywhere in the cause chain, or (an engine only sees a frame it could not save) a work
 * folder left with less than 1 MiB free.
 */
async function diskFullCause(err: unknown, workDir: string): Promise<DiskFullError | undefined> {
  for (let e: unknown = err, depth = 0; e && depth < 8; e = (e as Error).cause, depth++) {
    if (e instanceof DiskFullError) return e
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOSPC' || code === 'EDQUOT') return new DiskFullError(workDir, e)
  }
  try {
    const st = await statfs(workDir)
    if (st.bavail * st.bsize < DISK_FULL_BELOW_BYTES) return new DiskFullError(workDir, err)
  } catch {}
  return undefined
}

export function outputsPinOwner(jobId: string): string {
  return `job-outputs/${jobId}`
}

/** Every scene pin's owner starts with this (the daemon provides these in the DHT). */
export const SCENE_PIN_PREFIX = 'job-scene/'

export function scenePinOwner(jobId: string): string {
  return `${SCENE_PIN_PREFIX}${jobId}`
}

/**
 * A job's files (its tree's manifests): apart from the scene pins, so a node does not
 * provide every texture in the DHT at start (holders are the submitter and gossip).
 */
export const FILES_PIN_PREFIX = 'job-files/'

export function filesPinOwner(jobId: string): string {
  return `${FILES_PIN_PREFIX}${jobId}`
}

/** Where a job's scene is on this node, and how its paths are remapped (a file tree). */
interface SceneHandle {
  scenePath: string
  tree?: { remapFile?: string; allowMissing: boolean }
}

export function createWorker(c: WorkerComponents): Required<ChunkRunner> & {
  forgetJob(jobId: string): Promise<void>
  clearScratch(): Promise<void>
} {
  const scenes = new Map<string, { promise: Promise<SceneHandle>; ctl: AbortController }>()
  const trees = createTreeLayout(c)

  const providersFor = (
    manifest: string,
    known: string[],
    signal: AbortSignal,
    dht: 'fallback' | 'always' = 'fallback',
  ) =>
    c.providers.findProviders(manifest, { known, dht, signal, timeoutMs: 2_000 }).catch(() => known)

  /**
   * Fetch and export the job's scene once per job; concurrent chunks share it.
   * The fetch is shared, so it has its own signal (aborted by forgetJob): one chunk's lost
   * lease must not fail another chunk's fetch; an aborted chunk only stops waiting.
   */
  const sceneFor = (task: ChunkTask, signal: AbortSignal): Promise<SceneHandle> =>
    raceSignal(sharedScene(task), signal, 'scene fetch')

  const sharedScene = (task: ChunkTask): Promise<SceneHandle> => {
    let shared = scenes.get(task.jobId)
    if (!shared) {
      const ctl = new AbortController()
      const fetchSignal = ctl.signal
      const p = (async (): Promise<SceneHandle> => {
        if (task.job.files) {
          // The scene with its files: the tree, laid out from the block store.
          await c.blocks.pinMany(scenePinOwner(task.jobId), [
            task.job.scene.manifest,
            task.job.files.tree,
          ])
          const t = await trees.layout(
            task.jobId,
            task.job,
            (ms) => c.blocks.pinMany(filesPinOwner(task.jobId), ms),
            fetchSignal,
          )
          return {
            scenePath: t.scenePath,
            tree: { remapFile: t.remapFile, allowMissing: t.allowMissing },
          }
        }
        const { manifest, name } = task.job.scene
        if ((await c.blocks.missingBlocks(manifest).catch(() => ['?'])).length > 0) {
          const fetch = (providers: string[]) =>
            c.exchange.fetchManifest(manifest, {
              providers,
              signal: fetchSignal,
              pinOwner: scenePinOwner(task.jobId),
            })
          // Holders already known (the submitter, gossip) first: on a larger mesh the DHT
          // walk often takes its whole timeout, and the first frame waits for the scene.
          const known = [...new Set([task.job.submitter, ...c.providers.providersOf(manifest)])]
          try {
            await fetch(known)
          } catch (err) {
            if (fetchSignal.aborted) throw err
            await fetch(await providersFor(manifest, known, fetchSignal, 'always'))
          }
        } else {
          await c.blocks.pin(scenePinOwner(task.jobId), manifest)
        }
        const dir = join(c.workRoot, task.jobId, 'scene')
        await mkdir(dir, { recursive: true })
        const path = join(dir, safeFileName(name, 'scene.blend'))
        await c.blocks.exportFile(manifest, path, { signal: fetchSignal, scratch: true })
        return { scenePath: path }
      })()
      const entry = { promise: p, ctl }
      shared = entry
      scenes.set(task.jobId, entry)
      // A failed fetch must not poison later chunks of the job.
      p.catch(() => {
        if (scenes.get(task.jobId) === entry) scenes.delete(task.jobId)
      })
    }
    return shared.promise
  }

  const storeOutput = async (
    jobId: string,
    path: string,
    name: string,
    frame: number,
  ): Promise<ChunkOutput> => {
    const imported = await c.blocks.importFile(path, { name })
    await c.blocks.pin(outputsPinOwner(jobId), imported.manifest)
    return { frame, manifest: imported.manifest, size: imported.size, name }
  }

  /** A frame's thumbnail, stored and pinned like its output; none when it cannot be made. */
  const storeThumb = async (
    jobId: string,
    path: string,
    out: ChunkOutput,
    format: OutputFormat,
    signal: AbortSignal,
  ): Promise<ChunkOutput> => {
    try {
      if (await isOwnThumbnail(path, format))
        return { ...out, thumb: { manifest: out.manifest, size: out.size } }
      if (!c.makeThumb) return out
      const thumbPath = `${path}.thumb.jpg`
      if (!(await c.makeThumb(path, thumbPath, format, signal))) return out
      const imported = await c.blocks.importFile(thumbPath, { name: 'thumb.jpg' })
      await c.blocks.pin(outputsPinOwner(jobId), imported.manifest)
      return { ...out, thumb: { manifest: imported.manifest, size: imported.size } }
    } catch (err) {
      if (signal.aborted) throw err
      c.logger.debug('no thumbnail', { jobId, frame: out.frame, err: describeError(err) })
      return out
    }
  }

  const storeLog = async (jobId: string, path: string | undefined): Promise<string | undefined> => {
    if (!path) return undefined
    try {
      const imported = await c.blocks.importFile(path, { name: 'render.log' })
      await c.blocks.pin(outputsPinOwner(jobId), imported.manifest)
      return imported.manifest
    } catch {
      return undefined
    }
  }

  const renderFrames = async (
    task: ChunkTask,
    signal: AbortSignal,
    onProgress?: (p: ChunkProgress) => void,
    onRendered?: () => void,
  ): Promise<ChunkResult> => {
    const engine = c.engines.get(task.job.engine.name)
    if (!engine)
      throw new ChunkFailedError(`engine ${task.job.engine.name} is not installed on this node`)
    // A node may hold several versions: run the newest that meets the job's requirement and
    // has its device (the one eligibility matched), not simply the newest installed.
    const device = task.job.requirements.device
    const engineVersion = c.engines.versions
      ? pickRunnable(
          c.engines.versions(),
          c.engines.devices?.(),
          task.job.engine.name,
          task.job.engine.version,
          device,
        )
      : undefined
    if (c.engines.versions && (task.job.engine.version || device) && engineVersion === undefined)
      throw new ChunkFailedError(
        `no installed ${task.job.engine.name} meets the job's requirement${task.job.engine.version ? ` ${task.job.engine.version}` : ''}${device ? ` with ${deviceLabel(device)}` : ''}`,
      )
    const startedAt = performance.now()
    let scene: SceneHandle
    try {
      scene = await sceneFor(task, signal)
    } catch (err) {
      if (signal.aborted) throw err
      throw unavailableOr(err, `could not fetch the scene: ${describeError(err)}`)
    }
    const sceneMs = performance.now() - startedAt
    const workDir = join(c.workRoot, task.jobId, `chunk-${task.chunk}-a${task.attempt}`)
    await rm(workDir, { recursive: true, force: true })
    await mkdir(workDir, { recursive: true })
    // Where a chunk's start goes (scene, then scratch): the first-frame latency's breakdown.
    c.logger.debug('engine starting', {
      jobId: task.jobId,
      chunk: task.chunk,
      sceneMs: Math.round(sceneMs),
      prepareMs: Math.round(performance.now() - startedAt),
    })
    let currentFrame = task.frames[0] ?? 0
    try {
      const params = engine.validate(task.job.params)
      const result = await engine.render(
        {
          scenePath: scene.scenePath,
          ...(scene.tree ? { tree: scene.tree } : {}),
          frames: [...task.frames],
          workDir,
          format: task.job.output.format,
          params,
          persistent: task.job.persistent,
          ...(engineVersion ? { engineVersion } : {}),
          ...(device ? { device } : {}),
          jobId: task.jobId,
          timeoutMs: task.job.limits.chunkTimeoutMs,
        },
        {
          signal,
          onProgress: (p) => {
            currentFrame = p.frame
            const index = Math.max(0, task.frames.indexOf(p.frame))
            onProgress?.({
              frame: p.frame,
              fraction: (index + (p.fraction ?? 0)) / Math.max(1, task.frames.length),
              message: p.message,
            })
          },
          onLog: (line) => c.onLogLine?.(task, currentFrame, line),
        },
      )
      onRendered?.()
      const log = await storeLog(task.jobId, result.logPath)
      const outputs: ChunkOutput[] = []
      for (const o of result.outputs) {
        const stored = await storeOutput(
          task.jobId,
          o.path,
          `${String(o.frame).padStart(4, '0')}${safeExtension(o.path)}`,
          o.frame,
        )
        outputs.push(await storeThumb(task.jobId, o.path, stored, task.job.output.format, signal))
      }
      // Not announced: the complete entry names this node as the holder, and a have message
      // per chunk was a quarter of every node's gossip (the periodic announce still lists it).
      return { outputs, log, renderMs: result.renderMs }
    } catch (err) {
      if (signal.aborted) throw err
      // A render that failed because this machine's disk is full says so (ERR_DISK_FULL),
      // whatever the engine saw: Blender only reports a frame it could not save.
      const cause = (await diskFullCause(err, workDir)) ?? err
      if (isEngineError(cause) || cause instanceof RmeshError) {
        const log = await storeLog(task.jobId, join(workDir, 'render.log'))
        throw new ChunkFailedError(describeError(cause), { log, cause })
      }
      throw new ChunkFailedError(describeError(cause), { cause })
    } finally {
      await rm(workDir, { recursive: true, force: true }).catch(() => {})
    }
  }

  const encode = async (
    task: ChunkTask,
    signal: AbortSignal,
    onProgress?: (p: ChunkProgress) => void,
  ): Promise<ChunkResult> => {
    const codec = task.job.output.video
    if (!codec) throw new ChunkFailedError('the job asks for no video')
    const state = c.jobState(task.jobId)
    if (!state) throw new ChunkFailedError('job state unknown on this node')
    const workDir = join(c.workRoot, task.jobId, `encode-a${task.attempt}`)
    await rm(workDir, { recursive: true, force: true })
    await mkdir(workDir, { recursive: true })
    const started = Date.now()
    try {
      const frames: { frame: number; path: string }[] = []
      for (const chunk of state.chunks) {
        if (chunk.kind !== 'frames') continue
        // A frames chunk rejected by the submitter is open again: never encode without it
        // (the encode chunk waits again; this fail is ignored there).
        if (chunk.state !== 'done')
          throw new ChunkFailedError(`frames ${chunk.index} are not done; the video waits for them`)
        for (const out of chunk.outputs ?? []) {
          if ((await c.blocks.missingBlocks(out.manifest).catch(() => ['?'])).length > 0) {
            // The completer holds it until the submitter's ack, the submitter after.
            const known = [...(chunk.completedBy ? [chunk.completedBy] : []), task.job.submitter]
            await c.exchange.fetchManifest(out.manifest, {
              providers: await providersFor(out.manifest, known, signal),
              signal,
              pinOwner: scenePinOwner(task.jobId),
            })
          }
          const path = join(
            workDir,
            `frame_${String(out.frame).padStart(6, '0')}${safeExtension(out.name)}`,
          )
          await c.blocks.exportFile(out.manifest, path, { signal, scratch: true })
          frames.push({ frame: out.frame, path })
        }
      }
      frames.sort((a, b) => a.frame - b.frame)
      const name = `${safeFileName(task.job.name, 'video')}.${VIDEO_EXTENSION[codec]}`
      const out = join(workDir, name)
      const logPath = join(workDir, 'encode.log')
      const { fps, frameRate, crf, bitrateKbps, passes, bitDepth, hdr } = task.job.output
      await encodeVideo({
        frames,
        fps: fps ?? 24,
        ...compactOptions({ frameRate, crf, bitrateKbps, passes, bitDepth, hdr }),
        codec,
        out,
        signal,
        logPath,
        onProgress: (p) =>
          onProgress?.({ frame: p.frame, fraction: p.fraction, message: 'encoding' }),
        onLog: (line) => c.onLogLine?.(task, VIDEO_FRAME, line),
      })
      const log = await storeLog(task.jobId, logPath)
      const output = await storeOutput(task.jobId, out, name, VIDEO_FRAME)
      return { outputs: [output], log, renderMs: Date.now() - started }
    } catch (err) {
      if (signal.aborted) throw err
      throw unavailableOr(err, `encode failed: ${describeError(err)}`)
    } finally {
      await rm(workDir, { recursive: true, force: true }).catch(() => {})
    }
  }

  return {
    prepare(task) {
      if (task.kind !== 'frames' || !c.engines.get(task.job.engine.name)) return
      // A failure is start()'s to report: the failed fetch left the map, so it retries.
      sharedScene(task).catch(() => undefined)
    },
    start(task, signal, onProgress, onRendered) {
      return task.kind === 'encode'
        ? encode(task, signal, onProgress)
        : renderFrames(task, signal, onProgress, onRendered)
    },
    /**
     * Empty the work folder. Called once at start, before any chunk runs: a daemon killed
     * mid-render leaves its chunk folders and scene copies behind, and nothing in there
     * outlives a restart (outputs and scenes live in the block store).
     */
    async clearScratch() {
      await rm(c.workRoot, { recursive: true, force: true })
      await mkdir(c.workRoot, { recursive: true })
    },
    async forgetJob(jobId) {
      scenes.get(jobId)?.ctl.abort()
      scenes.delete(jobId)
      await rm(join(c.workRoot, jobId), { recursive: true, force: true }).catch(() => {})
      await trees.prune()
    },
  }
}
