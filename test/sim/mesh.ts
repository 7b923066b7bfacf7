/**
 * An in-memory render mesh on one simulated clock: N nodes, each with its own log replica, the
 * real reducer and the real lease manager, a fake renderer whose work takes simulated
 * time, and a network with per-link latency, loss, partitions, pauses, wall-clock skew,
 * kill and restart.
 *
 * Invariants the harness itself keeps:
 *  - one seeded PRNG decides every random choice, so a seed replays a run exactly;
 *  - nothing crosses between nodes except through `send` (lossy, delayed, partitionable);
 *    entries are shared as frozen objects, as signed bytes would be;
 *  - the entries a node appends in one simulated instant leave in one gossip message, as
 *    sync.ts batches what is appended within its publish window (a window of wall time the
 *    simulation, where code takes no time, reduces to one instant): a complete and the
 *    claim written right behind it are one message, a claim written by a later pass is not;
 *  - a killed node loses everything but its log (what LevelDB would keep);
 *  - after every entry added to any replica the safety invariants are checked (at most
 *    one holder per chunk, done never reverts except by the submitter's reject of that
 *    exact attempt, test/helpers/job-invariants.ts); a violation throws with the seed.
 */
import { silentLogger } from '../../src/util/logger.js'
import type { LogEntry, PeerIdString } from '../../src/log/types.js'
import { jobLogId } from '../../src/log/types.js'
import type { AnnounceBody } from '../../src/jobs/entries.js'
import type {
  LeaseManager,
  LeaseManagerOptions,
  LeaseRef,
  LeaseStats,
} from '../../src/jobs/lease-manager.js'
import { createLeaseManager } from '../../src/jobs/lease-manager.js'
import { busyPaceMs } from '../../src/net/presence.js'
import { type JobState, reduceJob } from '../../src/jobs/reducer.js'
import type { ChunkTask } from '../../src/jobs/runner.js'
import { mulberry32, NodeClock, SimClock } from './clock.js'
import { Replica, type ReplicaSummary } from './replica.js'
import { FakeRunner, outputCid } from './runner.js'

export { mulberry32 } from './clock.js'
export type { RunnerMode } from './runner.js'

export class InvariantError extends Error {}

type Message =
  /** Gossip: the entries a node appended in one instant (sync.ts's publish window). */
  | { type: 'entry'; entries: LogEntry[] }
  | { type: 'hb'; leases: LeaseRef[]; every: number }
  | { type: 'summary'; have: ReplicaSummary }
  | { type: 'entries'; entries: LogEntry[] }

export class SimNode {
  readonly clock: NodeClock
  readonly replica: Replica
  readonly runner: FakeRunner
  manager!: LeaseManager
  alive = true
  private heard = new Map<PeerIdString, number>()
  /** Each peer's announced heartbeat interval (presence `every`). */
  private every = new Map<PeerIdString, number>()
  private inbox: { from: SimNode; msg: Message }[] = []
  /** Entries appended this instant, not yet gossiped. */
  private outbox: LogEntry[] = []
  /** Resumed, with the messages of its pause not read yet (they queue behind them). */
  private draining = false
  /** This node's monotonic time when it last published an entry (its pulse). */
  lastGossipAt = Number.NEGATIVE_INFINITY

  constructor(
    readonly mesh: SimMesh,
    readonly index: number,
    readonly id: PeerIdString,
    wallSkew: number,
    monoOffset: number,
  ) {
    this.clock = new NodeClock(mesh.clock, wallSkew, monoOffset)
    this.replica = new Replica(this)
    this.runner = new FakeRunner(this)
  }

