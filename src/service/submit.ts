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
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, dirname, extname, isAbsolute, join, resolve } from 'node:path'
import type * as Api from '../api/types.js'
import { insideRoot } from '../blobs/file-tree.js'
import { safeFileName } from '../blobs/safe-name.js'
import type { DependencyTrace, Engine, SceneInfo as EngineSceneInfo } from '../engines/types.js'
import {
  type AnnounceBody,
  LIMITS,
  newJobId,
  type OutputFormat,
  validateBody,
} from '../jobs/entries.js'
import { parseFrameSpec } from '../jobs/frame-spec.js'
import { isVersionRequirement, parseEngineRange } from '../jobs/version.js'
import {
  blenderRequirement,
  checkAfter,
  checkDevice,
  checkTags,
  checkVideoRequest,
} from './submit-options.js'
import { jobLogId } from '../log/types.js'
import { withDeadline } from '../util/abort.js'
import { InvalidInputError, NotFoundError, RmeshError } from '../util/errors.js'
import { filesPinOwner, scenePinOwner } from '../worker/runner.js'
import {
  FORMAT_FROM_ENGINE,
  FORMAT_TO_ENGINE,
  intField,
  type LocalJob,
  type ServiceContext,
} from './context.js'
import {
  describeMissing,
  describePlan,
  type ImportCache,
  importTree,
  planTree,
  type TreePlan,
} from './dependencies.js'

// Each request's own bound, released as soon as the request ends (util/abort.ts).
const INSPECT_DEADLINE_MS = 60_000
const SUBMIT_DEADLINE_MS = 10 * 60_000

export interface Submitter {
  inspect(req: Api.InspectRequest, signal?: AbortSignal): Promise<Api.SceneInfo>
  submit(req: Api.SubmitRequest, signal?: AbortSignal): Promise<Api.SubmitResponse>
  plan(req: Api.SubmitRequest, signal?: AbortSignal): Promise<Api.SubmitPlan>
}

