/**
 * Daemon configuration: flags, then RMESH_* environment variables, then
 * `<dataDir>/config.json`, then defaults. Every value is validated here, once, so the
 * rest of the daemon can trust its options.
 *
 * The data directory is resolved by the CLI (cli/paths.ts): --dir, else RMESH_DIR, else
 * the platform's data path.
 */
import { readFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { isAbsolute, join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { LIMIT_BOUNDS } from './node/rules.js'
import { parseSchedule } from './node/schedule.js'
import { InvalidInputError } from './util/errors.js'
import { DEFAULT_WEB, parseWebAddress } from './web/address.js'
import { isLogLevel, type LogLevel } from './util/logger.js'

export const CONFIG_FILE = 'config.json'

export interface DaemonConfig {
  dataDir: string
  name: string
  listen: string[]
  bootstrap: string[]
  mdns: boolean
  /**
   * Serve as a relay for members behind NAT: 'on' (--relay-service), 'off', or 'auto' (when
   * AutoNAT verifies a public address of this node).
   */
  relayService: 'on' | 'off' | 'auto'
  /** Relays to keep a reservation on while this node is not public (0: none). */
  relays: number
  /** Addresses to announce instead of the listen addresses (e.g. the office's public IP). */
  announce: string[]
  /** Ask the router for a port mapping with UPnP / NAT-PMP. */
  upnp: boolean
  /** Bulk files sent over relayed connections, MiB/s in total (0: unbounded). */
  relayedUploadMiBps: number
  logLevel: LogLevel
  /** Concurrent renders this node runs (a render farm node usually runs one). */
  slots: number
  /**
   * Below this much free space (MiB) on the data directory's disk the node takes no new
   * chunks (it advertises 0 slots) until space is freed; what it holds finishes or fails.
   */
  minFreeDiskMiB: number
  tags: string[]
  /** Extra Blender executables to detect beside the one on PATH. */
  blenderPaths: string[]
  /** A folder of unpacked Blender releases: every `<dir>/<release>/blender` is detected. */
  blenderReleasesDir?: string
  /**
   * Test hook (env RMESH_TEST_BLENDER_DEVICES): the JSON of a recorded device report
   * (engines/blender-devices.ts) that stands for every Blender's detection. Tests only.
   */
  testBlenderDevices?: string
  /** Templated engines, validated by the engine registry. */
  engines: unknown[]
  presenceIntervalMs: number
  /**
   * Heartbeat interval while the node renders nothing and holds no lease (default
   * 5 × presenceIntervalMs, at most 120 s): at rest every heartbeat is pure cost to the mesh.
   */
  presenceRestIntervalMs?: number
  leaseTimeoutMs: number
  /** A done chunk whose outputs stay unobtainable this long is re-rendered (default 2 × leaseTimeoutMs). */
  outputGraceMs?: number
  /**
   * A job this node submitted fails when, for this long, no live node of the mesh can take
   * some chunk of it (missing engine, device or tags, every capable node blocklisted). Default 60 s.
   */
  noEligibleGraceMs: number
  /**
   * Preview video of a job this node submitted, while its frames come in: remade every
   * previewEveryFrames new frames or previewEveryMs (0: no previews). Defaults 10 and 20 s.
   */
  previewEveryMs: number
  previewEveryFrames: number
  syncIntervalMs: number
  /** Enable the test engine (tests, demos and benchmarks only). */
  testEngine: boolean
  /** Serve /metrics on this TCP port too (loopback), when set. */
  metricsPort?: number
  // ----- this node's own rules (src/node/rules.ts; `rmesh node …` overrides them) -----
  /** Hours it renders, local time: "mon-fri 19:00-08:00, sat-sun all". */
  schedule?: string
  /** Idle-only: render once its user has been idle this many minutes. */
  idleOnlyMinutes?: number
  /** Idle-only without a session's idle time: other processes' CPU % that counts as use. */
  idleLoadPercent?: number
  /** Blender's render threads. */
  renderThreads?: number
  /** Niceness of render processes (0–19). */
  renderNice?: number
  /** Address-space ceiling per render process, MiB. */
  renderMemoryMiB?: number
  /** Tags a job submitted from this node requires by default (a pool). */
  submitTags: string[]
  /** The web UI's address, `ADDR:PORT` or `off` (src/web/address.ts). */
  web: string
}

export type ConfigInput = Partial<Omit<DaemonConfig, 'dataDir'>>

const DEFAULTS: Omit<DaemonConfig, 'dataDir'> = {
  name: hostname(),
  listen: ['/ip4/0.0.0.0/tcp/4777'],
  bootstrap: [],
  mdns: true,
  relayService: 'auto',
  relays: 2,
  announce: [],
  upnp: false,
  relayedUploadMiBps: 4,
  logLevel: 'info',
  slots: 1,
  minFreeDiskMiB: 256,
  tags: [],
  blenderPaths: [],
  engines: [],
  presenceIntervalMs: 2_000,
  leaseTimeoutMs: 10_000,
  noEligibleGraceMs: 60_000,
  previewEveryMs: 20_000,
  previewEveryFrames: 10,
  syncIntervalMs: 5_000,
  testEngine: false,
  submitTags: [],
  web: DEFAULT_WEB,
}

/** Read RMESH_* variables into a partial config. */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): ConfigInput {
  const out: ConfigInput = {}
  const list = (v: string) => v.split(/[\s,]+/).filter(Boolean)
  if (env.RMESH_NAME) out.name = env.RMESH_NAME
  if (env.RMESH_LISTEN) out.listen = list(env.RMESH_LISTEN)
  if (env.RMESH_BOOTSTRAP) out.bootstrap = list(env.RMESH_BOOTSTRAP)
  if (env.RMESH_MDNS) out.mdns = !/^(0|false|no|off)$/i.test(env.RMESH_MDNS)
  if (env.RMESH_RELAY_SERVICE) out.relayService = env.RMESH_RELAY_SERVICE as 'on' | 'off' | 'auto'
  if (env.RMESH_RELAYS) out.relays = Number(env.RMESH_RELAYS)
  if (env.RMESH_ANNOUNCE) out.announce = list(env.RMESH_ANNOUNCE)
  if (env.RMESH_RELAYED_UPLOAD_MIBPS)
    out.relayedUploadMiBps = Number(env.RMESH_RELAYED_UPLOAD_MIBPS)
  if (env.RMESH_UPNP) out.upnp = /^(1|true|yes|on)$/i.test(env.RMESH_UPNP)
  if (env.RMESH_LOG_LEVEL) out.logLevel = env.RMESH_LOG_LEVEL as LogLevel
  if (env.RMESH_SLOTS) out.slots = Number(env.RMESH_SLOTS)
  if (env.RMESH_MIN_FREE_DISK_MIB) out.minFreeDiskMiB = Number(env.RMESH_MIN_FREE_DISK_MIB)
  if (env.RMESH_TAGS) out.tags = list(env.RMESH_TAGS)
  if (env.RMESH_TEST_ENGINE) out.testEngine = /^(1|true|yes|on)$/i.test(env.RMESH_TEST_ENGINE)
  if (env.RMESH_LEASE_TIMEOUT_MS) out.leaseTimeoutMs = Number(env.RMESH_LEASE_TIMEOUT_MS)
  if (env.RMESH_OUTPUT_GRACE_MS) out.outputGraceMs = Number(env.RMESH_OUTPUT_GRACE_MS)
  if (env.RMESH_NO_ELIGIBLE_GRACE_MS) out.noEligibleGraceMs = Number(env.RMESH_NO_ELIGIBLE_GRACE_MS)
  if (env.RMESH_PREVIEW_EVERY_MS) out.previewEveryMs = Number(env.RMESH_PREVIEW_EVERY_MS)
  if (env.RMESH_PREVIEW_EVERY_FRAMES)
    out.previewEveryFrames = Number(env.RMESH_PREVIEW_EVERY_FRAMES)
  if (env.RMESH_PRESENCE_INTERVAL_MS)
    out.presenceIntervalMs = Number(env.RMESH_PRESENCE_INTERVAL_MS)
  if (env.RMESH_PRESENCE_REST_INTERVAL_MS)
    out.presenceRestIntervalMs = Number(env.RMESH_PRESENCE_REST_INTERVAL_MS)
  if (env.RMESH_METRICS_PORT) out.metricsPort = Number(env.RMESH_METRICS_PORT)
  if (env.RMESH_SCHEDULE) out.schedule = env.RMESH_SCHEDULE
  if (env.RMESH_IDLE_ONLY_MINUTES) out.idleOnlyMinutes = Number(env.RMESH_IDLE_ONLY_MINUTES)
  if (env.RMESH_RENDER_THREADS) out.renderThreads = Number(env.RMESH_RENDER_THREADS)
  if (env.RMESH_RENDER_NICE) out.renderNice = Number(env.RMESH_RENDER_NICE)
  if (env.RMESH_RENDER_MEMORY_MIB) out.renderMemoryMiB = Number(env.RMESH_RENDER_MEMORY_MIB)
  if (env.RMESH_SUBMIT_TAGS) out.submitTags = list(env.RMESH_SUBMIT_TAGS)
  if (env.RMESH_WEB) out.web = env.RMESH_WEB
  if (env.RMESH_BLENDER_RELEASES_DIR) out.blenderReleasesDir = env.RMESH_BLENDER_RELEASES_DIR
  if (env.RMESH_TEST_BLENDER_DEVICES) out.testBlenderDevices = env.RMESH_TEST_BLENDER_DEVICES
  return out
}

export async function configFromFile(dataDir: string): Promise<ConfigInput> {
  const file = join(dataDir, CONFIG_FILE)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw new InvalidInputError(`cannot read ${file}: ${(err as Error).message}`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new InvalidInputError(
      `${file} is not valid JSON (${(err as Error).message}); fix or remove it`,
    )
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new InvalidInputError(`${file} must hold a JSON object`)
  }
  return parsed as ConfigInput
}

/** Merge layers (earlier wins) and validate. */
export function resolveConfig(dataDir: string, ...layers: ConfigInput[]): DaemonConfig {
  const merged: Record<string, unknown> = { ...DEFAULTS }
  for (const layer of [...layers].reverse()) {
    for (const [k, v] of Object.entries(layer)) if (v !== undefined) merged[k] = v
  }
  const c = merged as unknown as DaemonConfig
  c.dataDir = dataDir
  const bad = (field: string, why: string) =>
    new InvalidInputError(`config ${field}: ${why}`, { field })
  if (typeof c.name !== 'string' || c.name.length === 0 || c.name.length > 64)
    throw bad('name', 'must be 1–64 characters')
  for (const field of ['listen', 'bootstrap', 'announce'] as const) {
    if (!Array.isArray(c[field])) throw bad(field, 'must be a list of multiaddrs')
    for (const a of c[field]) {
      try {
        const p2p = multiaddr(a)
          .getComponents()
          .filter((c) => c.name === 'p2p')
        if (p2p.length > 1) throw new Error('two /p2p/ parts')
        if (p2p[0]?.value) peerIdFromString(p2p[0].value)
      } catch {
        throw bad(
          field,
          `${JSON.stringify(a)} is not a multiaddr (example: /ip4/192.168.1.10/tcp/4777/p2p/12D3Koo…)`,
        )
      }
    }
  }
  if (c.listen.length === 0) throw bad('listen', 'needs at least one address')
  if (typeof c.mdns !== 'boolean') throw bad('mdns', 'must be true or false')
  if (!['on', 'off', 'auto'].includes(c.relayService as string))
    throw bad('relayService', 'must be on, off or auto')
  if (!Number.isInteger(c.relays) || c.relays < 0 || c.relays > 4)
    throw bad('relays', 'must be a whole number of relays from 0 to 4')
  if (typeof c.upnp !== 'boolean') throw bad('upnp', 'must be true or false')
  if (
    !Number.isFinite(c.relayedUploadMiBps) ||
    c.relayedUploadMiBps < 0 ||
    c.relayedUploadMiBps > 10_000
  )
    throw bad('relayedUploadMiBps', 'must be a number of MiB/s from 0 (unbounded) to 10000')
  if (!isLogLevel(c.logLevel))
    throw bad('logLevel', 'must be one of debug, info, warn, error, silent')
  if (!Number.isInteger(c.slots) || c.slots < 0 || c.slots > 64)
    throw bad('slots', 'must be an integer from 0 to 64')
  if (!Number.isInteger(c.minFreeDiskMiB) || c.minFreeDiskMiB < 0 || c.minFreeDiskMiB > 1 << 24)
    throw bad('minFreeDiskMiB', 'must be a whole number of MiB (0 to 16777216; 0 = no check)')
  if (
    !Array.isArray(c.tags) ||
    !c.tags.every((t) => typeof t === 'string' && /^[\w.-]{1,32}$/.test(t))
  ) {
    throw bad('tags', 'must be a list of short words')
  }
  if (!Array.isArray(c.blenderPaths) || !c.blenderPaths.every((p) => typeof p === 'string'))
    throw bad('blenderPaths', 'must be a list of paths')
  if (
    c.blenderReleasesDir !== undefined &&
    (typeof c.blenderReleasesDir !== 'string' || !isAbsolute(c.blenderReleasesDir))
  )
    throw bad(
      'blenderReleasesDir',
      'must be the absolute path of a folder of unpacked Blender releases',
    )
  if (c.testBlenderDevices !== undefined) {
    try {
      JSON.parse(c.testBlenderDevices)
    } catch {
      throw bad('testBlenderDevices', 'must be the JSON of a recorded device report (a test hook)')
    }
  }
  if (!Array.isArray(c.engines)) throw bad('engines', 'must be a list of engine declarations')
  for (const f of ['presenceIntervalMs', 'leaseTimeoutMs', 'syncIntervalMs'] as const) {
    if (!Number.isFinite(c[f]) || c[f] < 50 || c[f] > 3_600_000)
      throw bad(f, 'must be a number of milliseconds (50 to 3600000)')
  }
  // A heartbeat announces its interval and peers refuse one above 120 s (net/presence.ts).
  if (c.presenceIntervalMs > 60_000)
    throw bad('presenceIntervalMs', 'must be a number of milliseconds (50 to 60000)')
  c.presenceRestIntervalMs ??= Math.min(120_000, 5 * c.presenceIntervalMs)
  if (
    !Number.isFinite(c.presenceRestIntervalMs) ||
    c.presenceRestIntervalMs < c.presenceIntervalMs ||
    c.presenceRestIntervalMs > 120_000
  )
    throw bad(
      'presenceRestIntervalMs',
      'must be a number of milliseconds from presenceIntervalMs to 120000',
    )
  c.outputGraceMs ??= 2 * c.leaseTimeoutMs
  if (!Number.isFinite(c.outputGraceMs) || c.outputGraceMs < 50 || c.outputGraceMs > 86_400_000)
    throw bad('outputGraceMs', 'must be a number of milliseconds (50 to 86400000)')
  if (
    !Number.isFinite(c.noEligibleGraceMs) ||
    c.noEligibleGraceMs < 1_000 ||
    c.noEligibleGraceMs > 7 * 86_400_000
  )
    throw bad('noEligibleGraceMs', 'must be a number of milliseconds (1000 to 604800000)')
  if (
    !Number.isInteger(c.previewEveryMs) ||
    (c.previewEveryMs !== 0 && c.previewEveryMs < 1_000) ||
    c.previewEveryMs > 86_400_000
  )
    throw bad(
      'previewEveryMs',
      'must be 0 (no preview videos) or milliseconds from 1000 to 86400000',
    )
  if (
    !Number.isInteger(c.previewEveryFrames) ||
    c.previewEveryFrames < 1 ||
    c.previewEveryFrames > 100_000
  )
    throw bad('previewEveryFrames', 'must be a whole number of frames from 1 to 100000')
  if (
    c.metricsPort !== undefined &&
    (!Number.isInteger(c.metricsPort) || c.metricsPort < 0 || c.metricsPort > 65535)
  ) {
    throw bad('metricsPort', 'must be a TCP port')
  }
  try {
    parseWebAddress(c.web)
  } catch (err) {
    throw bad('web', (err as Error).message.replace(/^web /, ''))
  }
  if (typeof c.testEngine !== 'boolean') throw bad('testEngine', 'must be true or false')
  validateNodeRules(c, bad)
  return c
}

/** The node's own rules in the config (their syntax and bounds are src/node/'s). */
function validateNodeRules(
  c: DaemonConfig,
  bad: (field: string, why: string) => InvalidInputError,
): void {
  if (c.schedule !== undefined) {
    try {
      c.schedule = parseSchedule(c.schedule).text
    } catch (err) {
      throw bad('schedule', (err as Error).message)
    }
  }
  const bounded = (f: keyof DaemonConfig, [min, max]: readonly [number, number], what: string) => {
    const v = c[f]
    if (v !== undefined && (!Number.isInteger(v) || (v as number) < min || (v as number) > max))
      throw bad(f, `must be ${what} (${min} to ${max})`)
  }
  bounded('idleOnlyMinutes', LIMIT_BOUNDS.idleMinutes, 'a whole number of minutes')
  bounded('idleLoadPercent', LIMIT_BOUNDS.loadPercent, 'a whole percentage')
  bounded('renderThreads', LIMIT_BOUNDS.threads, 'a whole number of threads')
  bounded('renderNice', LIMIT_BOUNDS.nice, 'a niceness')
  bounded('renderMemoryMiB', LIMIT_BOUNDS.memoryMiB, 'a whole number of MiB')
  if (
    !Array.isArray(c.submitTags) ||
    c.submitTags.length > 32 ||
    !c.submitTags.every((t) => typeof t === 'string' && /^[\w.-]{1,32}$/.test(t))
  )
    throw bad('submitTags', 'must be a list of short words (like tags)')
}
