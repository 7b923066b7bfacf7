/**
 * Presence: each node publishes a small signed heartbeat on a gossip topic every few
 * seconds while it renders or holds leases, and about five times less often at rest (who
 * it is, what it can run, what it is doing, which leases it holds), and
 * exchanges one directly with every newly admitted peer so a mesh forms in well under
 * a second instead of waiting for the gossip mesh to graft.
 *
 * Invariants:
 *  - a heartbeat is accepted only when the gossip origin (StrictSign `from`) or the
 *    stream's authenticated remote peer equals the heartbeat's `peerId`: nobody speaks
 *    for another node;
 *  - the fast pace holds while a node renders or holds leases, and for a rest interval after
 *    it starts or gains a connection (a forming mesh meets through heartbeats);
 *  - a heartbeat says how often its node publishes now (`every`); a peer is judged gone or
 *    silent after that many of its own intervals, so a node at rest costs the mesh a fifth
 *    of a busy one's heartbeats without being taken for dead;
 *  - a busy node beats at the pace its leases need (busyPace: about twice per chunk of the
 *    jobs it holds, every 1.5 chunks while they are far from their end; never faster than
 *    intervalMs nor slower than the rest interval, twice it while far from the end); peers
 *    stretch its lease timeout by the same factor (paceOf), so the beats per lease timeout
 *    stay what the configured intervals make them;
 *  - a change of pace never waits longer than the pace announced before it: a longer one
 *    goes out in a heartbeat due at the shorter pace;
 *  - a log gossip message a node publishes is its pulse too (protocols/presence.md "Log
 *    gossip is a heartbeat"): a node rendering or holding leases whose last log message
 *    left less than its pace ago skips that heartbeat (so two beats of its are never more
 *    than its pace plus one tick apart; never in a forming mesh's fast interval alone:
 *    heartbeats introduce its members), and a log message from a peer refreshes when it
 *    was last heard (noteHeard), never what it said of itself;
 *  - liveness is judged by this node's monotonic clock since it last heard a peer,
 *    never by comparing wall clocks, and only since this node's last stall: after one of
 *    its own (SIGSTOP, suspend; util/stalls.ts) nobody is 'gone' or 'silent' for it until
 *    a whole span has passed awake, so it does not hang up links whose queued messages it
 *    has yet to read;
 *  - size is checked before decoding, schema after; a bad heartbeat is dropped and
 *    counted, nothing else happens;
 *  - only admitted peers are heard; a gossiped heartbeat of a mesh member not admitted
 *    here only introduces it (onIntroduced: its id and addresses, for the dialer);
 *  - every connected, admitted peer is heard on gossip at least every silentAfterMs, or
 *    its link is reported broken (onSilent) so the daemon replaces the connection.
 */