  async boot(): Promise<void> {
    this.alive = true
    this.lastGossipAt = Number.NEGATIVE_INFINITY
    this.heard = new Map()
    this.every = new Map()
    this.manager = createLeaseManager(
      {
        self: this.id,
        clock: this.clock,
        log: this.replica,
        liveness: {
          lastHeard: (p) => this.heard.get(p),
          pace: (p) => (this.every.get(p) ?? this.mesh.heartbeatMs) / this.mesh.heartbeatMs,
        },
        runner: this.runner,
        capabilities: () => ({
          engines: [
            { name: 'test', version: '1.0.0' },
            { name: 'ffmpeg', version: '6.0' },
          ],
          slots: 1,
          tags: [],
        }),
        logger: silentLogger,
      },
      { heartbeatIntervalMs: this.mesh.heartbeatMs, ...this.mesh.managerOptions },
    )
    await this.manager.start()
    // As presence does (net/presence.ts): a node holding leases beats at its leases' pace.
    const beat = () => {
      const leases = this.manager.heldLeases()
      const every = this.mesh.pacedHeartbeats
        ? busyPaceMs(
            leases.length > 0 ? this.manager.heartbeatPace() : undefined,
            this.mesh.heartbeatMs,
            5 * this.mesh.heartbeatMs,
          )
        : this.mesh.heartbeatMs
      // Peers heard our last entry less than a pace ago: that was the beat (presence.ts).
      const sinceEntry = this.clock.monotonic() - this.lastGossipAt
      if (
        this.mesh.logPulse &&
        leases.length > 0 &&
        sinceEntry < every - this.mesh.heartbeatMs / 2
      ) {
        this.clock.setTimeout(beat, every - sinceEntry)
        return
      }
      this.mesh.broadcast(this, { type: 'hb', leases, every })
      this.clock.setTimeout(beat, every)
    }
    const antiEntropy = () => {
      const peers = this.mesh.nodes.filter((n) => n !== this)
      const peer = peers[Math.floor(this.mesh.random() * peers.length)]
      this.mesh.send(this, peer, { type: 'summary', have: this.replica.summary() })
      this.clock.setTimeout(antiEntropy, this.mesh.antiEntropyMs)
    }
    this.clock.setTimeout(beat, this.mesh.random() * this.mesh.heartbeatMs)
    this.clock.setTimeout(antiEntropy, this.mesh.random() * this.mesh.antiEntropyMs)
  }

  /** Gossip `entry` with whatever else this node appends in the same instant. */
  publish(entry: LogEntry): void {
    this.outbox.push(entry)
    if (this.outbox.length > 1) return
    this.clock.setTimeout(() => {
      const entries = this.outbox
      this.outbox = []
      this.lastGossipAt = this.clock.monotonic()
      this.mesh.broadcast(this, { type: 'entry', entries })
    }, 0)
  }

  /** SIGKILL: renders, timers and memory are gone; the log replica stays (it is on disk). */
  kill(): void {
    this.alive = false
    // Written but not yet gossiped: anti-entropy carries them, as after a real crash.
    this.outbox = []
    this.mesh.retiredStats.push(this.manager.stats())
    void this.manager.stop({ release: false })
    this.clock.reset()
    this.replica.resetListeners()
    this.inbox = []
    this.draining = false
  }

  pause(): void {
    this.clock.paused = true
  }

  /**
   * SIGCONT. Its expired timers fire first; what peers sent meanwhile is read `backlogMs`
   * later (a real process decodes its socket backlog after the timers phase, over many
   * turns of the loop), in order, before anything newer.
   */
  resume(backlogMs = 0): void {
    this.clock.resume()
    if (backlogMs <= 0) {
      this.drainInbox()
      return
    }
    this.draining = true
    this.clock.setTimeout(() => {
      this.draining = false
      this.drainInbox()
    }, backlogMs)
  }

  private drainInbox(): void {
    const inbox = this.inbox
    this.inbox = []
    for (const m of inbox) this.receive(m.from, m.msg)
  }

  receive(from: SimNode, msg: Message): void {
    if (!this.alive) return
    if (this.clock.paused || this.draining) {
      this.inbox.push({ from, msg })
      return
    }
    switch (msg.type) {
      case 'entry':
        // Published by the sender itself (gossip): its pulse, as sync.ts reports it.
        if (this.mesh.logPulse) {
          this.heard.set(from.id, this.clock.monotonic())
          this.manager.notePublished(from.id)
        }
        for (const e of msg.entries) this.replica.add(e)
        break
      case 'hb':
        this.heard.set(from.id, this.clock.monotonic())
        this.every.set(from.id, msg.every)
        this.manager.noteHeartbeat(from.id, msg.leases)
        break
      case 'summary': {
        const missing = this.replica.missingFrom(msg.have)
        if (missing.length) this.mesh.send(this, from, { type: 'entries', entries: missing })
        break
      }
      case 'entries':
        for (const e of msg.entries) this.replica.add(e)
        break
    }
  }
}

