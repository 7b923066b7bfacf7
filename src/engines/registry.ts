/**
 * The engines of this node: Blender, ffmpeg (encode only), the configured templated
 * engines, and optionally the test engine. Detection runs once at start (and on
 * `refresh()`); presence announces `describe()` and `devices()`; jobs name an engine and
 * may require a version (`blender>=3.4`) and a device.
 *
 * Devices (what each Blender's Cycles can render with) are detected after the versions, in
 * the background, one Blender run per executable: start is not held up, a version's
 * devices appear when known (`onChange`), and a refresh drops the old ones first.
 *
 * Invariants: an engine that is not installed is simply absent from `describe()` and
 * `get()` (ERR_ENGINE_NOT_FOUND), never a crash at start; a bad templated-engine config
 * fails `createEngineRegistry` with ERR_ENGINE_CONFIG naming the field.
 */
import type { Logger } from '../util/logger.js'
import { DEVICES_LIMITS, type EngineDevices } from '../jobs/devices.js'
import { type BlenderEngine, createBlenderEngine } from './blender.js'
import { type DetectedDevices, detectDevices } from './blender-devices.js'
import { detectFfmpeg, probeCaps } from './ffmpeg.js'
import { videoFeatures } from './ffmpeg-args.js'
import type { RenderLimits } from './limits.js'
import { createTemplateEngine, parseTemplateEngines } from './template.js'
import { createTestEngine, type TestEngineOptions } from './test-engine.js'
import { type Engine, EngineError, type EngineVersion } from './types.js'
import { meetsRequirement, parseRequirement, versionSatisfies } from './version.js'

export interface EnginesConfig {
  blender?: {
    paths?: string[]
    /** A folder of unpacked releases (`<dir>/*\/blender`). */
    releasesDir?: string
    searchPath?: boolean
    /** Test hook (RMESH_TEST_BLENDER_DEVICES): a recorded device report used instead of detection. */
    recordedDevices?: unknown
    timeoutMs?: number
    /** This node's render limits, read as each render starts. */
    limits?: () => RenderLimits
  }
  ffmpeg?: { path?: string; ffprobePath?: string }
  /** Templated engine declarations (validated here). */
  engines?: unknown
  /** Register the test engine (tests, the demo). */
  test?: boolean | TestEngineOptions
}

export interface EngineRegistry {
  /** Detects every engine; call again to re-detect. */
  refresh(): Promise<EngineVersion[]>
  /** An engine by name; ERR_ENGINE_NOT_FOUND when it is not installed here. */
  get(name: string): Engine
  has(name: string): boolean
  /** Installed engines and versions, for presence. */
  describe(): { name: string; version: string }[]
  /** The devices each detected Blender version sees (presence `devices`), as far as known. */
  devices(): EngineDevices[]
  /** Resolves when the device detection started by the last refresh has ended. */
  devicesDetected(): Promise<void>
  /** Every Blender found: version, executable and its devices (once detected). */
  blenders(): { version: string; path: string; devices?: DetectedDevices }[]
  /** Does this node meet a requirement like `blender>=3.4`? */
  satisfies(requirement: string): boolean
  /** The installed version that meets `requirement` (newest first), if any. */
  pick(requirement: string): EngineVersion | undefined
  blender(): BlenderEngine | undefined
  /** ffmpeg's path when installed. */
  ffmpeg(): { path: string; ffprobe: string; version: string } | undefined
  /** What this node's ffmpeg can encode (presence `video`); undefined without ffmpeg. */
  videoFeatures(): string[] | undefined
  close(): Promise<void>
}

