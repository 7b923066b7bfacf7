/**
 * The composition root: builds every part of the daemon from its configuration and
 * wires them together. Nothing else in src/ knows about more than its own neighbours.
 *
 * Invariants:
 *  - one daemon per data directory: LevelDB's lock and the control socket both refuse
 *    a second one with a clear error;
 *  - start-up order: storage → identity → admission gate → libp2p → protocols → API;
 *    shutdown is the reverse, and a stop always closes libp2p and LevelDB and removes
 *    the socket, whatever failed before;
 *  - no rmesh protocol but the auth handshake (and invite redemption) serves a peer that
 *    is not admitted: sync, blocks, presence and gossip all check admission;
 *  - a daemon with no token starts, says how to get admitted, and serves nobody.
 */
import { mkdir, readFile, statfs } from 'node:fs/promises'
import { availableParallelism, loadavg } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { createEventBus } from './api/events.js'
import { type ApiHttpServer, createApiHttpServer } from './api/http.js'
import { SOCKET_FILE } from './api/types.js'
import { peerInfoOf } from './api/views.js'
import { ADMIT_KIND, createAdmission, REVOKE_KIND } from './auth/admission.js'
import type { DaemonCounters, DaemonView } from './api/daemon-view.js'
import { createAdmissionState, createConnectionGater, createRelayGate } from './auth/gater.js'
import { loadOrCreateNodeKey, peerIdOf, signerFor } from './auth/identity.js'
import { createInviteServer, type InviteServer } from './auth/invite.js'
import { createTokenIssuer } from './auth/issuer.js'
import { loadMeshOwner, type MeshOwner } from './auth/mesh.js'
import { decodeToken, parseTokenString } from './auth/token.js'
import { createTokenStore, type TokenStore } from './auth/token-store.js'
import { createBlockStore } from './blobs/block-store.js'
import { createBlockExchange } from './blobs/exchange.js'
import { createProviderIndex, type ProviderIndex } from './blobs/providers.js'
import type { DaemonConfig } from './config.js'
import { makePreview, THUMB_MAX_PX } from './engines/thumbnail.js'
import { createEngineRegistry } from './engines/registry.js'
import { capabilityFor as jobCapabilityFor } from './jobs/entries.js'
import { createLeaseManager, type LeaseManager } from './jobs/lease-manager.js'
import { createLogManager } from './log/log.js'
import { createLevelLogStore } from './log/store.js'
import { type LogId, MESH_LOG, type PeerIdString } from './log/types.js'
import { createDialer } from './net/dialer.js'
import { createLinkMonitor } from './net/link-monitor.js'
import { createHost } from './net/host.js'
import { createPeerBook } from './net/peerbook.js'
import { testPartitionFromEnv } from './net/test-partition.js'
import { type Activity, createPresence } from './net/presence.js'
import { createJobService } from './service/jobs.js'
import { createLiveLogs } from './service/live-logs.js'
import { createFileIdleProbe, createSystemIdleProbe } from './node/idle.js'
import { createNodeRules } from './node/rules.js'
import { createLogSync, type LogSync } from './sync/sync.js'
import { withDeadline } from './util/abort.js'
import { type Clock, systemClock } from './util/clock.js'
import { describeError, RmeshError } from './util/errors.js'
import { createLogger, type Logger } from './util/logger.js'
import { RMESH_VERSION } from './version.js'
import { createWorker, SCENE_PIN_PREFIX } from './worker/runner.js'

export type { DaemonCounters } from './api/daemon-view.js'
/** Re-exported: the mesh log's revoke kind is admission's (src/auth/admission.ts). */
export { REVOKE_KIND }
export const DB_DIR = 'db'
export const LOG_FILE = 'daemon.log'
export const NODE_TOKEN_FILE = 'node.token'
/** How often the data disk's free space is checked (the low-disk pause reacts this fast). */
export const DISK_CHECK_MS = 5_000

export class DataDirLockedError extends RmeshError {
  constructor(dir: string) {
    super(
      'ERR_DAEMON_RUNNING',
      `another rmesh daemon is already using ${dir}; stop it first (or start this one with another --dir)`,
    )
    this.name = 'DataDirLockedError'
  }
}

