/**
 * Spreading the log: gossip for new entries, anti-entropy for everything else
 * (protocols/log-sync.md).
 *
 * Invariants:
 *  - nothing relies on one gossip message arriving: anti-entropy runs on connect (or when
 *    the daemon admits a peer), on subscription change, periodically with a random peer
 *    (every intervalMs while the log changes, slowing to restIntervalMs at rest), and
 *    whenever gossip reveals missing parents;
 *  - gossip is validated before it is forwarded: size, decode, schema, signature, and the
 *    admission of both the origin and the propagation source; sync is served to admitted
 *    peers only;
 *  - every session has a deadline (sessions themselves: session.ts); at most maxServes
 *    inbound sessions run at once;
 *  - at most one session per peer runs at a time; further requests coalesce into one
 *    follow-up session;
 *  - a log gossip message is also its publisher's pulse (protocols/presence.md "Log gossip
 *    is a heartbeat"): onPublisherHeard names the StrictSign origin of every message
 *    delivered here (validated, first copy), lastPublishedAt tells when this node last
 *    published one; nothing else is inferred from it.
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { type Message, TopicValidatorResult } from '@libp2p/gossipsub'
import type { LogManager } from '../log/log.js'
import type { LogEntry } from '../log/types.js'
import type { RmeshLibp2p } from '../net/host.js'
import { DEFAULT_TIMEOUTS, deadline, withDeadline } from '../util/abort.js'
import type { Clock, TimerHandle } from '../util/clock.js'
import { describeError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'
import {
  decodeGossip,
  encodeGossip,
  LOG_TOPIC,
  MAX_GOSSIP_BYTES,
  MAX_GOSSIP_ENTRIES,
  NotAdmittedError,
  SYNC_PROTOCOL,
  SyncProtocolError,
} from './messages.js'
import { createRoundPacer } from './pacer.js'
import { createSessions, type SessionResult } from './session.js'

export type { SessionResult } from './session.js'

export interface LogSyncComponents {
  libp2p: RmeshLibp2p
  log: LogManager
  logger: Logger
  clock: Clock
  /** Admission check; when absent every peer is served and sync runs on 'peer:connect'. */
  isAdmitted?: (peerId: string) => boolean
  /** Randomness for the periodic peer choice and jitter. */
  random?: () => number
}

export interface LogSyncOptions {
  /** Period of anti-entropy with a random connected peer while the log changes. Default 5000 ms. */
  intervalMs?: number
  /**
   * The longest period when nothing changes (sync/pacer.ts): quiet rounds double the period
   * up to this. Default 12 × intervalMs (60 s).
   */
  restIntervalMs?: number
  /** Deadline of one whole sync session (initiator side). Default 30 s. */
  timeoutMs?: number
  /** Deadline of one read on the responder side. Default DEFAULT_TIMEOUTS.request. */
  readTimeoutMs?: number
  /** Deadline of one whole session on the responder side. Default 60 s. */
  serveTimeoutMs?: number
  /** Concurrent inbound sessions. Default 8. */
  maxServes?: number
  /** Gossip entries this node appends. Default true. */
  autoPublish?: boolean
  /**
   * Entries appended within this delay go out in one gossip message. Default 10 ms: long
   * enough that a renderer's complete entry and its next claim, written one pass apart,
   * share a message (each message costs every node of the mesh, issue 17); short against
   * the second within which a frame starts.
   */
  publishDelayMs?: number
  /**
   * The delay instead while appends keep coming (a flush less than this long ago): a burst
   * goes out in a few large messages rather than one per 10 ms, each of which every node
   * receives about D times. Default 20 ms.
   */
  burstDelayMs?: number
}

export interface LogSync {
  start(): Promise<void>
  stop(): Promise<void>
  syncWith(peer: PeerId | string, options?: { signal?: AbortSignal }): Promise<SessionResult>
  publish(entry: LogEntry): void
  /** Monotonic ms when this node last published a gossip message (-Infinity: never). */
  lastPublishedAt(): number
  /** Called with the origin of every log gossip message delivered here (first copy, validated). */
  onPublisherHeard(listener: (peerId: string) => void): () => void
}