import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { Connection, Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { deadline } from '../util/abort.js'
import { contiguous } from '../util/bytes.js'
import { decodeBounded, encode } from '../util/cbor.js'
import type { Clock } from '../util/clock.js'
import { describeError, InvalidInputError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'
import { createStallWatch, type StallWatch } from '../util/stalls.js'
import { validatePresenceRules, type PresenceRules } from '../node/presence-rules.js'
import { type EngineDevices, validateDevices } from '../jobs/devices.js'
import type { HeartbeatPace } from '../jobs/lease-types.js'
import type { RmeshLibp2p } from './host.js'

export const PRESENCE_TOPIC = 'rmesh/presence/1.0.0'
export const PRESENCE_PROTOCOL = '/rmesh/presence/1.0.0'
export const MAX_PRESENCE_BYTES = 16 * 1024
export const MAX_PAUSED_LENGTH = 256
/** Bounds of a heartbeat's `every`: a peer cannot make itself immortal by announcing a day. */
export const MIN_EVERY_MS = 50
export const MAX_EVERY_MS = 120_000
/** A silent peer's link is re-made at most this often (and one peer per silent span). */
const RECONNECT_PEER_SPACING_MS = 5 * 60_000
/** One direct presence exchange, either side. */
const EXCHANGE_TIMEOUT_MS = 5_000

export interface LeaseRef {
  job: string
  chunk: number
  attempt: number
}

export interface Activity {
  job: string
  chunk: number
  frame?: number
  progress?: number
}

export interface Presence {
  v: 1
  peerId: string
  name: string
  version: string
  engines: { name: string; version: string }[]
  slots: number
  /**
   * Set while the node takes no new renders for a passing reason (its data disk nearly
   * full); its slots are 0 meanwhile, and it will take work again by itself.
   */
  paused?: string
  tags: string[]
  /**
   * What this node's ffmpeg can encode (engines/ffmpeg-args.ts `videoFeatures`): `h264`,
   * `h265:10bit`, `vp9:2pass`, `hlg`, … Absent: no ffmpeg, or an older node.
   */
  video?: string[]
  /**
   * The render devices each engine version sees (jobs/devices.ts; protocols/presence.md
   * `devices`): a job asking for a device goes only to a node whose version has it. Absent:
   * an older node, or detection not finished.
   */
  devices?: EngineDevices[]
  /**
   * The node's own rules when it has any, or is not active (protocols/presence.md `rules`):
   * paused, draining, off its schedule, waiting for its user to be idle. Optional.
   */
  rules?: PresenceRules
  freeDiskBytes: number
  load: number
  doing: Activity[]
  leases: LeaseRef[]
  addrs: string[]
  meshId?: string
  seq: number
  /**
   * How often this node publishes now, in ms: its busy interval while it renders or holds
   * leases, its longer rest interval otherwise. Receivers judge it gone or silent after
   * that many of its own intervals. Absent from older nodes: the receiver's interval.
   */
  every?: number
}

export interface PeerPresence {
  presence: Presence
  /** Monotonic ms when last heard. */
  lastHeard: number
  state: 'up' | 'gone'
}

export function validatePresence(value: unknown): Presence {
  const bad = (why: string) => new InvalidInputError(`presence: ${why}`)
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw bad('not an object')
  const p = value as Record<string, unknown>
  if (p.v !== 1) throw bad('unknown version')
  const str = (k: string, max: number) => {
    if (typeof p[k] !== 'string' || (p[k] as string).length > max)
      throw bad(`${k} must be a string ≤ ${max}`)
  }
  const num = (k: string) => {
    if (typeof p[k] !== 'number' || !Number.isFinite(p[k] as number) || (p[k] as number) < 0)
      throw bad(`${k} must be a number ≥ 0`)
  }
  const arr = (k: string, max: number) => {
    if (!Array.isArray(p[k]) || (p[k] as unknown[]).length > max)
      throw bad(`${k} must be a list ≤ ${max}`)
    return p[k] as unknown[]
  }
  str('peerId', 128)
  str('name', 64)
  str('version', 32)
  num('slots')
  num('freeDiskBytes')
  num('load')
  num('seq')
  if (p.meshId !== undefined) str('meshId', 128)
  if (p.paused !== undefined) str('paused', MAX_PAUSED_LENGTH)
  if (p.rules !== undefined) validatePresenceRules(p.rules)
  if (p.devices !== undefined) validateDevices(p.devices)
  if (
    p.every !== undefined &&
    (!Number.isInteger(p.every) ||
      (p.every as number) < MIN_EVERY_MS ||
      (p.every as number) > MAX_EVERY_MS)
  )
    throw bad(`every must be an integer of ms in [${MIN_EVERY_MS}, ${MAX_EVERY_MS}]`)
  for (const e of arr('engines', 32)) {
    const o = e as Record<string, unknown>
    if (
      !o ||
      typeof o.name !== 'string' ||
      typeof o.version !== 'string' ||
      o.name.length > 64 ||
      o.version.length > 64
    )
      throw bad('engines entry')
  }
  for (const t of arr('tags', 32))
    if (typeof t !== 'string' || t.length > 32) throw bad('tags entry')
  if (p.video !== undefined)
    for (const f of arr('video', 32))
      if (typeof f !== 'string' || f.length > 32) throw bad('video entry')
  for (const a of arr('addrs', 16))
    if (typeof a !== 'string' || a.length > 256) throw bad('addrs entry')
  for (const l of arr('leases', 64)) {
    const o = l as Record<string, unknown>
    if (
      !o ||
      typeof o.job !== 'string' ||
      o.job.length > 64 ||
      !Number.isInteger(o.chunk) ||
      !Number.isInteger(o.attempt)
    )
      throw bad('leases entry')
  }
  for (const d of arr('doing', 64)) {
    const o = d as Record<string, unknown>
    if (!o || typeof o.job !== 'string' || o.job.length > 64 || !Number.isInteger(o.chunk))
      throw bad('doing entry')
  }
  return p as unknown as Presence
}

/** While its jobs are far from their end a busy node's pace may run to this many rest intervals. */
export const FAR_PACE_CAP = 2

/**
 * The heartbeat interval of a busy node whose leases want `wanted`: rounded to a multiple of
 * `intervalMs` (the tick), within [intervalMs, restIntervalMs], or [intervalMs,
 * FAR_PACE_CAP × restIntervalMs] while its jobs are far from their end (their leases
 * judged on as many beats, and a late reopen costs them nothing; protocols/presence.md
 * "Busy pace"); intervalMs when nothing is wanted yet.
 */
export function busyPaceMs(
  wanted: HeartbeatPace | undefined,
  intervalMs: number,
  restIntervalMs: number,
): number {
  if (wanted === undefined || !Number.isFinite(wanted.ms)) return intervalMs
  const cap = Math.max(intervalMs, restIntervalMs) * (wanted.farFromEnd ? FAR_PACE_CAP : 1)
  return Math.min(cap, Math.max(intervalMs, Math.round(wanted.ms / intervalMs) * intervalMs))
}

export interface PresenceComponents {
  libp2p: RmeshLibp2p
  clock: Clock
  logger: Logger
  /** What this node says about itself now. */
  self: () => Omit<Presence, 'v' | 'peerId' | 'seq' | 'addrs' | 'every'>
  /** Only admitted peers are heard (admission issue); default: everyone connected. */
  isAdmitted?: (peerId: string) => boolean
  /**
   * Peers not admitted here yet whose gossiped heartbeat may introduce them (members of
   * the mesh by its log); default none. They are not heard: onIntroduced gets their id
   * and addresses, so this node can connect and admit them by the handshake.
   */
  isMember?: (peerId: string) => boolean
  /**
   * How often this node's leases need a heartbeat while it renders or holds leases (the
   * lease manager's pace, from its jobs' chunk times); undefined: intervalMs. Clamped to
   * [intervalMs, rest interval] (twice that far from its jobs' end) and rounded to a
   * multiple of intervalMs (a pace that wobbles with a median would otherwise be announced
   * anew on every tick).
   */
  busyPace?: () => HeartbeatPace | undefined
  /**
   * Monotonic ms when this node last published a log gossip message (sync/sync.ts): peers
   * count it as a heartbeat, so a busy node's next one waits a whole pace after it.
   */
  lastPulseAt?: () => number
}

export interface PresenceOptions {
  /** The heartbeat interval while this node renders or holds leases (the lease heartbeat). */
  intervalMs: number
  /**
   * The heartbeat interval at rest (nothing rendering, no lease held, nothing changed):
   * every heartbeat costs every node of the mesh CPU, and at rest nobody needs this node's
   * pulse faster than to see it is still there. Default 5 × intervalMs; never below it.
   */
  restIntervalMs?: number
  /** A peer unheard for this long is 'gone'. Default 3 × interval. */
  goneAfterMs?: number
  /**
   * An admitted peer we are connected to but have not heard on gossip for this long has a
   * broken gossip link (onSilent). Default 5 × interval.
   */
  silentAfterMs?: number
}

export interface PresenceService {
  start(): Promise<void>
  stop(): Promise<void>
  /** Publish now (after a change in what this node is doing). */
  publishNow(): void
  /** Exchange presence directly with a peer (run when it is admitted). */
  exchange(peerId: string, signal?: AbortSignal): Promise<Presence | undefined>
  peers(): Map<string, PeerPresence>
  lastHeard(peerId: string): number | undefined
  /**
   * A peer's own log gossip message arrived (its pulse): an 'up' peer counts as heard now.
   * A peer never heard or 'gone' stays so until its next heartbeat says who it is.
   */
  noteHeard(peerId: string): void
  /**
   * A peer's announced pace as a multiple of this node's busy interval (its `every` ÷
   * intervalMs, never below 1; 1 for a peer never heard): the factor this node stretches
   * the peer's gone, silent and lease spans by.
   */
  paceOf(peerId: string): number
  onPresence(listener: (p: Presence, source: 'gossip' | 'direct') => void): () => void
  onGone(listener: (peerId: string) => void): () => void
  /**
   * A member not connected here spoke on gossip (through admitted peers). Peer exchange:
   * without it, two nodes that bootstrapped elsewhere would never meet, since gossip from
   * a peer not admitted is not heard.
   */
  onIntroduced(listener: (peerId: string, addrs: string[]) => void): () => void
  /**
   * A connected, admitted peer's heartbeats have not arrived on gossip for silentAfterMs.
   * gossipsub keeps one outbound stream per peer; when it closes while another connection
   * to the peer stays open, nothing recreates it and that direction stays mute for as long
   * as the connection lives (seen with 8 daemons starting at once on a loaded machine).
   * The cure is a new connection. Fired once per silent spell, for one peer per silent
   * span at most and for each peer once per 5 minutes at most.
   */
  onSilent(listener: (peerId: string) => void): () => void
  stats(): { rejected: number; introduced: number; silent: number }
}

/** Add a listener; the result removes it. */
function subscribe<L>(set: Set<L>, listener: L): () => void {
  set.add(listener)
  return () => set.delete(listener)
}

export function createPresence(
  components: PresenceComponents,
  options: PresenceOptions,
): PresenceService {
  const { libp2p, clock, logger } = components
  const selfId = libp2p.peerId.toString()
  const goneAfter = options.goneAfterMs ?? options.intervalMs * 3
  const silentAfter = options.silentAfterMs ?? options.intervalMs * 5
  // Peer → monotonic ms since which we wait for its gossip (its last gossiped heartbeat,
  // or when we first saw it connected and admitted without one).
  const gossipSince = new Map<string, number>()
  const silentListeners = new Set<(peerId: string) => void>()
  const table = new Map<string, PeerPresence>()
  const listeners = new Set<(p: Presence, source: 'gossip' | 'direct') => void>()
  const goneListeners = new Set<(peerId: string) => void>()
  const introducedListeners = new Set<(peerId: string, addrs: string[]) => void>()
  let seq = 0
  let rejected = 0
  let introduced = 0
  let silent = 0
  let timer: ReturnType<Clock['setTimeout']> | undefined
  let running = false
  const admitted = (peerId: string) => components.isAdmitted?.(peerId) ?? true
  // Stopped for half the 'gone' span or more: every silence restarts at the wake.
  const newStallWatch = (): StallWatch =>
    createStallWatch({
      periodMs: options.intervalMs,
      minStallMs: goneAfter / 2,
      start: clock.monotonic(),
    })
  let stalls = newStallWatch()

  type SelfView = ReturnType<PresenceComponents['self']>
  const restInterval = Math.max(
    options.intervalMs,
    options.restIntervalMs ?? options.intervalMs * 5,
  )
  // Fast while rendering or holding leases, and for a rest interval after this node starts
  // or gains a connection: a mesh that forms finds its members through these heartbeats
  // (peer exchange), and a first one published before the gossip mesh grafted is lost.
  let fastUntil = Number.NEGATIVE_INFINITY
  const onConnect = (evt?: CustomEvent<{ toString(): string }>) => {
    // A reconnect of a peer already heard is no news to the mesh.
    if (evt && table.has(evt.detail.toString())) return
    fastUntil = clock.monotonic() + restInterval
  }
  const working = (self: SelfView) => self.doing.length > 0 || self.leases.length > 0
  const busy = (self: SelfView) => working(self) || clock.monotonic() < fastUntil
  /** The pace this node announces now (`every`). */
  const everyOf = (self: SelfView): number => {
    if (!busy(self)) return restInterval
    // A forming mesh meets at the fast pace, whatever this node's leases would need.
    if (clock.monotonic() < fastUntil) return options.intervalMs
    return busyPaceMs(components.busyPace?.(), options.intervalMs, restInterval)
  }
  // What peers must hear at once even at rest: a change in what this node can take.
  const shapeOf = (self: SelfView) =>
    JSON.stringify([
      self.name,
      self.slots,
      self.paused,
      self.tags,
      self.engines,
      self.video,
      self.meshId,
      self.rules,
    ])
  let lastPublished = Number.NEGATIVE_INFINITY
  let lastShape: string | undefined
  let lastEvery: number | undefined

  const build = (self: SelfView = components.self()): Presence => ({
    v: 1,
    peerId: selfId,
    seq: ++seq,
    // Relayed addresses too (net/reachability.ts); peers refuse more than 16.
    addrs: libp2p
      .getMultiaddrs()
      .map((a) => a.toString())
      .slice(0, 16),
    ...self,
    every: everyOf(self),
  })

  const paceOf = (peerId: string) => {
    const every = table.get(peerId)?.presence.every ?? options.intervalMs
    return Math.max(1, every / options.intervalMs)
  }
  /** A peer's spans scale with the interval it announced (never below ours). */
  const spanOf = (peerId: string, span: number) => span * paceOf(peerId)

  const accept = (p: Presence, source: 'gossip' | 'direct') => {
    if (p.peerId === selfId) return
    const prev = table.get(p.peerId)
    // Out-of-order gossip: keep the newest sequence number a peer has sent us since
    // it started (a restarted peer starts again at 1, so accept lower after 'gone').
    if (prev && prev.state === 'up' && p.seq < prev.presence.seq && source === 'gossip') return
    table.set(p.peerId, { presence: p, lastHeard: clock.monotonic(), state: 'up' })
    for (const l of listeners) l(p, source)
  }

  const decode = (bytes: Uint8Array): Presence =>
    validatePresence(decodeBounded(bytes, MAX_PRESENCE_BYTES, 'presence'))

  const onMessage = (evt: CustomEvent) => {
    const msg = evt.detail as {
      topic: string
      data: Uint8Array
      type: string
      from?: { toString(): string }
    }
    if (msg.topic !== PRESENCE_TOPIC) return
    try {
      const p = decode(msg.data)
      if (msg.type !== 'signed' || msg.from?.toString() !== p.peerId)
        throw new InvalidInputError('presence not signed by its peer')
      if (!admitted(p.peerId)) {
        if (p.peerId === selfId || !components.isMember?.(p.peerId))
          throw new InvalidInputError('presence from a peer that is not admitted')
        introduced++
        for (const l of introducedListeners) l(p.peerId, p.addrs)
        return
      }
      gossipSince.set(p.peerId, clock.monotonic())
      accept(p, 'gossip')
    } catch (err) {
      rejected++
      logger.debug('dropped presence', { err: describeError(err) })
    }
  }

  const publish = async (self: SelfView = components.self()) => {
    lastPublished = clock.monotonic()
    lastShape = shapeOf(self)
    lastEvery = everyOf(self)
    try {
      await libp2p.services.pubsub.publish(PRESENCE_TOPIC, encode(build(self)))
    } catch (err) {
      logger.debug('presence publish failed', { err: describeError(err) })
    }
  }

  // Ticks come every intervalMs (the local checks are cheap); a heartbeat goes out once per
  // announced interval (each tick at the fast pace), or when what this node can take changed.
  const tick = () => {
    if (!running) return
    const now = clock.monotonic()
    const self = components.self()
    const every = everyOf(self)
    // A log message of ours that left since is a pulse our peers heard: the heartbeat
    // waits a pace after it (protocols/presence.md). Only while it works: at rest the
    // heartbeat is also how peers learn what this node can take, and while a mesh forms
    // it is how members not yet connected are introduced (a log message introduces no one).
    const logPulse = working(self)
      ? (components.lastPulseAt?.() ?? Number.NEGATIVE_INFINITY)
      : Number.NEGATIVE_INFINITY
    const pulse = Math.max(lastPublished, logPulse)
    // Peers judge this node by the pace it last announced: a longer one is said in a
    // heartbeat that still comes at the shorter pace, a shorter one brings it sooner by
    // itself (neither costs a heartbeat of its own).
    const pace = Math.min(every, lastEvery ?? every)
    // After a heartbeat of ours, due half a tick early: heartbeats leave on ticks, a pace
    // apart, and a tick a hair early must not push one a whole tick late. After a log
    // message (any moment between ticks) due a whole pace later: half a tick early, the
    // heartbeat in the middle of a chunk was often followed by a second one just before
    // the chunk's end and its log message.
    const slack = logPulse > lastPublished ? 0 : options.intervalMs / 2
    if (now - pulse >= pace - slack || shapeOf(self) !== lastShape) void publish(self)
    stalls.observe(now)
    for (const [peerId, entry] of table) {
      if (entry.state === 'up' && stalls.awake(entry.lastHeard, now) > spanOf(peerId, goneAfter)) {
        entry.state = 'gone'
        for (const l of goneListeners) l(peerId)
      }
    }
    checkSilent(now)
    timer = clock.setTimeout(tick, options.intervalMs)
  }

  const lastReconnect = new Map<string, number>()
  let lastAnyReconnect = Number.NEGATIVE_INFINITY
  const checkSilent = (now: number) => {
    for (const [peerId, t] of lastReconnect)
      if (now - t > RECONNECT_PEER_SPACING_MS) lastReconnect.delete(peerId)
    const connected = new Set<string>()
    for (const c of libp2p.getConnections())
      if (c.status === 'open') connected.add(c.remotePeer.toString())
    for (const peerId of gossipSince.keys()) if (!connected.has(peerId)) gossipSince.delete(peerId)
    for (const peerId of connected) {
      if (!admitted(peerId)) continue
      const since = gossipSince.get(peerId)
      if (since === undefined) gossipSince.set(peerId, now)
      else if (stalls.awake(since, now) > spanOf(peerId, silentAfter)) {
        gossipSince.set(peerId, now)
        // A budget of reconnects: on a starved machine every peer can look silent at once,
        // and reconnecting them all feeds the starvation (30 daemons on 2 cores did so).
        const last = lastReconnect.get(peerId) ?? Number.NEGATIVE_INFINITY
        if (now - last < RECONNECT_PEER_SPACING_MS || now - lastAnyReconnect < silentAfter) continue
        lastReconnect.set(peerId, now)
        lastAnyReconnect = now
        silent++
        logger.warn('no gossip from a connected peer: reconnecting', {
          peer: peerId,
          silentMs: Math.round(now - since),
        })
        for (const l of silentListeners) l(peerId)
      }
    }
  }

  const handle = async (stream: Stream, connection: Connection) => {
    const remote = connection.remotePeer.toString()
    const lp = lpStream(stream, { maxDataLength: MAX_PRESENCE_BYTES })
    const bound = deadline(EXCHANGE_TIMEOUT_MS)
    const signal = bound.signal
    try {
      if (!admitted(remote)) throw new InvalidInputError('peer not admitted')
      const theirs = decode(contiguous(await lp.read({ signal })))
      if (theirs.peerId !== remote)
        throw new InvalidInputError('presence peerId is not the connection peer')
      accept(theirs, 'direct')
      await lp.write(encode(build()), { signal })
      await stream.close({ signal })
    } catch (err) {
      rejected++
      logger.debug('presence exchange refused', { peer: remote, err: describeError(err) })
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      bound.clear()
    }
  }

  return {
    async start() {
      running = true
      stalls = newStallWatch()
      // Gossip from or through peers that are not admitted is neither delivered nor forwarded.
      libp2p.services.pubsub.topicValidators.set(PRESENCE_TOPIC, (peer) =>
        admitted(peer.toString()) ? TopicValidatorResult.Accept : TopicValidatorResult.Reject,
      )
      libp2p.services.pubsub.subscribe(PRESENCE_TOPIC)
      libp2p.services.pubsub.addEventListener('message', onMessage)
      libp2p.addEventListener('peer:connect', onConnect)
      onConnect()
      await libp2p.handle(PRESENCE_PROTOCOL, handle)
      tick()
    },
    async stop() {
      running = false
      if (timer) clock.clearTimeout(timer)
      libp2p.services.pubsub.removeEventListener('message', onMessage)
      libp2p.removeEventListener('peer:connect', onConnect)
      await libp2p.unhandle(PRESENCE_PROTOCOL).catch(() => {})
    },
    publishNow() {
      if (running) void publish()
    },
    async exchange(peerId, signal) {
      const peer = libp2p
        .getConnections()
        .find((c) => c.remotePeer.toString() === peerId)?.remotePeer
      if (!peer) return undefined
      const bound = deadline(EXCHANGE_TIMEOUT_MS, signal)
      const sig = bound.signal
      try {
        const stream = await libp2p.dialProtocol(peer, PRESENCE_PROTOCOL, { signal: sig })
        const lp = lpStream(stream, { maxDataLength: MAX_PRESENCE_BYTES })
        await lp.write(encode(build()), { signal: sig })
        const theirs = decode(contiguous(await lp.read({ signal: sig })))
        await stream.close({ signal: sig }).catch(() => {})
        if (theirs.peerId !== peerId)
          throw new InvalidInputError('presence peerId is not the connection peer')
        accept(theirs, 'direct')
        return theirs
      } catch (err) {
        logger.debug('presence exchange failed', { peer: peerId, err: describeError(err) })
        return undefined
      } finally {
        bound.clear()
      }
    },
    peers: () => table,
    lastHeard: (peerId) => {
      const e = table.get(peerId)
      return e?.lastHeard
    },
    noteHeard(peerId) {
      const e = table.get(peerId)
      if (e?.state !== 'up' || !admitted(peerId)) return
      const now = clock.monotonic()
      e.lastHeard = now
      if (gossipSince.has(peerId)) gossipSince.set(peerId, now)
    },
    paceOf,
    onPresence: (l) => subscribe(listeners, l),
    onGone: (l) => subscribe(goneListeners, l),
    onIntroduced: (l) => subscribe(introducedListeners, l),
    onSilent: (l) => subscribe(silentListeners, l),
    stats: () => ({ rejected, introduced, silent }),
  }
}