export interface SimOptions {
  seed: number
  nodes: number
  frameMs?: number
  encodeMs?: number
  latencyMs?: [number, number]
  loss?: number
  /** Max wall-clock skew either way (ms); default 0. */
  skewMs?: number
  heartbeatMs?: number
  /**
   * A node holding leases beats at its leases' pace (about twice per typical chunk, at
   * most 5 × heartbeatMs) and peers stretch its lease timeout by it, as the daemon does;
   * default true. False: every node beats every heartbeatMs.
   */
  pacedHeartbeats?: boolean
  /**
   * A log message a node publishes counts as its heartbeat (protocols/presence.md "Log
   * gossip is a heartbeat"): a busy node skips a beat while its last entry left less than
   * its pace ago, and receivers take the author's entry as a heartbeat listing its leases;
   * default true, as the daemon does.
   */
  logPulse?: boolean
  antiEntropyMs?: number
  managerOptions?: LeaseManagerOptions
  /** Base render time of each frame (ms); default frameMs for every frame. */
  frameTime?: (frame: number) => number
  /**
   * Promise continuations run after every timer due within this many ms of the next one
   * (default 0: after each distinct instant). A few ms lets a mesh of a hundred nodes run
   * fast; it only delays each node's async continuations by at most that much.
   */
  quantumMs?: number
}

export class SimMesh {
  readonly clock = new SimClock(0)
  readonly random: () => number
  readonly nodes: SimNode[] = []
  readonly frameMs: number
  readonly encodeMs: number
  readonly heartbeatMs: number
  readonly pacedHeartbeats: boolean
  readonly logPulse: boolean
  readonly antiEntropyMs: number
  readonly managerOptions: LeaseManagerOptions
  readonly seed: number
  readonly frameTime: (frame: number) => number
  private readonly quantumMs: number
  loss: number
  /** Partition group per node index; messages cross only within a group. */
  groups: number[]
  /** Renders that ran to completion, per job/chunk. */
  readonly renders = new Map<string, number>()
  rendersStarted = 0
  /** Times a replica's done chunk switched to a concurrent complete that sorts first. */
  outputSwitches = 0
  /** Messages sent (lost ones included), per type. */
  readonly sent: Record<Message['type'], number> = { entry: 0, hb: 0, summary: 0, entries: 0 }
  /** Lease statistics of managers a kill ended (a restart starts a new one). */
  readonly retiredStats: LeaseStats[] = []
  private readonly linkLatency: number[][]
  private readonly jitter: number
  private failure: string | undefined

  constructor(o: SimOptions) {
    this.seed = o.seed
    this.random = mulberry32(o.seed)
    this.frameMs = o.frameMs ?? 1_000
    const frameMs = this.frameMs
    this.frameTime = o.frameTime ?? (() => frameMs)
    this.quantumMs = o.quantumMs ?? 0
    this.encodeMs = o.encodeMs ?? 2_000
    this.heartbeatMs = o.heartbeatMs ?? 1_000
    this.pacedHeartbeats = o.pacedHeartbeats ?? true
    this.logPulse = o.logPulse ?? true
    this.antiEntropyMs = o.antiEntropyMs ?? 1_000
    this.managerOptions = o.managerOptions ?? {}
    this.loss = o.loss ?? 0
    const [lo, hi] = o.latencyMs ?? [1, 20]
    this.jitter = Math.max(1, (hi - lo) / 4)
    this.linkLatency = []
    for (let i = 0; i < o.nodes; i++) {
      this.linkLatency.push([])
      for (let j = 0; j < o.nodes; j++) this.linkLatency[i].push(lo + this.random() * (hi - lo))
    }
    this.groups = new Array(o.nodes).fill(0)
    const skew = o.skewMs ?? 0
    for (let i = 0; i < o.nodes; i++) {
      const id = `peer-${String(i).padStart(2, '0')}` as PeerIdString
      const wallSkew = Math.round((this.random() * 2 - 1) * skew)
      this.nodes.push(new SimNode(this, i, id, wallSkew, Math.round(this.random() * 1e6)))
    }
  }