export function createLogSync(
  components: LogSyncComponents,
  options: LogSyncOptions = {},
): LogSync {
  const { libp2p, log, clock } = components
  const logger = components.logger.child('sync')
  const random = components.random ?? Math.random
  const intervalMs = options.intervalMs ?? 5_000
  const pacer = createRoundPacer({
    baseMs: intervalMs,
    restMs: options.restIntervalMs ?? intervalMs * 12,
  })
  const timeoutMs = options.timeoutMs ?? 30_000
  const readTimeoutMs = options.readTimeoutMs ?? DEFAULT_TIMEOUTS.request
  const serveTimeoutMs = options.serveTimeoutMs ?? 60_000
  const maxServes = options.maxServes ?? 8
  const autoPublish = options.autoPublish ?? true
  const publishDelayMs = options.publishDelayMs ?? 10
  const burstDelayMs = Math.max(publishDelayMs, options.burstDelayMs ?? 20)
  const pubsub = libp2p.services.pubsub
  const self = libp2p.peerId.toString()

  const admitted = (peer: string) => (components.isAdmitted ? components.isAdmitted(peer) : true)
  let running = false
  let stopping = new AbortController()
  let timer: TimerHandle | undefined
  let publishTimer: TimerHandle | undefined
  let outbox: Uint8Array[] = []
  let outboxBytes = 0
  let lastFlush = Number.NEGATIVE_INFINITY
  let serving = 0
  const sessions = new Map<string, Promise<SessionResult>>()
  const followUps = new Map<string, Promise<SessionResult>>()
  const cleanups: Array<() => void> = []
  const publisherListeners = new Set<(peerId: string) => void>()
  const sessionsImpl = createSessions({ libp2p, log, logger }, { readTimeoutMs })

  // ---------------------------------------------------------------- initiator

  function syncWith(
    peer: PeerId | string,
    opts: { signal?: AbortSignal } = {},
  ): Promise<SessionResult> {
    const key = peer.toString()
    const queued = followUps.get(key)
    if (queued) return queued
    const current = sessions.get(key)
    if (current) {
      const next = current
        .catch(() => undefined)
        .then(() => {
          followUps.delete(key)
          return begin(key, opts)
        })
      followUps.set(key, next)
      return next
    }
    return begin(key, opts)
  }

  function begin(key: string, opts: { signal?: AbortSignal }): Promise<SessionResult> {
    const p = initiate(key, opts.signal).finally(() => {
      if (sessions.get(key) === p) sessions.delete(key)
    })
    sessions.set(key, p)
    return p
  }

  function initiate(key: string, callerSignal?: AbortSignal): Promise<SessionResult> {
    return withDeadline(timeoutMs, [callerSignal, stopping.signal], (signal) =>
      sessionsImpl.initiate(key, signal),
    )
  }

  // ---------------------------------------------------------------- responder

  async function serve(stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    if (!admitted(peer)) {
      stream.abort(new NotAdmittedError(peer))
      return
    }
    if (serving >= maxServes) {
      stream.abort(new SyncProtocolError('busy'))
      return
    }
    serving++
    const bound = deadline(serveTimeoutMs, stopping.signal)
    try {
      const { behind } = await sessionsImpl.serve(stream, peer, bound.signal)
      // The initiator has entries we lack: pull them with a session of our own.
      if (behind && running) background(peer, 'responder behind')
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      bound.clear()
      serving--
    }
  }

  // ---------------------------------------------------------------- gossip

  function publish(entry: LogEntry): void {
    if (!running) return
    if (
      outboxBytes + entry.bytes.byteLength > MAX_GOSSIP_BYTES - 1024 ||
      outbox.length >= MAX_GOSSIP_ENTRIES
    ) {
      flushOutbox()
    }
    outbox.push(entry.bytes)
    outboxBytes += entry.bytes.byteLength
    if (!publishTimer) {
      const busy = clock.monotonic() - lastFlush < burstDelayMs
      publishTimer = clock.setTimeout(flushOutbox, busy ? burstDelayMs : publishDelayMs)
    }
  }

  function flushOutbox(): void {
    if (publishTimer) clock.clearTimeout(publishTimer)
    publishTimer = undefined
    if (outbox.length === 0) return
    lastFlush = clock.monotonic()
    const data = encodeGossip(outbox)
    outbox = []
    outboxBytes = 0
    pubsub
      .publish(LOG_TOPIC, data)
      .catch((err) => logger.debug('gossip publish failed', { err: describeError(err) }))
  }

  const validated = new WeakMap<Message, LogEntry[]>()
  const validator = async (source: PeerId, msg: Message): Promise<TopicValidatorResult> => {
    if (msg.type !== 'signed') return TopicValidatorResult.Reject
    if (!admitted(source.toString()) || !admitted(msg.from.toString()))
      return TopicValidatorResult.Reject
    try {
      const fresh: LogEntry[] = []
      for (const bytes of decodeGossip(msg.data)) {
        const e = await log.validate(bytes)
        if (e) fresh.push(e)
      }
      // Handed to onGossip so a message is decoded and verified once, not twice.
      validated.set(msg, fresh)
      return TopicValidatorResult.Accept
    } catch (err) {
      logger.debug('gossip message rejected', { from: source.toString(), err: describeError(err) })
      return TopicValidatorResult.Reject
    }
  }

  async function onGossip(source: PeerId, msg: Message): Promise<void> {
    const entries = validated.get(msg) ?? decodeGossip(msg.data)
    validated.delete(msg)
    if (entries.length === 0) return
    const r = await log.join(entries)
    if (r.missing.length > 0) background(source.toString(), 'missing parents')
  }

  // ---------------------------------------------------------------- triggers

  function background(peer: string, why: string): void {
    if (!running || peer === self) return
    syncWith(peer).then(
      (r) => logger.debug('sync done', { peer, why, received: r.received }),
      (err) => logger.debug('sync failed', { peer, why, err: describeError(err) }),
    )
  }

  function schedule(): void {
    if (!running) return
    timer = clock.setTimeout(tick, pacer.nextDelay(random()))
  }

  /** An entry arrived or was appended: a slowed pace comes back to intervalMs at once. */
  function noteActivity(): void {
    if (!pacer.activity() || !running) return
    if (timer) clock.clearTimeout(timer)
    timer = clock.setTimeout(tick, Math.round(intervalMs * (0.5 + random())))
  }

  function tick(): void {
    if (!running) return
    const peers = libp2p
      .getPeers()
      .map((p) => p.toString())
      .filter((p) => admitted(p))
    if (peers.length > 0)
      background(peers[Math.floor(random() * peers.length) % peers.length], 'periodic')
    schedule()
  }

  function listen<T>(target: EventTarget, type: string, fn: (evt: CustomEvent<T>) => void): void {
    const handler = (evt: Event) => fn(evt as CustomEvent<T>)
    target.addEventListener(type, handler)
    cleanups.push(() => target.removeEventListener(type, handler))
  }

  return {
    async start() {
      if (running) return
      running = true
      stopping = new AbortController()
      await libp2p.handle(SYNC_PROTOCOL, serve, { maxInboundStreams: 32, maxOutboundStreams: 32 })
      pubsub.topicValidators.set(LOG_TOPIC, validator)
      pubsub.subscribe(LOG_TOPIC)
      listen<{ propagationSource: PeerId; msg: Message }>(pubsub, 'gossipsub:message', (evt) => {
        const { propagationSource, msg } = evt.detail
        if (msg.topic !== LOG_TOPIC) return
        if (msg.type === 'signed') {
          const origin = msg.from.toString()
          for (const l of publisherListeners) l(origin)
        }
        onGossip(propagationSource, msg).catch((err) =>
          logger.debug('gossip join failed', { err: describeError(err) }),
        )
      })
      listen<{ peerId: PeerId; subscriptions: Array<{ topic: string; subscribe: boolean }> }>(
        pubsub,
        'subscription-change',
        (evt) => {
          const { peerId, subscriptions } = evt.detail
          if (
            subscriptions.some((s) => s.topic === LOG_TOPIC && s.subscribe) &&
            admitted(peerId.toString())
          ) {
            background(peerId.toString(), 'subscribed')
          }
        },
      )
      if (!components.isAdmitted) {
        listen<PeerId>(libp2p as unknown as EventTarget, 'peer:connect', (evt) =>
          background(evt.detail.toString(), 'connect'),
        )
      }
      cleanups.push(
        log.onEntry((e, origin) => {
          if (autoPublish && origin === 'append') publish(e)
          noteActivity()
        }),
      )
      schedule()
    },

    async stop() {
      if (!running) return
      flushOutbox()
      running = false
      stopping.abort()
      if (timer) clock.clearTimeout(timer)
      timer = undefined
      for (const c of cleanups.splice(0)) c()
      if (pubsub.topicValidators.get(LOG_TOPIC) === validator)
        pubsub.topicValidators.delete(LOG_TOPIC)
      try {
        pubsub.unsubscribe(LOG_TOPIC)
        await libp2p.unhandle(SYNC_PROTOCOL)
      } catch (err) {
        logger.debug('sync stop', { err: describeError(err) })
      }
      await Promise.allSettled([...sessions.values(), ...followUps.values()])
    },

    syncWith,
    publish,
    lastPublishedAt: () => lastFlush,
    onPublisherHeard(listener) {
      publisherListeners.add(listener)
      return () => publisherListeners.delete(listener)
    },
  }
}
