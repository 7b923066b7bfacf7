/**
 * What the control API and the web UI see of the daemon: the parts they read and steer,
 * each typed by its own module. src/api and src/web depend on this view and on those
 * modules, never on src/daemon.ts: the composition root depends on the API, not the other
 * way round (src/daemon.ts's Daemon extends this view with what only the daemon needs).
 */
import type { PrivateKey } from '@libp2p/interface'
import type { Admission } from '../auth/admission.js'
import type { TokenIssuer } from '../auth/issuer.js'
import type { TokenStore } from '../auth/token-store.js'
import type { BlockStore } from '../blobs/block-store.js'
import type { BlockExchange } from '../blobs/exchange.js'
import type { DaemonConfig } from '../config.js'
import type { EngineRegistry } from '../engines/registry.js'
import type { LeaseManager } from '../jobs/lease-manager.js'
import type { LogManager } from '../log/log.js'
import type { Dialer } from '../net/dialer.js'
import type { RmeshLibp2p } from '../net/host.js'
import type { Activity, PresenceService } from '../net/presence.js'
import type { NodeRules } from '../node/rules.js'
import type { JobService } from '../service/jobs.js'
import type { LiveLogs } from '../service/live-logs.js'
import type { Clock } from '../util/clock.js'
import type { EventBus } from './events.js'

export interface DaemonView {
  readonly peerId: string
  readonly config: DaemonConfig
  readonly libp2p: RmeshLibp2p
  readonly events: EventBus
  readonly startedAt: number
  readonly presence: PresenceService
  readonly dialer: Dialer
  readonly privateKey: PrivateKey
  readonly clock: Clock
  readonly admission: Admission
  readonly tokens: TokenStore
  readonly issuer: TokenIssuer
  readonly log: LogManager
  readonly blocks: BlockStore
  readonly exchange: BlockExchange
  readonly engines: EngineRegistry
  readonly leases: LeaseManager
  readonly jobs: JobService
  readonly liveLogs: LiveLogs
  readonly counters: DaemonCounters
  /** What this node is rendering now (for presence and the API). */
  readonly activity: Map<string, Activity>
  /** This node's own rules: pause, schedule, idle-only, render limits (src/node/rules.ts). */
  readonly rules: NodeRules
  /** Why this node takes no new renders now (no capability, 0 slots, disk nearly full). */
  renderPaused(): string | undefined
  /** Free bytes on the data directory's disk at the last check (every DISK_CHECK_MS). */
  freeDiskBytes(): number
  /** Store this node's token (from join/renew/init) and use it at once. */
  adoptToken(tokenText: string | Uint8Array): Promise<void>
}

export interface DaemonCounters {
  rejectedMessages: number
  framesRendered: number
  renderSeconds: number[]
  /** Gossip messages delivered to this node (first copies, after validation), by topic. */
  gossipByTopic: Map<string, number>
  /** Copies of gossip messages received beyond the first (net/gossip-copies.ts), by topic. */
  gossipDuplicatesByTopic: Map<string, number>
  /** Log entries that entered this node's log, by kind and origin (append or join). */
  entriesByKind: Map<string, number>
}
