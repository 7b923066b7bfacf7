/**
 * Submitting: validate the request, inspect the scene for defaults, (pack,) import it into
 * the block store, announce the job in its log. Also the scene inspection the CLI and the
 * dashboard use before a submit.
 *
 * Invariants:
 *  - nothing is announced that every node would ignore: the announce is validated here
 *    with the same schema the reducer applies;
 *  - the scene's blocks are pinned under the job before the announce names them;
 *  - the output folder is chosen here, locally, and recorded before the announce.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, dirname, extname, isAbsolute, join } from 'node:path'
import type * as Api from '../api/types.js'
import type { BlockStore } from '../blobs/block-store.js'
import { safeFileName } from '../blobs/safe-name.js'
import type { Engine, SceneInfo as EngineSceneInfo } from '../engines/types.js'
import { type AnnounceBody, newJobId, type OutputFormat, validateBody } from '../jobs/entries.js'
import { parseFrameSpec } from '../jobs/frame-spec.js'
import { jobLogId } from '../log/types.js'
import { withDeadline } from '../util/abort.js'
import { InvalidInputError, NotFoundError, RmeshError } from '../util/errors.js'
import { scenePinOwner } from '../worker/runner.js'
import {
  FORMAT_FROM_ENGINE,
  FORMAT_TO_ENGINE,
  intField,
  type LocalJob,
  type ServiceContext,
} from './context.js'

// Each request's own bound, released as soon as the request ends (util/abort.ts).
const INSPECT_DEADLINE_MS = 60_000
const SUBMIT_DEADLINE_MS = 10 * 60_000

export interface Submitter {
  inspect(req: Api.InspectRequest, signal?: AbortSignal): Promise<Api.SceneInfo>
  submit(req: Api.SubmitRequest, signal?: AbortSignal): Promise<Api.SubmitResponse>
}

export function createSubmitter(ctx: ServiceContext): Submitter {
  const { c } = ctx
  const logger = ctx.logger

  const blender = () => {
    const e = c.engines.get('blender')
    if (!e?.inspect)
      throw new RmeshError(
        'ERR_ENGINE',
        'Blender is not installed on this node; install it (sudo apt-get install blender) or submit from a node that has it',
      )
    return e as Engine &
      Required<Pick<Engine, 'inspect'>> & {
        packScene?: (src: string, dest: string, o: { signal: AbortSignal }) => Promise<unknown>
      }
  }

  const checkScenePath = async (path: unknown): Promise<string> => {
    if (typeof path !== 'string' || path.length === 0 || path.length > 4096)
      throw new InvalidInputError('scenePath must be an absolute path to a .blend file', {
        field: 'scenePath',
      })
    if (!isAbsolute(path))
      throw new InvalidInputError(`scenePath must be absolute, got ${path}`, { field: 'scenePath' })
    if (extname(path).toLowerCase() !== '.blend')
      throw new InvalidInputError(
        `${basename(path)} is not a .blend file; rmesh renders Blender scenes (.blend)`,
        { field: 'scenePath' },
      )
    try {
      const st = await stat(path)
      if (!st.isFile()) throw new InvalidInputError(`${path} is not a file`, { field: 'scenePath' })
    } catch (err) {
      if (err instanceof RmeshError) throw err
      throw new NotFoundError(`scene ${path}`, { field: 'scenePath' })
    }
    return path
  }

  const toApiScene = (path: string, size: number, info: EngineSceneInfo): Api.SceneInfo => ({
    path,
    engine: 'blender',
    sizeBytes: size,
    savedWith: info.blenderVersion,
    frameStart: info.frameStart,
    frameEnd: info.frameEnd,
    frameStep: info.frameStep,
    fps: info.fps,
    resolution: { x: info.resolutionX, y: info.resolutionY, percent: info.resolutionPercentage },
    renderEngine: info.renderEngine,
    format: FORMAT_FROM_ENGINE[info.outputFormat] ?? info.outputFormat,
    camera: info.camera ?? undefined,
    missingFiles: info.missingFiles,
    externalFiles: info.externalFiles.length,
  })

  const inspect = (req: Api.InspectRequest, callerSignal?: AbortSignal): Promise<Api.SceneInfo> =>
    withDeadline(INSPECT_DEADLINE_MS, callerSignal, (signal) => inspectWithin(req, signal))

  const inspectWithin = async (
    req: Api.InspectRequest,
    signal: AbortSignal,
  ): Promise<Api.SceneInfo> => {
    const path = await checkScenePath(req?.path)
    const info = await blender().inspect(path, { signal })
    return toApiScene(path, (await stat(path)).size, info)
  }

  const submit = (
    req: Api.SubmitRequest,
    callerSignal?: AbortSignal,
  ): Promise<Api.SubmitResponse> =>
    withDeadline(SUBMIT_DEADLINE_MS, callerSignal, (signal) => submitWithin(req, signal))

  const submitWithin = async (
    req: Api.SubmitRequest,
    signal: AbortSignal,
  ): Promise<Api.SubmitResponse> => {
    if (!req || typeof req !== 'object')
      throw new InvalidInputError('submit needs a JSON object body')
    if (!c.canSubmit())
      throw new RmeshError(
        'ERR_FORBIDDEN',
        'this node may not submit: its token lacks the submit capability (ask an admin: rmesh token issue --peer <this id> --caps submit,render)',
      )
    const scenePath = await checkScenePath(req.scenePath)
    const quota = c.quotaOf?.(c.self)
    if (quota !== undefined) {
      const unfinished = c.leases
        .jobs()
        .filter(
          (j) => j.submitter === c.self && (j.state === 'queued' || j.state === 'rendering'),
        ).length
      if (unfinished >= quota) {
        throw new RmeshError(
          'ERR_QUOTA',
          `this node's token allows ${quota} unfinished job(s) and ${unfinished} are queued or rendering; wait for one to end or cancel one`,
          { details: { quota, unfinished } },
        )
      }
    }
    const engineName = req.engine ?? 'blender'
    if (typeof engineName !== 'string' || !/^[a-z][a-z0-9-]{0,31}$/.test(engineName))
      throw new InvalidInputError('engine must be a short name', { field: 'engine' })
    const engine = c.engines.get(engineName)
    if (!engine)
      throw new InvalidInputError(
        `engine ${engineName} is not known on this node (known: ${c.engines.names().join(', ')})`,
        { field: 'engine' },
      )
    // Checked here, but the caller's own values are announced: each renderer's engine
    // normalizes them again, and job entries carry only scalar params.
    engine.validate(req.params ?? {})

    let info: EngineSceneInfo | undefined
    if (engine.inspect) info = await engine.inspect(scenePath, { signal })
    if (info && info.missingFiles.length > 0 && !req.pack) {
      throw new RmeshError(
        'ERR_SCENE_MISSING_ASSET',
        `the scene references missing files: ${info.missingFiles.slice(0, 5).join(', ')}; fix the paths in Blender (File > External Data > Find Missing Files)`,
        { details: { missing: info.missingFiles } },
      )
    }
    const step = intField(req.step, 'step', 1, 1000, info?.frameStep ?? 1)
    const frames =
      typeof req.frames === 'string' && req.frames.trim() !== ''
        ? parseFrameSpec(req.frames, { step })
        : info
          ? parseFrameSpec(`${info.frameStart}-${info.frameEnd}`, { step })
          : parseFrameSpec('1', {})
    const chunkSize = intField(req.chunk, 'chunk', 1, 1000, 1)
    const priority = intField(req.priority, 'priority', 0, 100, 50)
    let format: OutputFormat = 'PNG'
    if (req.format !== undefined) {
      const f = FORMAT_TO_ENGINE[req.format]
      if (!f)
        throw new InvalidInputError(
          `format ${String(req.format)} is not supported; use png, exr or jpeg`,
          { field: 'format' },
        )
      format = f
    } else if (info && ['PNG', 'OPEN_EXR', 'JPEG'].includes(info.outputFormat))
      format = info.outputFormat as OutputFormat
    if (req.video !== undefined && !['h264', 'vp9', 'av1'].includes(req.video))
      throw new InvalidInputError('video must be h264, vp9 or av1', { field: 'video' })
    const name = req.name === undefined ? basename(scenePath, extname(scenePath)) : String(req.name)
    if (!/^[^\0/\\]{1,100}$/.test(name))
      throw new InvalidInputError('name must be 1–100 characters without slashes', {
        field: 'name',
      })
    let requirement: string | undefined
    for (const r of req.require ?? []) {
      const m = /^([a-z][a-z0-9-]*)\s*((?:>=|<=|>|<|=|\^|~)?\s*\d+(?:\.\d+){0,2})$/.exec(String(r))
      if (!m)
        throw new InvalidInputError(`requirement ${JSON.stringify(r)} is not like 'blender>=3.4'`, {
          field: 'require',
        })
      if (m[1] !== engineName)
        throw new InvalidInputError(`requirement ${r} names another engine than ${engineName}`, {
          field: 'require',
        })
      requirement = m[2].replace(/\s+/g, '')
    }

    const jobId = newJobId((n) => new Uint8Array(randomBytes(n)))
    const outDir = req.outDir ?? join(dirname(scenePath), 'renders', safeFileName(name, jobId))
    if (!isAbsolute(outDir))
      throw new InvalidInputError('outDir must be an absolute path', { field: 'outDir' })

    // Pack external assets into a copy so every node renders what the artist sees.
    let toImport = scenePath
    let packedDir: string | undefined
    if (req.pack) {
      const b = blender()
      if (!b.packScene) throw new RmeshError('ERR_ENGINE', 'this Blender engine cannot pack scenes')
      packedDir = join(tmpdir(), `rmesh-pack-${jobId}`)
      await mkdir(packedDir, { recursive: true })
      toImport = join(packedDir, basename(scenePath))
      await b.packScene(scenePath, toImport, { signal })
    }
    let imported: Awaited<ReturnType<BlockStore['importFile']>>
    try {
      imported = await c.blocks.importFile(toImport, { name: basename(scenePath), signal })
    } finally {
      if (packedDir) await rm(packedDir, { recursive: true, force: true }).catch(() => {})
    }
    await c.blocks.pin(scenePinOwner(jobId), imported.manifest)
    const lj: LocalJob = { jobId, outDir, scenePath, written: [] }
    await ctx.saveLocal(lj)
    const announce: AnnounceBody = {
      jobId,
      name,
      submitter: c.self as AnnounceBody['submitter'],
      scene: {
        manifest: imported.manifest,
        name: safeFileName(basename(scenePath), 'scene.blend'),
        size: imported.size,
      },
      engine: requirement ? { name: engineName, version: requirement } : { name: engineName },
      frames,
      chunkSize,
      output: req.video
        ? { format, video: req.video, fps: info?.fps ?? 24 }
        : { format, fps: info?.fps ?? 24 },
      priority,
      persistent: req.persistent ?? false,
      params: (req.params ?? {}) as AnnounceBody['params'],
      requirements: {},
      limits: {},
    }
    // Every node ignores an invalid announce: refuse it here rather than lose the job silently.
    const valid = validateBody('announce', announce)
    if (!valid.ok) {
      await c.blocks.unpin(scenePinOwner(jobId)).catch(() => {})
      throw new InvalidInputError(`the job cannot be announced: ${valid.reason}`)
    }
    await c.log.append(jobLogId(jobId), 'announce', announce)
    void c.providers.announce([imported.manifest], { dht: 'deferred' }).catch(() => {})
    logger.info('job submitted', { jobId, name, frames: frames.length, outDir })
    return { jobId, name, framesTotal: frames.length, outDir }
  }

  return { inspect, submit }
}
