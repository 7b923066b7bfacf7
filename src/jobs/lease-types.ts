/**
 * The lease manager's public shapes: the narrow views it is given (the job logs, liveness,
 * the node's capabilities) and what it offers. Types, key helpers and job-state predicates;
 * no behaviour.
 */
import type { LogEntry, LogId, PeerIdString } from '../log/types.js'
import type { Logger } from '../util/logger.js'
import type { Clock } from '../util/clock.js'
import type { ReduceOptions, JobState } from './reducer.js'
import { isRunnable, keepsRenders } from './reducer.js'
import type { ChunkProgress, ChunkRunner, ChunkTask } from './runner.js'
import type { EngineDevices } from './devices.js'

/** The narrow view of the job logs the lease manager needs. */
export interface JobLogView {
  /** Sign and append an entry to `log`; resolves with the entry (also delivered to onEntry). */
  append(log: LogId, kind: string, body: unknown): Promise<LogEntry>
  entries(log: LogId): Promise<readonly LogEntry[]> | readonly LogEntry[]
  /** The ids of every job log this node holds (`job/<jobId>`). */
  jobLogs(): Promise<readonly LogId[]> | readonly LogId[]
  /** Every entry newly added to any job log, local appends and remote ones alike. */
  onEntry(listener: (entry: LogEntry) => void): () => void
}

export interface Liveness {
  /** Monotonic ms (this node's clock) of the last presence heartbeat from `peer`. */
  lastHeard(peer: PeerIdString): number | undefined
  /** Whether `peer` renders at all (has render slots); unknown counts as yes. */
  renders?(peer: PeerIdString): boolean
  /**
   * `peer`'s announced heartbeat pace as a multiple of this node's (presence `every` ÷ its
   * own busy interval, ≥ 1; absent or unknown: 1). Its lease timeout is stretched by it
   * (at most MAX_LEASE_STRETCH), so a node beating slowly for long chunks keeps its leases.
   */
  pace?(peer: PeerIdString): number
}

/** The heartbeat pace a node's leases want (LeaseManager.heartbeatPace). */
export interface HeartbeatPace {
  ms: number
  /**
   * Every job of its leases still has BULK_OPEN_PER_RENDERER open chunks per live renderer:
   * a dead holder's chunk reopened late costs nothing, so presence lets the pace run to
   * twice its rest interval (peers stretch the lease timeout by up to MAX_LEASE_STRETCH).
   */
  farFromEnd: boolean
}

export interface NodeCapabilities {
  /** Installed engines; an encode chunk needs one named 'ffmpeg'. */
  engines: readonly { name: string; version: string }[]
  slots: number
  tags: readonly string[]
  /** What this node's ffmpeg can encode (presence `video`). */
  video?: readonly string[]
  /** The render devices each engine version sees (presence `devices`; jobs/devices.ts). */
  devices?: readonly EngineDevices[]
}

export interface LeaseRef {
  jobId: string
  chunk: number
  attempt: number
}

export interface LeaseManagerComponents {
  self: PeerIdString
  clock: Clock
  log: JobLogView
  liveness: Liveness
  runner: ChunkRunner
  capabilities(): NodeCapabilities
  logger: Logger
}

