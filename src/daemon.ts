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
 *  - no other rmesh protocol is served to a peer before it is admitted (the admission
 *    gate wraps every handler).
 */
import { mkdir, statfs } from 'node:fs/promises'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import type { PrivateKey } from '@libp2p/interface'
import { Level } from 'level'
import { type ApiHttpServer, createApiHttpServer } from './api/http.js'
import { createEventBus, type EventBus } from './api/events.js'
import { SOCKET_FILE } from './api/types.js'
import { peerInfoOf } from './api/views.js'
import { loadOrCreateNodeKey, peerIdOf } from './auth/identity.js'
import type { DaemonConfig } from './config.js'
import { createDialer, type Dialer } from './net/dialer.js'
import { createHost, type RmeshLibp2p } from './net/host.js'
import { createPeerBook } from './net/peerbook.js'
import { createPresence, type PresenceService } from './net/presence.js'
import { systemClock, type Clock } from './util/clock.js'
import { describeError, RmeshError } from './util/errors.js'
import { createLogger, type Logger } from './util/logger.js'
import { RMESH_VERSION } from './version.js'

export const DB_DIR = 'db'
export const LOG_FILE = 'daemon.log'

export class DataDirLockedError extends RmeshError {
  constructor(dir: string) {
    super('ERR_DAEMON_RUNNING', `another rmesh daemon is already using ${dir}; stop it first (or start this one with another --dir)`)
    this.name = 'DataDirLockedError'
  }
}

export interface Daemon {
  readonly peerId: string
  readonly config: DaemonConfig
  readonly libp2p: RmeshLibp2p
  readonly socketPath: string
  readonly events: EventBus
  readonly logger: Logger
  readonly startedAt: number
  readonly presence: PresenceService
  readonly dialer: Dialer
  readonly db: Level<string, unknown>
  readonly privateKey: PrivateKey
  readonly clock: Clock
  stop(): Promise<void>
}

export interface DaemonComponents {
  clock?: Clock
  logger?: Logger
}

export async function startDaemon(config: DaemonConfig, components: DaemonComponents = {}): Promise<Daemon> {
  const clock = components.clock ?? systemClock
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 })
  const logger = components.logger ?? createLogger({ level: config.logLevel, file: join(config.dataDir, LOG_FILE) }, 'rmesh')

  const db = new Level<string, unknown>(join(config.dataDir, DB_DIR), { valueEncoding: 'json' })
  try {
    await db.open()
  } catch (err) {
    const code = (err as { code?: string; cause?: { code?: string } }).cause?.code ?? (err as { code?: string }).code
    if (code === 'LEVEL_LOCKED' || /lock/i.test(String((err as Error).cause ?? ''))) throw new DataDirLockedError(config.dataDir)
    throw new RmeshError('ERR_STORE_OPEN', `cannot open the database in ${config.dataDir}: ${describeError(err)}`, { cause: err })
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
    const api: ApiHttpServer = createApiHttpServer(logger.child('api'))
    const socketPath = join(config.dataDir, SOCKET_FILE)

    const libp2p = await createHost({
      privateKey,
      listen: config.listen,
      bootstrap: config.bootstrap,
      mdns: config.mdns,
    })
    cleanups.push(() => libp2p.stop())

    const peerBook = createPeerBook(db)
    const dialer = createDialer({ libp2p, peerBook, clock, logger: logger.child('dialer') }, { bootstrap: config.bootstrap })
    cleanups.push(() => dialer.stop())

    const presence = createPresence(
      {
        libp2p,
        clock,
        logger: logger.child('presence'),
        self: () => ({
          name: config.name,
          version: RMESH_VERSION,
          engines: [],
          slots: config.slots,
          tags: config.tags,
          freeDiskBytes,
          load: Math.round((loadavg()[0] / Math.max(1, cpus().length)) * 100) / 100,
          doing: [],
          leases: [],
        }),
      },
      { intervalMs: config.presenceIntervalMs },
    )
    let freeDiskBytes = 0
    const refreshDisk = async () => {
      try {
        const st = await statfs(config.dataDir)
        freeDiskBytes = st.bavail * st.bsize
      } catch {}
    }
    await refreshDisk()

    const daemon: Daemon = {
      peerId,
      config,
      libp2p,
      socketPath,
      events,
      logger,
      startedAt: clock.wall(),
      presence,
      dialer,
      db,
      privateKey,
      clock,
      stop: async () => {
        logger.info('stopping')
        await cleanup()
      },
    }

    // Peers learnt through presence are dialed (one side of each pair), which is how
    // nodes that only bootstrapped to a common peer find each other.
    presence.onPresence((p, source) => {
      if (!libp2p.getConnections().some((c) => c.remotePeer.toString() === p.peerId)) dialer.discovered(p.peerId, p.addrs)
      events.publish({ type: source === 'direct' ? 'peer-up' : 'presence', peer: peerInfoOf(daemon, p.peerId)! })
    })
    presence.onGone((id) => events.publish({ type: 'peer-down', peerId: id }))
    libp2p.addEventListener('peer:connect', (evt) => {
      const id = evt.detail.toString()
      void presence.exchange(id)
    })

    await presence.start()
    cleanups.push(() => presence.stop())
    await dialer.start()

    const { registerRoutes } = await import('./api/routes.js')
    registerRoutes(api, daemon)
    await api.listen(socketPath)
    cleanups.push(() => api.close())

    const diskTimer = setInterval(() => void refreshDisk(), 30_000)
    diskTimer.unref()
    cleanups.push(() => clearInterval(diskTimer))

    logger.info('daemon started', { peerId, addresses: libp2p.getMultiaddrs().map(String), socket: socketPath })
    return daemon
  } catch (err) {
    await cleanup()
    throw err
  }
}