export async function createEngineRegistry(components: {
  config?: EnginesConfig
  logger: Logger
  /** Called when what `devices()` says changes (a detection finished). */
  onChange?: () => void
}): Promise<EngineRegistry> {
  const config = components.config ?? {}
  const logger = components.logger.child('engines')
  const decls = config.engines === undefined ? [] : parseTemplateEngines(config.engines)
  const { recordedDevices, ...blenderOptions } = config.blender ?? {}
  const blender = createBlenderEngine({ ...blenderOptions, logger })
  const candidates: Engine[] = [blender, ...decls.map((d) => createTemplateEngine(d))]
  if (config.test) candidates.push(createTestEngine(config.test === true ? {} : config.test))

  let versions: EngineVersion[] = []
  let installed = new Map<string, Engine>()
  let ffmpeg: { path: string; ffprobe: string; version: string } | undefined
  let features: string[] | undefined
  /** Per Blender executable: what it sees. A refresh starts a new generation. */
  let deviceMap = new Map<string, DetectedDevices>()
  let generation = 0
  let detecting: Promise<void> = Promise.resolve()
  /** Stops a detection still running when the registry closes. */
  const closing = new AbortController()

  const detectAllDevices = async (found: EngineVersion[]) => {
    const gen = ++generation
    deviceMap = new Map()
    for (const v of found) {
      if (v.name !== 'blender') continue
      const d = await detectDevices(v.path, {
        logger,
        recorded: recordedDevices,
        signal: closing.signal,
      })
      if (gen !== generation || closing.signal.aborted) return
      deviceMap.set(v.path, d)
      logger.info('blender devices detected', { version: v.version, path: v.path, kinds: d.kinds })
      components.onChange?.()
    }
  }

  const refresh = async (): Promise<EngineVersion[]> => {
    const found: EngineVersion[] = []
    const next = new Map<string, Engine>()
    for (const e of candidates) {
      try {
        const v = await e.detect()
        if (v.length > 0) {
          next.set(e.name, e)
          found.push(...v)
        }
      } catch (err) {
        logger.warn('engine detection failed', { engine: e.name, err: String(err) })
      }
    }
    const ffPath = config.ffmpeg?.path ?? 'ffmpeg'
    const ffVersion = await detectFfmpeg(ffPath).catch(() => undefined)
    ffmpeg = ffVersion
      ? { path: ffPath, ffprobe: config.ffmpeg?.ffprobePath ?? 'ffprobe', version: ffVersion }
      : undefined
    if (ffmpeg) found.push({ name: 'ffmpeg', version: ffmpeg.version, path: ffPath })
    features = ffmpeg
      ? await probeCaps(ffPath)
          .then(videoFeatures)
          .catch(() => undefined)
      : undefined
    versions = found
    installed = next
    logger.info('engines detected', { engines: found.map((v) => `${v.name} ${v.version}`) })
    components.onChange?.()
    detecting = detectAllDevices(found).catch((err) =>
      logger.warn('device detection failed', { err: String(err) }),
    )
    return found
  }
  await refresh()

  return {
    refresh,
    get(name) {
      const e = installed.get(name)
      if (!e) {
        throw new EngineError(
          'ERR_ENGINE_NOT_FOUND',
          `engine ${name} is not installed on this node`,
          {
            details: { engine: name, installed: [...installed.keys()] },
          },
        )
      }
      return e
    },
    has: (name) => installed.has(name),
    describe: () => versions.map((v) => ({ name: v.name, version: v.version })),
    devices() {
      const out: EngineDevices[] = []
      for (const v of versions) {
        const d = deviceMap.get(v.path)
        // Two executables of one version: the first (PATH, then configured) speaks for it.
        if (!d || out.some((o) => o.engine === v.name && o.version === v.version)) continue
        out.push({
          engine: v.name,
          version: v.version,
          kinds: d.kinds,
          ...(d.names.length ? { names: d.names } : {}),
        })
      }
      return out.slice(0, DEVICES_LIMITS.entries)
    },
    devicesDetected: () => detecting,
    blenders: () =>
      versions
        .filter((v) => v.name === 'blender')
        .map((v) => ({ version: v.version, path: v.path, devices: deviceMap.get(v.path) })),
    satisfies: (requirement) => meetsRequirement(versions, requirement),
    pick(requirement) {
      const r = parseRequirement(requirement)
      return versions.find((v) => v.name === r.name && versionSatisfies(v.version, r.op, r.version))
    },
    blender: () => (installed.has('blender') ? blender : undefined),
    ffmpeg: () => ffmpeg,
    videoFeatures: () => features,
    async close() {
      closing.abort()
      await Promise.all([...installed.values()].map((e) => e.close?.()))
    },
  }
}