export interface LeaseManagerOptions extends ReduceOptions {
  /** Default 10 s. */
  leaseTimeoutMs?: number
  /**
   * The heartbeat interval the lease timeout is counted in (presence's busy interval);
   * default 2 s. With leaseTimeoutMs it gives how many chunk times a dead holder's lease
   * waits at the far pace, and so when a job is far enough from its end for that pace
   * (farOpenPerRenderer).
   */
  heartbeatIntervalMs?: number
  /** Liveness re-check period; default 1 s. */
  tickMs?: number
  /** Applies to jobs whose announce sets no chunkTimeoutMs; default none. */
  defaultChunkTimeoutMs?: number
  /**
   * A lease older than this many times the job's median chunk render time is dead, however
   * well its holder heartbeats (the bound doubles with each attempt, never below the lease
   * timeout, and needs STRAGGLER_MIN_SAMPLES finished chunks). Default 10; 0 turns it off.
   */
  stragglerFactor?: number
  /**
   * After a chunk of a job is deferred (ChunkDeferredError: its scene unreachable), this
   * node takes no chunk of that job for this long; default 10 s.
   */
  deferMs?: number
  /** Claim one chunk ahead while rendering; default true. */
  prefetch?: boolean
  /** Open chunks considered at once (in frame order), at least; default 8. */
  window?: number
  /** maxQueuedJobs per submitter (from its token). */
  quotaOf?: (submitter: PeerIdString) => number | undefined
  /** Seal a job this node submitted once it is done and every chunk acked; default true. */
  autoSeal?: boolean
  onProgress?: (task: ChunkTask, progress: ChunkProgress) => void
  /**
   * The node enters rest (true: its tick found no live job) or leaves it (false: a job
   * entry arrived, or a job is live). Called on each change only.
   */
  onRest?: (atRest: boolean) => void
}

export interface LeaseStats {
  claims: number
  /** Claims written right after this node's complete entry (to leave in one message). */
  claimsWithComplete: number
  /** Of those, claims in another job's log than the complete's. */
  claimsWithCompleteApart: number
  /** Claims (or held leases) this node learned it lost to another node. */
  lostClaims: number
  /** Renders aborted or results dropped because the chunk was already done elsewhere. */
  duplicatesAvoided: number
  rendersStarted: number
  completes: number
  fails: number
  releases: number
  /** Chunks released because they could not start here for now (ChunkDeferredError). */
  deferrals: number
  /** Claims that reopened a lease this node judged dead. */
  reclaims: number
  /** Stalls of this node's own loop seen (util/stalls.ts), and their total length. */
  stalls: number
  stalledMs: number
}

export interface LeaseManager {
  start(): Promise<void>
  /** Abort every render; with release (default) also write release entries for held leases. */
  stop(options?: { release?: boolean }): Promise<void>
  /**
   * Hand leases back now with release entries, so others take them at once instead of after
   * the lease timeout: every held lease (its render aborted), or with running false only
   * those claimed but not yet rendering. Resolves once the entries are written.
   */
  handBack(options: { running: boolean; reason: string }): Promise<number>
  /** The leases this node holds and is rendering or about to render: put them in heartbeats. */
  heldLeases(): LeaseRef[]
  /**
   * How often this node's heartbeats need to list its leases while it holds any: half the
   * shortest typical chunk time (median render) among the jobs of its leases, so a peer
   * hears about two beats per chunk whatever the chunk time, or 1.5 of it while every such
   * job is far from its end (`farFromEnd`: the log message at each chunk's end is then the
   * only pulse most chunks need); undefined while no job of its leases has a finished
   * chunk. Presence clamps it and announces it (`every`).
   */
  heartbeatPace(): HeartbeatPace | undefined
  /** Record the leases `peer` says it holds (from its presence heartbeat). */
  noteHeartbeat(peer: PeerIdString, leases: readonly LeaseRef[]): void
  /**
   * `peer` published a log gossip message just now (protocols/presence.md "Log gossip is
   * a heartbeat"): its leases count as listed now.
   */
  notePublished(peer: PeerIdString): void
  /** A live job's state, or a deleted job's tombstone (deleted, chunks empty). */
  job(jobId: string): JobState | undefined
  /** Every job not deleted. */
  jobs(): JobState[]
  stats(): LeaseStats
  /** Entry counts of the internal maps (for /metrics: they must stay bounded). */
  sizes(): Record<string, number>
}

export const keyOf = (jobId: string, chunk: number) => `${jobId}/${chunk}`
export const leaseKey = (jobId: string, chunk: number, attempt: number, holder: string) =>
  `${jobId}/${chunk}/${attempt}/${holder}`

/** A job whose open chunks may be claimed (not paused, not waiting for another job). */
export function jobLive(s: JobState | undefined): s is JobState {
  return !!s && isRunnable(s)
}

/** A job whose chunks held here keep rendering: live, or paused (renders finish). */
export function jobHeld(s: JobState | undefined): s is JobState {
  return !!s && keepsRenders(s)
}