export function createSubmitter(ctx: ServiceContext): Submitter {
  const { c } = ctx
  const logger = ctx.logger
  const imports = c.db.sublevel<string, string>('import-cache', { valueEncoding: 'utf8' })
  const importCache: ImportCache = {
    get: (key) => imports.get(key),
    put: (key, manifest) => imports.put(key, manifest),
  }

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

  /** Everything a submit decides before it touches the store: checked, defaults applied. */
  const checkRequest = async (req: Api.SubmitRequest, signal: AbortSignal) => {
    if (!req || typeof req !== 'object')
      throw new InvalidInputError('submit needs a JSON object body')
    const scenePath = await checkScenePath(req.scenePath)
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
    const device = checkDevice(req.device, engineName)
    if (req.allowMissing !== undefined && typeof req.allowMissing !== 'boolean')
      throw new InvalidInputError('allowMissing must be true or false', { field: 'allowMissing' })
    const projectRoot = await checkProjectRoot(req.projectRoot, scenePath)

    let info: EngineSceneInfo | undefined
    // One Blender run reads the metadata and lists the files; a packed scene is traced
    // after packing, as the copy it is.
    let trace: DependencyTrace | undefined
    if (engine.traceDependencies && !req.pack) {
      trace = await engine.traceDependencies(scenePath, { root: projectRoot, signal })
      info = trace.info
    }
    if (!info && engine.inspect) info = await engine.inspect(scenePath, { signal })
    if (!engine.traceDependencies && info && info.missingFiles.length > 0 && !req.pack) {
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
    const video = checkVideoRequest(req, format, info)
    const tags = checkTags(req.tags)
    const after = checkAfter(req.after, ctx.resolveId, (id) => c.leases.job(id)?.state)
    const name = req.name === undefined ? basename(scenePath, extname(scenePath)) : String(req.name)
    if (!/^[^\0/\\]{1,100}$/.test(name))
      throw new InvalidInputError('name must be 1–100 characters without slashes', {
        field: 'name',
      })
    const requested = parseEngineRequirement(req.require, engineName)
    const requirement = blenderRequirement(
      requested,
      // `--require blender` (the engine, no versions) asks for any version, like anyBlender.
      req.anyBlender ??
        (requested === undefined && Array.isArray(req.require) && req.require.length > 0
          ? true
          : undefined),
      engineName,
      info?.blenderVersion,
    )
    if (req.outDir !== undefined && (typeof req.outDir !== 'string' || !isAbsolute(req.outDir)))
      throw new InvalidInputError('outDir must be an absolute path', { field: 'outDir' })
    return {
      scenePath,
      projectRoot,
      engine,
      engineName,
      info,
      frames,
      chunkSize,
      priority,
      format,
      name,
      requirement,
      device,
      video,
      tags,
      after,
      allowMissing: req.allowMissing === true,
      trace,
    }
  }

  const checkProjectRoot = async (root: unknown, scenePath: string): Promise<string> => {
    if (root === undefined) return dirname(scenePath)
    if (typeof root !== 'string' || !isAbsolute(root) || root.length > 4096)
      throw new InvalidInputError('projectRoot must be an absolute folder path', {
        field: 'projectRoot',
      })
    const st = await stat(root).catch(() => undefined)
    if (!st?.isDirectory())
      throw new InvalidInputError(`project root ${root} is not a folder`, { field: 'projectRoot' })
    const r = resolve(root)
    if (insideRoot(r, scenePath) === undefined)
      throw new InvalidInputError(
        `the scene ${scenePath} is not inside the project root ${r}; choose a --project-root that holds it`,
        { field: 'projectRoot' },
      )
    return r
  }

  /**
   * The scene as it will travel: packed into a temporary copy when asked (whose root is
   * that copy's folder), then its dependencies traced and laid out as a file tree. Missing
   * files are refused here, unless allowMissing. `done()` removes the temporary copy.
   */
  const prepareFiles = async (
    checked: Awaited<ReturnType<typeof checkRequest>>,
    req: Api.SubmitRequest,
    signal: AbortSignal,
  ): Promise<{ plan?: TreePlan; toImport: string; done(): Promise<void> }> => {
    let toImport = checked.scenePath
    let root = checked.projectRoot
    let packedDir: string | undefined
    const done = async () => {
      if (packedDir) await rm(packedDir, { recursive: true, force: true }).catch(() => {})
    }
    try {
      if (req.pack) {
        // Pack external assets into a copy so every node renders what the artist sees.
        const b = blender()
        if (!b.packScene)
          throw new RmeshError('ERR_ENGINE', 'this Blender engine cannot pack scenes')
        packedDir = await mkdtemp(join(tmpdir(), 'rmesh-pack-'))
        toImport = join(packedDir, basename(checked.scenePath))
        root = packedDir
        await b.packScene(checked.scenePath, toImport, { signal })
      }
      if (!checked.engine.traceDependencies) return { toImport, done }
      const trace =
        checked.trace ?? (await checked.engine.traceDependencies(toImport, { root, signal }))
      const plan = await planTree(trace, { scenePath: toImport, root })
      if (plan.missing.length > 0 && !checked.allowMissing) {
        throw new RmeshError(
          'ERR_SCENE_MISSING_ASSET',
          `the scene uses ${plan.missing.length} file(s) that cannot be found:\n${describeMissing(plan.missing)}\nFix the paths in Blender (File > External Data > Find Missing Files), or submit with --allow-missing to render without them`,
          { details: { missing: plan.missing } },
        )
      }
      return { plan, toImport, done }
    } catch (err) {
      await done()
      throw err
    }
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
    if (!c.canSubmit())
      throw new RmeshError(
        'ERR_FORBIDDEN',
        'this node may not submit: its token lacks the submit capability (ask an admin: rmesh token issue --peer <this id> --caps submit,render)',
      )
    const quota = c.quotaOf?.(c.self)
    if (quota !== undefined) {
      const unfinished = c.leases.jobs().filter(
        // A paused job, or one waiting for its `after` jobs, is unfinished too.
        (j) =>
          j.submitter === c.self &&
          !j.deleted &&
          ['queued', 'rendering', 'paused', 'waiting'].includes(j.state),
      ).length
      if (unfinished >= quota) {
        throw new RmeshError(
          'ERR_QUOTA',
          `this node's token allows ${quota} unfinished job(s) and ${unfinished} are queued, rendering, paused or waiting; wait for one to end or cancel one`,
          { details: { quota, unfinished } },
        )
      }
    }
    const checked = await checkRequest(req, signal)
    const { scenePath, name, frames } = checked
    const jobId = newJobId((n) => new Uint8Array(randomBytes(n)))
    const outDir = req.outDir ?? join(dirname(scenePath), 'renders', safeFileName(name, jobId))

    const prepared = await prepareFiles(checked, req, signal)
    let scene: AnnounceBody['scene']
    let files: AnnounceBody['files']
    const manifests: string[] = []
    try {
      if (prepared.plan) {
        const t = await importTree(prepared.plan, c.blocks, signal, importCache)
        // The scene and the tree are provided in the DHT (scene pins); the many files are
        // pinned apart, found through the submitter and gossip.
        await c.blocks.pinMany(scenePinOwner(jobId), [t.sceneManifest, t.treeManifest])
        await c.blocks.pinMany(filesPinOwner(jobId), t.manifests)
        manifests.push(...t.manifests)
        scene = { manifest: t.sceneManifest, name: '', size: t.sceneSize }
        const missing = prepared.plan.missing.length
        files = {
          tree: t.treeManifest,
          count: t.tree.files.length,
          size: t.size,
          ...(missing > 0 ? { missing: Math.min(missing, LIMITS.maxTreeFiles) } : {}),
        }
      } else {
        const imported = await c.blocks.importFile(prepared.toImport, {
          name: basename(scenePath),
          signal,
        })
        await c.blocks.pin(scenePinOwner(jobId), imported.manifest)
        scene = { manifest: imported.manifest, name: '', size: imported.size }
      }
    } finally {
      await prepared.done()
    }
    scene.name = safeFileName(basename(scenePath), 'scene.blend')
    const lj: LocalJob = {
      jobId,
      outDir,
      scenePath,
      written: [],
      ...(prepared.plan?.missing.length
        ? { missing: [...new Set(prepared.plan.missing.map((m) => m.path))].slice(0, 100) }
        : {}),
    }
    await ctx.saveLocal(lj)
    const { requirement, engineName, format, video, tags, device } = checked
    const announce: AnnounceBody = {
      jobId,
      name,
      submitter: c.self as AnnounceBody['submitter'],
      scene,
      ...(files ? { files } : {}),
      engine: requirement ? { name: engineName, version: requirement } : { name: engineName },
      frames,
      chunkSize: checked.chunkSize,
      output: { format, ...video },
      priority: checked.priority,
      persistent: req.persistent ?? false,
      params: (req.params ?? {}) as AnnounceBody['params'],
      requirements: {
        ...(tags?.length ? { tags } : {}),
        ...(device ? { device } : {}),
      },
      limits: {},
      ...(checked.after ? { after: checked.after } : {}),
    }
    // Every node ignores an invalid announce: refuse it here rather than lose the job silently.
    const valid = validateBody('announce', announce)
    if (!valid.ok) {
      await c.blocks.unpin(scenePinOwner(jobId)).catch(() => {})
      await c.blocks.unpin(filesPinOwner(jobId)).catch(() => {})
      throw new InvalidInputError(`the job cannot be announced: ${valid.reason}`)
    }
    await c.log.append(jobLogId(jobId), 'announce', announce)
    const provided = files ? [scene.manifest, files.tree] : [scene.manifest]
    void c.providers.announce(provided, { dht: 'deferred' }).catch(() => {})
    if (manifests.length > 0) void c.providers.announce(manifests, { dht: false }).catch(() => {})
    logger.info('job submitted', {
      jobId,
      name,
      frames: frames.length,
      outDir,
      files: files?.count,
      missing: files?.missing,
    })
    return { jobId, name, framesTotal: frames.length, outDir }
  }

  /** `submit --dry-run`: what the job would carry and what would be stored and sent. */
  const plan = (req: Api.SubmitRequest, callerSignal?: AbortSignal): Promise<Api.SubmitPlan> =>
    withDeadline(SUBMIT_DEADLINE_MS, callerSignal, async (signal) => {
      const checked = await checkRequest(req, signal)
      const prepared = await prepareFiles({ ...checked, allowMissing: true }, req, signal)
      try {
        const p = prepared.plan
        if (!p)
          throw new InvalidInputError(`engine ${checked.engineName} does not trace dependencies`)
        return await describePlan(p, {
          blocks: c.blocks,
          holders: (m) => c.providers.providersOf(m).filter((x) => x !== c.self).length,
          scenePath: checked.scenePath,
          allowMissing: checked.allowMissing,
          signal,
          cache: importCache,
        })
      } finally {
        await prepared.done()
      }
    })

  return { inspect, submit, plan }
}

/**
 * `--require` values for the job's engine → one version requirement (protocols/job-entries.md
 * `engine.version`): `blender>=3.4`, a range `blender>=4.2 <4.3`; several values all hold.
 * Undefined when none is given.
 */
export function parseEngineRequirement(
  values: readonly unknown[] | undefined,
  engineName: string,
): string | undefined {
  const comparators: string[] = []
  for (const r of values ?? []) {
    const parsed = parseEngineRange(String(r))
    if (!parsed)
      throw new InvalidInputError(
        `requirement ${JSON.stringify(r)} is not like 'blender>=3.4' or 'blender>=4.2 <4.3'`,
        { field: 'require' },
      )
    if (parsed.engine !== engineName)
      throw new InvalidInputError(`requirement ${r} names another engine than ${engineName}`, {
        field: 'require',
      })
    if (parsed.range) comparators.push(...parsed.range.split(/\s+/))
  }
  if (comparators.length === 0) return undefined
  const requirement = comparators.join(' ')
  if (!isVersionRequirement(requirement))
    throw new InvalidInputError('at most 4 version comparators in all, like blender>=4.2 <4.3', {
      field: 'require',
    })
  return requirement
}
