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
import { mkdir } from 'node:fs/promises'
import { availableParallelism, loadavg } from 'node:os'
import { join } from 'node:path'
import type { Level } from 'level'
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
import { parseTokenString } from './auth/token.js'
import { createTokenStore } from './auth/token-store.js'
import { createBlockStore } from './blobs/block-store.js'
import { createBlockExchange } from './blobs/exchange.js'
import { createProviderIndex, type ProviderIndex } from './blobs/providers.js'
import type { DaemonConfig } from './config.js'
import { makePreview, THUMB_MAX_PX } from './engines/thumbnail.js'
import { createEngineRegistry } from './engines/registry.js'
import { capabilityFor as jobCapabilityFor } from './jobs/entries.js'
import { createLeaseManager, type LeaseManager } from './jobs/lease-manager.js'
import { createLogManager } from './log/log.js'
import { DataDirLockedError, DB_DIR, openDatabase } from './log/database.js'
import { createLevelLogStore } from './log/store.js'
import { type LogId, MESH_LOG, type PeerIdString } from './log/types.js'
import { importNodeTokenFile, NODE_TOKEN_FILE } from './auth/own-token.js'
import { followMeshLog } from './auth/mesh-log.js'
import { createQuotaBook } from './auth/quotas.js'
import { createDialer } from './net/dialer.js'
import { createLinkMonitor } from './net/link-monitor.js'
import { watchGossipDuplicates } from './net/gossip-copies.js'
import { createHost } from './net/host.js'
import { createPeerBook } from './net/peerbook.js'
import { testPartitionFromEnv } from './net/test-partition.js'
import { type Activity, createPresence } from './net/presence.js'
import { createJobService } from './service/jobs.js'
import { createLiveLogs } from './service/live-logs.js'
import { createDiskWatch, DISK_CHECK_MS } from './node/disk-watch.js'
import { createFileIdleProbe, createSystemIdleProbe } from './node/idle.js'
import { createMemoryMode } from './node/memory-mode.js'
import { createNodeRules } from './node/rules.js'
import { createLogSync, type LogSync } from './sync/sync.js'
import { withDeadline } from './util/abort.js'
import { type Clock, systemClock } from './util/clock.js'
import { describeError } from './util/errors.js'
import { createLogger, type Logger } from './util/logger.js'
import { RMESH_VERSION } from './version.js'
import { createWorker, FILES_PIN_PREFIX, SCENE_PIN_PREFIX } from './worker/runner.js'

export type { DaemonCounters } from './api/daemon-view.js'
/** Re-exported: the mesh log's revoke kind is admission's (src/auth/admission.ts). */
export { REVOKE_KIND }
/** Re-exported: the database's own (src/log/database.ts). */
export { DataDirLockedError, DB_DIR }
export const LOG_FILE = 'daemon.log'
/** Re-exported: where init and join leave the token (src/auth/own-token.ts). */
export { NODE_TOKEN_FILE }
/** Re-exported: the disk watch's own (src/node/disk-watch.ts). */
export { DISK_CHECK_MS }

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

  const db = await openDatabase(config.dataDir)

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
      gossipDuplicatesByTopic: new Map(),
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
      // Gossip re-announces what nodes fetch from many holders: scenes and their files.
      announcedPeriodically: async () => [
        ...(await blocks.pinnedByOwners(SCENE_PIN_PREFIX)),
        ...(await blocks.pinnedByOwners(FILES_PIN_PREFIX)),
      ],
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

    // maxQueuedJobs per submitter, from the tokens published in the mesh log.
    const quotas = createQuotaBook()
    let leases: LeaseManager | undefined
    // Below minFreeDiskMiB on the data disk the node takes no new renders (node/disk-watch.ts).
    let onDiskLowChanged = () => {}
    const disk = createDiskWatch({
      dataDir: config.dataDir,
      minFreeMiB: config.minFreeDiskMiB,
      logger,
      onChange: () => onDiskLowChanged(),
    })
    await disk.refresh()
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
    const pausedFor = (): string | undefined => disk.reason() ?? rules.reason()
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
          freeDiskBytes: disk.freeBytes(),
          load: Math.round((loadavg()[0] / cpuCount) * 100) / 100,
          doing: [...activity.values()],
          leases: (leases?.heldLeases() ?? []).map((l) => ({
            job: l.jobId,
            chunk: l.chunk,
            attempt: l.attempt,
          })),
          meshId: admission.meshId,
        }),
        busyPace: () => leases?.heartbeatPace(),
        lastPulseAt: () => sync.lastPublishedAt(),
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

    const memoryMode = createMemoryMode({ logger })
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
      {
        leaseTimeoutMs: config.leaseTimeoutMs,
        heartbeatIntervalMs: config.presenceIntervalMs,
        quotaOf: (submitter) => quotas.maxQueuedJobs(submitter),
        onRest: (rest) => memoryMode.atRest(rest),
      },
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
      quotaOf: (peer) => quotas.maxQueuedJobs(peer),
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
      freeDiskBytes: () => disk.freeBytes(),
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
      // Every heartbeat of every peer passes here: its view is built only for a listener.
      const info = events.subscribers() > 0 ? peerInfoOf(daemon, p.peerId) : undefined
      if (info) events.publish({ type: source === 'direct' ? 'peer-up' : 'presence', peer: info })
    })
    // A peer's own log gossip message is its pulse: a busy node skips the heartbeat that
    // would follow it (one presence message less per chunk; protocols/presence.md).
    sync.onPublisherHeard((id) => {
      presence.noteHeard(id)
      leases?.notePublished(id as PeerIdString)
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
    if (
      !watchGossipDuplicates(libp2p.services.pubsub, (topic) =>
        bump(counters.gossipDuplicatesByTopic, topic),
      )
    )
      logger.debug('gossip duplicates are not counted: this gossipsub has no score hook')
    // Tokens and revocations travel in the mesh log (auth/mesh-log.ts).
    await followMeshLog({ log, admission, quotas })
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
      const { startMetricsServer } = await import('./api/metrics-server.js')
      const metrics = await startMetricsServer(daemon, config.metricsPort)
      cleanups.push(() => metrics.close())
    }

    // Once settled, say it in the log when nobody at all can reach this node.
    const reachTimer = setTimeout(() => {
      const warning = libp2p.services.reachability.state().warning
      if (warning && admission.token && libp2p.getConnections().length === 0) logger.warn(warning)
    }, 30_000)
    reachTimer.unref()
    cleanups.push(() => clearTimeout(reachTimer))
    disk.start()
    cleanups.push(() => disk.stop())

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