/** The running daemon: the control API's view of it, and what only the daemon needs. */
export interface Daemon extends DaemonView {
  readonly socketPath: string
  readonly logger: Logger
  readonly db: Level<string, unknown>
  readonly owner: MeshOwner | undefined
  readonly sync: LogSync
  readonly providers: ProviderIndex
  readonly invites: InviteServer
  stop(): Promise<void>
}

function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1)
}

/** Mesh-log kinds need these capabilities; job-log kinds are the jobs module's. */
export function capabilityFor(log: string, kind: string): 'submit' | 'render' | 'admin' | null {
  if (log === MESH_LOG) {
    if (kind === REVOKE_KIND) return 'admin'
    if (kind === ADMIT_KIND) return 'render'
    return null
  }
  return jobCapabilityFor(log, kind)
}

export interface DaemonComponents {
  clock?: Clock
  logger?: Logger
}

export async function startDaemon(
  config: DaemonConfig,
  components: DaemonComponents = {},
): Promise<Daemon> {
  const clock = components.clock ?? systemClock
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 })
  const logger =
    components.logger ??
    createLogger({ level: config.logLevel, file: join(config.dataDir, LOG_FILE) }, 'rmesh')

  const db = new Level<string, unknown>(join(config.dataDir, DB_DIR), { valueEncoding: 'json' })
  try {
    await db.open()
  } catch (err) {
    const e = err as { code?: string; cause?: { code?: string; message?: string } }
    if (
      e.cause?.code === 'LEVEL_LOCKED' ||
      e.code === 'LEVEL_LOCKED' ||
      /lock/i.test(String(e.cause?.message ?? ''))
    )
      throw new DataDirLockedError(config.dataDir)
    throw new RmeshError(
      'ERR_STORE_OPEN',
      `cannot open the database in ${config.dataDir}: ${describeError(err)}`,
      { cause: err },
    )
  }

  const cleanups: (() => Promise<void> | void)[] = [() => db.close()]
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn()
      } catch (err) {
        logger.warn('error while stopping', { err: describeError(err) })
      }
    }
    cleanups.length = 0
  }

  try {
    const privateKey = await loadOrCreateNodeKey(config.dataDir)
    const peerId = peerIdOf(privateKey)
    const events = createEventBus(() => clock.wall())
    const counters: DaemonCounters = {
      rejectedMessages: 0,
      framesRendered: 0,
      renderSeconds: [],
      gossipByTopic: new Map(),
      entriesByKind: new Map(),
    }
    const activity = new Map<string, Activity>()

    // ----- admission: the token store and the gate exist before libp2p -------------
    const tokens = await createTokenStore(db)
    await importNodeTokenFile(config.dataDir, tokens, logger)
    let owner: MeshOwner | undefined
    try {
      owner = await loadMeshOwner(config.dataDir)
    } catch {
      owner = undefined
    }
    const admissionState = createAdmissionState({ tokens, clock })
    // Test only (fault tests' partitions); undefined unless RMESH_TEST_BLOCK_PEERS_FILE is set.
    const testPartition = testPartitionFromEnv()
    const relayGate = createRelayGate()
    const gater = createConnectionGater(admissionState, relayGate)
    const libp2p = await createHost({
      privateKey,
      listen: config.listen,
      bootstrap: config.bootstrap,
      mdns: config.mdns,
      relayService: config.relayService,
      relayReservations: config.relays,
      announce: config.announce,
      upnp: config.upnp,
      connectionGater: testPartition ? testPartition.wrap(gater) : gater,
      start: false,
    })
    cleanups.push(() => libp2p.stop())
    if (testPartition) {
      testPartition.start(libp2p)
      cleanups.push(() => testPartition.stop())
    }
    const admission = createAdmission(
      { libp2p, tokens, state: admissionState, clock, logger },
      { meshId: owner?.meshId, capabilityFor },
    )
    const issuer = createTokenIssuer({ nodeKey: privateKey, tokens, clock, owner })
    const invites = createInviteServer({
      libp2p,
      nodeKey: privateKey,
      admission,
      issuer,
      tokens,
      clock,
      logger,
    })
    const isAdmitted = (p: string) => admission.isAdmitted(p)
    // A relay serves members only: a peer whose handshake is still in flight gets 3 s.
    relayGate.serving = () => libp2p.services.reachability.servesRelay()
    relayGate.admitted = (p) =>
      withDeadline(3_000, undefined, (signal) => admission.waitAdmitted(p, signal)).then(
        () => true,
        () => false,
      )
    // The auth handler exists before the host listens: a peer that connects in the first
    // milliseconds is admitted at once, not refused "could not negotiate" and retried.
    await admission.start()
    await libp2p.start()

    // ----- the log and its sync ------------------------------------------------------
    const log = createLogManager({
      store: createLevelLogStore(db),
      signer: signerFor(privateKey),
      clock,
      logger: logger.child('log'),
      authorize: (entry) => admission.authorizeEntry(entry),
      tokenId: () => admission.token?.id ?? '',
    })
    const sync = createLogSync(
      { libp2p, log, logger: logger.child('sync'), clock, isAdmitted },
      { intervalMs: config.syncIntervalMs },
    )

    // ----- files --------------------------------------------------------------------
    const blocks = createBlockStore({
      root: join(config.dataDir, 'blocks'),
      logger: logger.child('blocks'),
      clock,
    })
    const exchange = createBlockExchange(
      { libp2p, store: blocks, logger: logger.child('exchange'), isAdmitted, clock },
      { relayedUploadBytesPerSec: config.relayedUploadMiBps * 1024 * 1024 },
    )
    const providers = createProviderIndex({
      libp2p,
      logger: logger.child('providers'),
      store: blocks,
      isAdmitted,
      providedOnStart: () => blocks.pinnedByOwners(SCENE_PIN_PREFIX),
      clock,
    })

    // ----- engines, the worker and the leases ----------------------------------------
    let onEnginesChanged = () => {}
    const engines = await createEngineRegistry({
      config: {
        blender: {
          paths: config.blenderPaths,
          releasesDir: config.blenderReleasesDir,
          recordedDevices:
            config.testBlenderDevices === undefined
              ? undefined
              : JSON.parse(config.testBlenderDevices),
          limits: () => rules.limits(),
        },
        engines: config.engines.length ? config.engines : undefined,
        test: config.testEngine,
      },
      logger,
      // Presence is made later; a detection that ends before it has nothing to tell.
      onChange: () => onEnginesChanged(),
    })
    cleanups.push(() => engines.close())

    // maxQueuedJobs per submitter, from the tokens published in the mesh log. Of several
    // tokens of one peer the one expiring last counts, so every node picks the same.
    const quotas = new Map<string, { max: number | undefined; exp: number; id: string }>()
    const learnQuota = (bytes: Uint8Array) => {
      try {
        const t = decodeToken(bytes)
        const prev = quotas.get(t.aud)
        if (prev && (prev.exp > t.exp || (prev.exp === t.exp && prev.id >= t.id))) return
        quotas.set(t.aud, { max: t.lim.maxQueuedJobs, exp: t.exp, id: t.id })
      } catch {}
    }
    let leases: LeaseManager | undefined
    // Free space on the data disk, refreshed every few seconds: below minFreeDiskMiB the
    // node advertises no slots (so it claims nothing new) until space is freed, instead of
    // failing chunk after chunk with ERR_DISK_FULL.
    let freeDiskBytes = 0
    let diskLow = false
    let onDiskLowChanged = () => {}
    const refreshDisk = async () => {
      try {
        const st = await statfs(config.dataDir)
        freeDiskBytes = st.bavail * st.bsize
      } catch {
        return
      }
      const low = config.minFreeDiskMiB > 0 && freeDiskBytes < config.minFreeDiskMiB * 1024 * 1024
      if (low === diskLow) return
      diskLow = low
      if (low)
        logger.warn('data disk nearly full: taking no new renders until space is freed', {
          freeMiB: Math.floor(freeDiskBytes / 1024 / 1024),
          minFreeDiskMiB: config.minFreeDiskMiB,
          dataDir: config.dataDir,
        })
      else
        logger.info('data disk has room again: taking renders', {
          freeMiB: Math.floor(freeDiskBytes / 1024 / 1024),
        })
      onDiskLowChanged()
    }
    await refreshDisk()
    // The node's own rules (pause, schedule, idle-only): not active, it offers no slot, and
    // what it holds goes back at once through release entries.
    let onRulesChanged = () => {}
    const rules = await createNodeRules(
      {
        dataDir: config.dataDir,
        clock,
        logger: logger.child('rules'),
        idle: process.env.RMESH_TEST_IDLE_FILE
          ? createFileIdleProbe(process.env.RMESH_TEST_IDLE_FILE)
          : createSystemIdleProbe(),
        // Test only: the real-daemon schedule test moves this node's wall clock to near a window.
        wall: process.env.RMESH_TEST_RULES_CLOCK_OFFSET_MS
          ? () => clock.wall() + Number(process.env.RMESH_TEST_RULES_CLOCK_OFFSET_MS)
          : undefined,
        busy: () => (leases?.heldLeases().length ?? 0) > 0,
        handBack: async (o) => {
          await leases?.handBack(o)
        },
        onChange: () => onRulesChanged(),
      },
      {
        schedule: config.schedule,
        idleOnlyMinutes: config.idleOnlyMinutes,
        idleLoadPercent: config.idleLoadPercent,
        limits: {
          threads: config.renderThreads,
          nice: config.renderNice,
          memoryMiB: config.renderMemoryMiB,
        },
      },
    )
    /** A passing reason to take no new renders (presence tells peers; it ends by itself). */
    const pausedFor = (): string | undefined =>
      diskLow
        ? `less than ${config.minFreeDiskMiB} MiB free on the data disk (${config.dataDir}): free space, or lower --min-free-disk`
        : rules.reason()
    /** Why this node takes no renders now (undefined when it does). */
    const renderPaused = (): string | undefined => {
      if (!admission.token?.cap.includes('render')) return 'no render capability in its token'
      if (config.slots === 0) return 'slots set to 0'
      return pausedFor()
    }
    /** Render slots offered: none without the render capability or while paused. */
    const renderSlots = () => (renderPaused() ? 0 : config.slots)
    const worker = createWorker({
      blocks,
      exchange,
      providers,
      engines: {
        get: (name) => (engines.has(name) ? engines.get(name) : undefined),
        versions: () => engines.describe(),
        devices: () => engines.devices(),
      },
      jobState: (jobId) => leases?.job(jobId),
      workRoot: join(config.dataDir, 'work'),
      logger: logger.child('worker'),
      onLogLine: (task, frame, line) =>
        events.publish({ type: 'log-line', jobId: task.jobId, frame, node: peerId, line }),
      makeThumb: (input, out, format, signal) =>
        makePreview(input, out, format, { maxPx: THUMB_MAX_PX, signal }),
    })
    await worker.clearScratch()

    // os.cpus() reads /proc for every CPU on each call; the count does not change.
    const cpuCount = Math.max(1, availableParallelism())
    const presence = createPresence(
      {
        libp2p,
        clock,
        logger: logger.child('presence'),
        isAdmitted,
        isMember: (p) => admission.isMember(p),
        self: () => ({
          name: config.name,
          version: RMESH_VERSION,
          engines: engines.describe(),
          slots: renderSlots(),
          ...(pausedFor() ? { paused: pausedFor() } : {}),
          tags: config.tags,
          ...(engines.videoFeatures() ? { video: engines.videoFeatures() } : {}),
          ...((d) => (d.length ? { devices: d } : {}))(engines.devices()),
          ...((r) => (r ? { rules: r } : {}))(rules.presence()),
          freeDiskBytes,
          load: Math.round((loadavg()[0] / cpuCount) * 100) / 100,
          doing: [...activity.values()],
          leases: (leases?.heldLeases() ?? []).map((l) => ({
            job: l.jobId,
            chunk: l.chunk,
            attempt: l.attempt,
          })),
          meshId: admission.meshId,
        }),
        busyIntervalMs: () => leases?.heartbeatPaceMs(),
      },
      { intervalMs: config.presenceIntervalMs, restIntervalMs: config.presenceRestIntervalMs },
    )

    // A render starting or ending reaches the peers at the next heartbeat, or sooner when
    // this node turns busy or idle: back-to-back chunks send nothing extra, because every
    // presence message costs every node of the mesh CPU (at 1-s chunks, two per chunk
    // were the largest share of the gossip on an 8-node mesh; see bench/leases.ts).
    let nudge: ReturnType<Clock['setTimeout']> | undefined
    let publishedBusy = false
    const activityChanged = () => {
      if (nudge) return
      nudge = clock.setTimeout(() => {
        nudge = undefined
        if (activity.size > 0 === publishedBusy) return
        publishedBusy = activity.size > 0
        presence.publishNow()
      }, 100)
    }
    cleanups.push(() => {
      if (nudge) clock.clearTimeout(nudge)
    })

    leases = createLeaseManager(
      {
        self: peerId,
        clock,
        log: {
          append: (l, kind, body) => log.append(l, kind, body),
          entries: (l) => log.entries(l),
          jobLogs: async () => (await log.logs()).filter((l) => l.startsWith('job/')),
          onEntry: (listener) => log.onEntry((e) => e.log.startsWith('job/') && listener(e)),
        },
        liveness: {
          lastHeard: (p) => presence.lastHeard(p),
          renders: (p) => (presence.peers().get(p)?.presence.slots ?? 1) > 0,
          pace: (p) => presence.paceOf(p),
        },
        runner: {
          prepare: (task) => worker.prepare(task),
          start: async (task, signal, onProgress, onRendered) => {
            const key = `${task.jobId}/${task.chunk}`
            activity.set(key, { job: task.jobId, chunk: task.chunk, frame: task.frames[0] })
            activityChanged()
            const started = clock.monotonic()
            try {
              const result = await worker.start(
                task,
                signal,
                (p) => {
                  activity.set(key, {
                    job: task.jobId,
                    chunk: task.chunk,
                    frame: p.frame ?? task.frames[0],
                    progress: p.fraction,
                  })
                  onProgress?.(p)
                },
                () => {
                  // Storing outputs is not rendering: the slot shows free as the next chunk starts.
                  activity.delete(key)
                  onRendered?.()
                },
              )
              counters.framesRendered += task.kind === 'frames' ? task.frames.length : 0
              counters.renderSeconds.push((clock.monotonic() - started) / 1000)
              if (counters.renderSeconds.length > 10_000) counters.renderSeconds.splice(0, 5_000)
              return result
            } finally {
              activity.delete(key)
              activityChanged()
            }
          },
        },
        capabilities: () => ({
          engines: engines.describe(),
          slots: renderSlots(),
          tags: config.tags,
          video: engines.videoFeatures(),
          devices: engines.devices(),
        }),
        logger,
      },
      { leaseTimeoutMs: config.leaseTimeoutMs, quotaOf: (submitter) => quotas.get(submitter)?.max },
    )

    const peerBook = createPeerBook(db)
    const dialer = createDialer(
      { libp2p, peerBook, clock, logger: logger.child('dialer') },
      { bootstrap: config.bootstrap },
    )

    const jobs = createJobService({
      self: peerId,
      db,
      log,
      leases,
      blocks,
      exchange,
      providers,
      presence,
      engines: {
        get: (name) => (engines.has(name) ? engines.get(name) : undefined),
        names: () => engines.describe().map((e) => e.name),
      },
      worker,
      events,
      clock,
      logger: logger.child('jobs'),
      canSubmit: () => admission.token?.cap.includes('submit') ?? false,
      quotaOf: (peer) => quotas.get(peer)?.max,
      selfEngines: () => engines.describe(),
      selfSlots: renderSlots,
      selfPaused: pausedFor,
      selfTags: () => config.tags,
      selfVideo: () => engines.videoFeatures(),
      selfDevices: () => engines.devices(),
      selfName: () => config.name,
      noEligibleGraceMs: config.noEligibleGraceMs,
      // Presence calls a peer gone after 3 silent intervals: judge no mesh before hearing it.
      noEligibleWarmupMs: 3 * config.presenceIntervalMs,
      outputGraceMs: config.outputGraceMs ?? 2 * config.leaseTimeoutMs,
      previewVideo:
        config.previewEveryMs > 0
          ? {
              dir: join(config.dataDir, 'previews'),
              everyMs: config.previewEveryMs,
              everyFrames: config.previewEveryFrames,
            }
          : undefined,
      // Test only: lets a fault test kill a renderer before its outputs are pulled.
      collectDelayMs: Number(process.env.RMESH_TEST_COLLECT_DELAY_MS) || undefined,
    })

    const liveLogs = createLiveLogs({
      libp2p,
      events,
      logger: logger.child('live-logs'),
      isAdmitted,
    })

    const announceOwnToken = async () => {
      const token = admission.token
      if (!token) return
      const known = (await log.entries(MESH_LOG)).some(
        (e) => e.kind === ADMIT_KIND && e.author === peerId && e.tok === token.id,
      )
      if (!known) await log.append(MESH_LOG as LogId, ADMIT_KIND, { token: token.bytes })
    }

    const adoptToken = async (tokenText: string | Uint8Array) => {
      const bytes =
        typeof tokenText === 'string' ? parseTokenString(tokenText.trim()).bytes : tokenText
      await tokens.addOwnToken(bytes)
      await admission.reloadToken()
      await announceOwnToken()
      await log.retryPending()
      presence.publishNow()
      events.publish({ type: 'tokens-changed' })
    }

    const daemon: Daemon = {
      peerId,
      config,
      libp2p,
      socketPath: join(config.dataDir, SOCKET_FILE),
      events,
      logger,
      startedAt: clock.wall(),
      presence,
      dialer,
      db,
      privateKey,
      clock,
      admission,
      tokens,
      issuer,
      owner,
      log,
      sync,
      blocks,
      exchange,
      providers,
      engines,
      leases,
      jobs,
      invites,
      liveLogs,
      counters,
      activity,
      rules,
      renderPaused,
      freeDiskBytes: () => freeDiskBytes,
      adoptToken,
      stop: async () => {
        logger.info('stopping')
        await cleanup()
      },
    }

    // ----- wiring between the parts ---------------------------------------------------
    onDiskLowChanged = () => presence.publishNow()
    onEnginesChanged = () => presence.publishNow()
    onRulesChanged = () => {
      presence.publishNow()
      events.publish({ type: 'node-rules', rules: rules.view() })
    }
    presence.onPresence((p, source) => {
      if (!libp2p.getConnections().some((c) => c.remotePeer.toString() === p.peerId))
        dialer.discovered(p.peerId, p.addrs)
      void peerBook.remember(p.peerId, p.addrs, clock.wall()).catch(() => {})
      leases?.noteHeartbeat(
        p.peerId as PeerIdString,
        p.leases.map((l) => ({ jobId: l.job, chunk: l.chunk, attempt: l.attempt })),
      )
      const info = peerInfoOf(daemon, p.peerId)
      if (info) events.publish({ type: source === 'direct' ? 'peer-up' : 'presence', peer: info })
    })
    presence.onGone((id) => events.publish({ type: 'peer-down', peerId: id }))
    // Peer exchange: a member heard through others is dialed (by the smaller id of the pair).
    presence.onIntroduced((id, addrs) => dialer.discovered(id, addrs))
    presence.onSilent((id) => void dialer.reconnect(id))
    // A machine that moved (laptop from home to the office) and the peers it left behind
    // find their dead links in seconds; the new addresses go out with the next heartbeat.
    const linkMonitor = createLinkMonitor(
      { libp2p, clock, logger: logger.child('links') },
      { onAddressesChanged: () => presence.publishNow() },
    )
    admission.onAdmitted((peer) => {
      void presence.exchange(peer)
      void sync
        .syncWith(peer)
        .catch((err) => logger.debug('sync on admit failed', { peer, err: describeError(err) }))
    })
    admission.onRefused((e) => {
      counters.rejectedMessages++
      logger.warn('peer refused', { peer: e.peerId, code: e.code, why: e.message })
    })
    // What each chunk costs a node is counted in messages and entries (bench/scale.ts).
    log.onEntry((entry, origin) => bump(counters.entriesByKind, `${entry.kind}|${origin}`))
    libp2p.services.pubsub.addEventListener('gossipsub:message', (evt) =>
      bump(counters.gossipByTopic, evt.detail.msg.topic),
    )
    // Tokens and revocations travel in the mesh log.
    log.onEntry((entry) => {
      if (entry.log !== MESH_LOG) return
      if (entry.kind === ADMIT_KIND) {
        const t = (entry.body as { token?: Uint8Array }).token
        if (t instanceof Uint8Array) {
          learnQuota(t)
          void admission
            .learnToken(t)
            .then(() => log.retryPending())
            .catch(() => {})
        }
      } else if (entry.kind === REVOKE_KIND) {
        const target = (entry.body as { target?: unknown }).target
        if (typeof target === 'string' && target.length < 200)
          void admission.revoke(target).catch(() => {})
      }
    })

    for (const e of await log.entries(MESH_LOG)) {
      const t = e.kind === ADMIT_KIND ? (e.body as { token?: unknown }).token : undefined
      if (t instanceof Uint8Array) learnQuota(t)
    }
    // In dependency order; each stops in reverse on shutdown.
    const services: { start(): Promise<void>; stop(): Promise<void> | void }[] = [
      admission,
      invites,
      presence,
      sync,
      exchange,
      providers,
      jobs,
      liveLogs,
    ]
    services.push(
      { start: () => leases.start(), stop: () => leases.stop({ release: true }) },
      { start: () => rules.start(), stop: () => rules.stop() },
      dialer,
      { start: async () => linkMonitor.start(), stop: () => linkMonitor.stop() },
    )
    for (const service of services) {
      await service.start()
      cleanups.push(() => service.stop())
    }
    await announceOwnToken().catch((err) =>
      logger.warn('could not announce this node token', { err: describeError(err) }),
    )

    const api: ApiHttpServer = createApiHttpServer(logger.child('api'))
    const { registerRoutes } = await import('./api/routes.js')
    registerRoutes(api, daemon)
    await api.listen(daemon.socketPath)
    cleanups.push(() => api.close())
    const { startWebFor } = await import('./web/control.js')
    const web = await startWebFor(api, {
      web: config.web,
      dataDir: config.dataDir,
      logger: logger.child('web'),
    })
    if (web) cleanups.push(() => web.close())

    if (config.metricsPort !== undefined) {
      // Loopback only: a scraper on the same machine, or an SSH tunnel, reads it.
      const { createServer } = await import('node:http')
      const { renderMetrics } = await import('./api/metrics.js')
      const metricsServer = createServer((req, res) => {
        if (req.url !== '/metrics') {
          res.writeHead(404).end()
          return
        }
        renderMetrics(daemon).then(
          (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(text),
          () => res.writeHead(500).end(),
        )
      })
      await new Promise<void>((resolve, reject) => {
        metricsServer.once('error', reject)
        metricsServer.listen(config.metricsPort, '127.0.0.1', () => resolve())
      })
      cleanups.push(() => new Promise<void>((r) => metricsServer.close(() => r())))
    }

    // Once settled, say it in the log when nobody at all can reach this node.
    const reachTimer = setTimeout(() => {
      const warning = libp2p.services.reachability.state().warning
      if (warning && admission.token && libp2p.getConnections().length === 0) logger.warn(warning)
    }, 30_000)
    reachTimer.unref()
    cleanups.push(() => clearTimeout(reachTimer))
    const diskTimer = setInterval(() => void refreshDisk(), DISK_CHECK_MS)
    diskTimer.unref()
    cleanups.push(() => clearInterval(diskTimer))

    logger.info('daemon started', {
      peerId,
      addresses: libp2p.getMultiaddrs().map(String),
      socket: daemon.socketPath,
      admitted: !!admission.token,
    })
    return daemon
  } catch (err) {
    await cleanup()
    throw err
  }
}

/** `rmesh init` and `rmesh join` (without a running daemon) leave the token in a file. */
async function importNodeTokenFile(dir: string, tokens: TokenStore, logger: Logger): Promise<void> {
  let text: string
  try {
    text = (await readFile(join(dir, NODE_TOKEN_FILE), 'utf8')).trim()
  } catch {
    return
  }
  if (!text) return
  try {
    await tokens.addOwnToken(parseTokenString(text).bytes)
  } catch (err) {
    logger.warn(`ignoring ${NODE_TOKEN_FILE}: it does not hold a valid token`, {
      err: describeError(err),
    })
  }
}