  async start(): Promise<void> {
    for (const n of this.nodes) await n.boot()
  }

  violation(what: string): void {
    this.failure ??= `seed ${this.seed} t=${this.clock.monotonic()}: ${what}`
  }

  connected(a: SimNode, b: SimNode): boolean {
    return this.groups[a.index] === this.groups[b.index]
  }

  send(from: SimNode, to: SimNode, msg: Message): void {
    if (!from.alive) return
    this.sent[msg.type]++
    if (!to.alive || !this.connected(from, to) || this.random() < this.loss) return
    const delay = this.linkLatency[from.index][to.index] + this.random() * this.jitter
    this.clock.setTimeout(() => {
      if (this.connected(from, to)) to.receive(from, msg)
    }, delay)
  }

  broadcast(from: SimNode, msg: Message): void {
    for (const n of this.nodes) if (n !== from) this.send(from, n, msg)
  }

  gossip(from: SimNode, entry: LogEntry): void {
    from.publish(entry)
  }

  onRenderStart(_node: SimNode, _task: ChunkTask): void {
    this.rendersStarted++
  }

  onRenderDone(_node: SimNode, task: ChunkTask): void {
    const k = `${task.jobId}/${task.chunk}`
    this.renders.set(k, (this.renders.get(k) ?? 0) + 1)
  }

  /** Renders that ran to completion beyond the first of their chunk. */
  duplicateRenders(): number {
    let n = 0
    for (const v of this.renders.values()) n += Math.max(0, v - 1)
    return n
  }

  /** Advance time event by event, flushing promise chains between events. */
  async runUntil(done: () => boolean, limitMs: number): Promise<boolean> {
    const deadline = this.clock.monotonic() + limitMs
    for (;;) {
      this.throwIfViolated()
      if (done()) return true
      const next = this.clock.nextTimerAt()
      if (next === undefined || next > deadline) {
        this.clock.advanceTo(deadline)
        await flush()
        this.throwIfViolated()
        return done()
      }
      this.clock.advanceTo(Math.min(deadline, next + this.quantumMs))
      await flush()
    }
  }

  async runFor(ms: number): Promise<void> {
    await this.runUntil(() => false, ms)
  }

  throwIfViolated(): void {
    if (this.failure) throw new InvariantError(this.failure)
  }

  async submit(
    from: SimNode,
    job: Partial<AnnounceBody> & { jobId: string; frames: number[] },
  ): Promise<void> {
    const body: AnnounceBody = {
      name: `job ${job.jobId}`,
      submitter: from.id,
      scene: { manifest: outputCid('scene'), name: 'scene.blend', size: 1234 },
      engine: { name: 'test' },
      chunkSize: 1,
      output: { format: 'PNG' },
      priority: 0,
      params: {},
      requirements: {},
      limits: {},
      ...job,
    }
    await from.replica.append(jobLogId(job.jobId), 'announce', body)
  }

  state(node: SimNode, jobId: string): JobState | undefined {
    return node.replica.folds.get(jobId)?.state
  }

  /** True when every live node's replica has the job done. */
  allDone(jobId: string): boolean {
    return this.nodes.every((n) => !n.alive || this.state(n, jobId)?.state === 'done')
  }

  /** Replicas of live nodes hold the same entries and reduce (from scratch) to the same state. */
  converged(jobId: string): boolean {
    const live = this.nodes.filter((n) => n.alive)
    const sizes = live.map((n) => n.replica.logs.get(jobLogId(jobId))?.size ?? 0)
    if (sizes.some((x) => x !== sizes[0])) return false
    const ids = live.map((n) =>
      [...(n.replica.logs.get(jobLogId(jobId))?.keys() ?? [])].sort().join(','),
    )
    return ids.every((x) => x === ids[0])
  }

  finalStates(jobId: string): string[] {
    return this.nodes
      .filter((n) => n.alive)
      .map((n) => JSON.stringify(reduceJob(n.replica.entries(jobLogId(jobId)))))
  }
}

/** Let every pending promise continuation run. */
function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}
