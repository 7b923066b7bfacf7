/**
 * Admission: the mutual auth handshake ('/rmesh/auth/1.0.0'), who is admitted, the
 * wrapper that serves protocols to admitted peers only, and the log's authorization hook.
 * See protocols/auth-handshake.md.
 *
 * Invariants:
 *  - a peer is admitted only after it presented, on a noise-authenticated connection, a
 *    token of our mesh whose audience is that connection's remote peer id, valid now (with
 *    skew) and not revoked; nothing else admits;
 *  - a peer that presents a bad token is hung up on at once and denied by the gater; a peer
 *    that presents none (or never completes the handshake) is hung up on after a short grace,
 *    during which it may only redeem an invite;
 *  - a node with no token of its own admits nobody and serves nothing (it never hangs up
 *    either: the other side decides);
 *  - garbage on the handshake stream costs the peer its connection, never the process;
 *  - log entries are authorized without time checks (they are replayed later): mesh,
 *    signature, revocation and the capability the entry kind needs.
 */
import type { Connection, PeerId, Stream, StreamHandler } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from 'libp2p'
import { type LogEntry, MESH_LOG } from '../log/types.js'
import { DEFAULT_TIMEOUTS, deadline, withDeadline } from '../util/abort.js'
import type { Clock } from '../util/clock.js'
import { describeError, isRmeshError, type RmeshError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'
import { AdmissionError, TokenError } from './errors.js'
import type { AdmissionState } from './gater.js'
import { pickOwnToken } from './own-token.js'
import type { TokenStore } from './token-store.js'
import {
  type Capability,
  DEFAULT_SKEW_SECONDS,
  decodeToken,
  requireCapability,
  type Token,
  verifyToken,
} from './token.js'
import { framed, isMap } from './wire.js'

export const AUTH_PROTOCOL = '/rmesh/auth/1.0.0'
export const AUTH_VERSION = 1
/** A hello carries one token (≤ 8 KiB) plus a few bytes of framing. */
export const MAX_HELLO_BYTES = 9 * 1024
/** Kind of the mesh-log entry that carries a token so peers we never met can be authorized. */
export const ADMIT_KIND = 'admit'
/** The mesh-log entry that revokes a peer (admin only; its target loses admission). */
export const REVOKE_KIND = 'revoke'

export type CapabilityFor = (log: string, kind: string) => Capability | null

export interface AdmissionComponents {
  // biome-ignore lint/suspicious/noExplicitAny: any service map; admission uses only the core API.
  libp2p: Libp2p<any>
  tokens: TokenStore
  /** Shared with the connection gater created before libp2p. */
  state: AdmissionState
  clock: Clock
  logger: Logger
}

export interface AdmissionOptions {
  /** The mesh this node belongs to; if omitted, the mesh of this node's token (none → admits nobody). */
  meshId?: string
  capabilityFor?: CapabilityFor
  skewSeconds?: number
  /** Handshake round-trip limit. */
  handshakeTimeoutMs?: number
  /** How long an unadmitted connection may stay open (handshake, or an invite redemption). */
  graceMs?: number
  /** How long requireAdmitted waits for an in-flight handshake before resetting the stream. */
  requireWaitMs?: number
}

export interface RefusedEvent {
  peerId: string
  code: string
  message: string
}

export interface Admission {
  readonly meshId: string | undefined
  /** This node's current token, if any. */
  readonly token: Token | undefined
  start(): Promise<void>
  stop(): Promise<void>
  isAdmitted(peerId: string | PeerId): boolean
  /**
   * A peer this node may introduce itself to: admitted, or holding a token of the mesh that
   * the mesh log carried (verified, not revoked, not expired). Being a member grants
   * nothing; only the handshake on a connection admits.
   */
  isMember(peerId: string | PeerId): boolean
  waitAdmitted(peerId: string | PeerId, signal?: AbortSignal): Promise<void>
  admittedPeers(): string[]
  /** The token a currently admitted peer presented. */
  tokenOf(peerId: string | PeerId): Token | undefined
  requireAdmitted(handler: StreamHandler): StreamHandler
  /** For gossipsub topic validators: is the propagation source an admitted neighbour? */
  isAdmittedSource(peerId: string | PeerId): boolean
  onAdmitted(listener: (peerId: string, token: Token) => void): () => void
  onRefused(listener: (event: RefusedEvent) => void): () => void
  /** Re-read this node's token (after `join`/`renew`) and re-handshake with connected peers. */
  reloadToken(): Promise<Token | undefined>
  /** Revoke a token id or peer id (grow-only) and disconnect whoever it covers now. */
  revoke(tokenIdOrPeerId: string): Promise<boolean>
  /** The log's authorization hook. Throws ERR_AUTH_PENDING when the author's token is not known yet. */
  authorizeEntry(entry: LogEntry): Promise<void>
  /** Verify (mesh, signature, revocation) and remember a token seen in the mesh log. */
  learnToken(bytes: Uint8Array): Promise<Token>
  /** Keep an unadmitted connection open while an invite is redeemed; call the result when done. */
  holdUnadmitted(peerId: string): () => void
}

type Verdict =
  | { kind: 'admitted'; token: Token }
  | { kind: 'none' }
  | { kind: 'failed'; error: RmeshError }
  | { kind: 'unknown' }

/** Bytes that could not be a hello: over the frame limit or not CBOR. */
const isGarbage = (err: unknown): boolean =>
  isRmeshError(err, 'ERR_TOO_LARGE') ||
  isRmeshError(err, 'ERR_DECODE') ||
  /^Invalid(Data|Message)Length/.test((err as Error)?.name ?? '')

const toStr = (p: string | PeerId) => (typeof p === 'string' ? p : p.toString())

export function createAdmission(
  components: AdmissionComponents,
  options: AdmissionOptions = {},
): Admission {
  const { libp2p, tokens, state, clock } = components
  const log = components.logger.child('admission')
  const skew = options.skewSeconds ?? DEFAULT_SKEW_SECONDS
  const handshakeMs = options.handshakeTimeoutMs ?? DEFAULT_TIMEOUTS.handshake
  const graceMs = options.graceMs ?? 5_000
  const requireWaitMs = options.requireWaitMs ?? 2_000
  const selfId = libp2p.peerId.toString()
  let meshId = options.meshId
  let ownToken: Token | undefined
  let started = false

  const admitted = new Map<string, { token: Token; timer?: ReturnType<Clock['setTimeout']> }>()
  const holds = new Map<string, number>()
  const graceTimers = new Map<string, ReturnType<Clock['setTimeout']>>()
  const admittedListeners = new Set<(peerId: string, token: Token) => void>()
  const refusedListeners = new Set<(event: RefusedEvent) => void>()
  const waiters = new Map<string, Set<{ resolve: () => void; reject: (e: unknown) => void }>>()

  // Audience → the latest token the mesh log carried for it (bounded like the token cache).
  const members = new Map<string, Token>()
  const MAX_MEMBERS = 4096

  const revokedFor = (peer: string, t: Token): boolean =>
    tokens.isRevoked(peer) ||
    tokens.isRevoked(t.id) ||
    (t.proof !== undefined && tokens.isRevoked(t.proof.id))

  const isAdmitted = (p: string | PeerId): boolean => {
    const peer = toStr(p)
    const a = admitted.get(peer)
    return !!a && !revokedFor(peer, a.token)
  }

  const isMember = (p: string | PeerId): boolean => {
    const peer = toStr(p)
    if (isAdmitted(peer)) return true
    const t = members.get(peer)
    return !!t && !revokedFor(peer, t) && clock.wall() < (t.exp + skew) * 1000
  }

  const noteMember = (token: Token) => {
    const prev = members.get(token.aud)
    if (prev && prev.exp > token.exp) return
    members.delete(token.aud)
    members.set(token.aud, token)
    if (members.size > MAX_MEMBERS) members.delete(members.keys().next().value as string)
  }

  const settleWaiters = (peer: string, err?: unknown) => {
    const set = waiters.get(peer)
    if (!set) return
    waiters.delete(peer)
    for (const w of set) err ? w.reject(err) : w.resolve()
  }

  const hangUp = (peer: string) => {
    libp2p
      .hangUp(peerIdFromString(peer))
      .catch((err: unknown) => log.debug('hang up failed', { peer, err: describeError(err) }))
  }

  const unadmit = (peer: string) => {
    const a = admitted.get(peer)
    if (a?.timer) clock.clearTimeout(a.timer)
    admitted.delete(peer)
  }

  const clearGrace = (peer: string) => {
    const t = graceTimers.get(peer)
    if (t) clock.clearTimeout(t)
    graceTimers.delete(peer)
  }

  const refuse = (peer: string, error: RmeshError, disconnectNow: boolean) => {
    unadmit(peer)
    const code = error.code
    if (code === 'ERR_AUTH_NO_TOKEN') state.deny(peer, 'no-token')
    else if (code === 'ERR_TOKEN_EXPIRED' || code === 'ERR_TOKEN_NOT_YET_VALID')
      state.deny(peer, 'expired')
    else if (code !== 'ERR_TOKEN_REVOKED') state.deny(peer, 'bad-token')
    log.warn('peer refused', { peer, code, reason: error.message })
    for (const l of refusedListeners) l({ peerId: peer, code, message: error.message })
    settleWaiters(peer, error)
    if (disconnectNow) hangUp(peer)
    else scheduleGrace(peer)
  }

  /** Hang up on a still-unadmitted peer once the grace is over and no invite is in progress. */
  const scheduleGrace = (peer: string) => {
    if (graceTimers.has(peer)) return
    graceTimers.set(
      peer,
      clock.setTimeout(() => {
        graceTimers.delete(peer)
        if (isAdmitted(peer) || (holds.get(peer) ?? 0) > 0 || !ownToken) return
        if (state.denial(peer) === undefined) state.deny(peer, 'no-token')
        log.info('unadmitted peer disconnected after grace', { peer })
        hangUp(peer)
      }, graceMs),
    )
  }

  const admit = (peer: string, token: Token) => {
    noteMember(token)
    const prev = admitted.get(peer)
    if (prev?.timer) clock.clearTimeout(prev.timer)
    clearGrace(peer)
    state.allow(peer)
    // Re-check at expiry (+ skew): a peer that did not renew is cut off. Long delays are
    // chunked because timers cannot exceed ~24.8 days.
    const dueMs = (token.exp + skew) * 1000
    const arm = (): ReturnType<Clock['setTimeout']> =>
      clock.setTimeout(
        () => {
          const cur = admitted.get(peer)
          if (!cur || cur.token.id !== token.id) return
          if (clock.wall() < dueMs) {
            cur.timer = arm()
            return
          }
          refuse(
            peer,
            new TokenError('ERR_TOKEN_EXPIRED', `token ${token.id} of ${peer} expired`),
            true,
          )
        },
        Math.max(0, Math.min(dueMs - clock.wall(), 86_400_000)),
      )
    admitted.set(peer, { token, timer: arm() })
    tokens
      .rememberToken(token)
      .catch((err: unknown) => log.debug('cannot store token', { err: describeError(err) }))
    if (!prev || prev.token.id !== token.id) {
      log.info('peer admitted', { peer, token: token.id, caps: token.cap })
      for (const l of admittedListeners) l(peer, token)
    }
    settleWaiters(peer)
  }

  const evaluate = async (peer: string, tokenBytes: unknown): Promise<Verdict> => {
    if (!meshId || !ownToken) return { kind: 'unknown' }
    if (tokenBytes === null || tokenBytes === undefined) return { kind: 'none' }
    if (!(tokenBytes instanceof Uint8Array)) {
      return {
        kind: 'failed',
        error: new TokenError('ERR_TOKEN_MALFORMED', 'handshake token is not bytes'),
      }
    }
    try {
      const token = decodeToken(tokenBytes)
      await verifyToken(token, {
        meshId,
        now: clock.wall(),
        audience: peer,
        revoked: tokens.isRevoked,
        skewSeconds: skew,
      })
      return { kind: 'admitted', token }
    } catch (err) {
      return {
        kind: 'failed',
        error: isRmeshError(err)
          ? err
          : new AdmissionError('ERR_AUTH_HANDSHAKE', describeError(err)),
      }
    }
  }

  /** Apply a verdict; returns the refusal code to tell the peer, if any. */
  const apply = (peer: string, verdict: Verdict): string | undefined => {
    switch (verdict.kind) {
      case 'admitted':
        admit(peer, verdict.token)
        return undefined
      case 'none':
        refuse(peer, new AdmissionError('ERR_AUTH_NO_TOKEN', `${peer} presented no token`), false)
        return 'ERR_AUTH_NO_TOKEN'
      case 'failed':
        refuse(peer, verdict.error, true)
        return verdict.error.code
      case 'unknown':
        return ownToken ? undefined : 'ERR_AUTH_NO_TOKEN'
    }
  }

  const hello = () => ({ v: AUTH_VERSION, token: ownToken ? ownToken.bytes : null })

  const malformedHello = (peer: string) =>
    apply(peer, {
      kind: 'failed',
      error: new AdmissionError('ERR_AUTH_HANDSHAKE', 'malformed handshake message'),
    })

  /** Responder side. */
  const onAuthStream = async (stream: Stream, connection: Connection) => {
    const peer = connection.remotePeer.toString()
    const bound = deadline(handshakeMs)
    const signal = bound.signal
    const io = framed(stream, MAX_HELLO_BYTES, 'auth hello')
    try {
      const msg = await io.read(signal)
      if (!isMap(msg) || msg.v !== AUTH_VERSION) {
        malformedHello(peer)
        stream.abort(new AdmissionError('ERR_AUTH_HANDSHAKE', 'malformed hello'))
        return
      }
      const code = apply(peer, await evaluate(peer, msg.token))
      await io.write({ ...hello(), ok: code === undefined, ...(code ? { code } : {}) }, signal)
      await stream.close({ signal })
    } catch (err) {
      log.info('auth handshake failed', { peer, err: describeError(err) })
      if (isGarbage(err)) malformedHello(peer)
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      bound.clear()
    }
  }

  /** Initiator side, on one connection. */
  const handshake = async (connection: Connection): Promise<void> => {
    const peer = connection.remotePeer.toString()
    const bound = deadline(handshakeMs)
    const signal = bound.signal
    let stream: Stream | undefined
    try {
      stream = await connection.newStream(AUTH_PROTOCOL, { signal })
      const io = framed(stream, MAX_HELLO_BYTES, 'auth reply')
      await io.write(hello(), signal)
      const reply = await io.read(signal)
      await stream.close({ signal }).catch(() => undefined)
      if (!isMap(reply) || reply.v !== AUTH_VERSION) {
        malformedHello(peer)
        return
      }
      if (reply.ok === false)
        log.warn('peer refused our token', { peer, code: String(reply.code).slice(0, 60) })
      apply(peer, await evaluate(peer, reply.token))
    } catch (err) {
      stream?.abort(err instanceof Error ? err : new Error(String(err)))
      if (isGarbage(err)) malformedHello(peer)
      else log.debug('auth handshake did not complete', { peer, err: describeError(err) })
      // A peer that cannot complete the handshake is treated like one without a token.
      if (ownToken && !isAdmitted(peer)) scheduleGrace(peer)
    } finally {
      bound.clear()
    }
  }

  const onConnectionOpen = (evt: CustomEvent<Connection>) => {
    const connection = evt.detail
    const peer = connection.remotePeer.toString()
    if (tokens.isRevoked(peer)) {
      hangUp(peer)
      return
    }
    if (ownToken && !isAdmitted(peer)) scheduleGrace(peer)
    // Only the dialer starts, so one connection carries one handshake.
    if (connection.direction === 'outbound') void handshake(connection)
  }

  const onConnectionClose = (evt: CustomEvent<Connection>) => {
    const peer = evt.detail.remotePeer.toString()
    if (
      libp2p
        .getConnections(evt.detail.remotePeer)
        .some((c) => c.id !== evt.detail.id && c.status === 'open')
    )
      return
    unadmit(peer)
    clearGrace(peer)
  }

  const revokedListener = (name: string) => {
    for (const [peer, a] of [...admitted]) {
      if (peer === name || a.token.id === name || a.token.proof?.id === name) {
        refuse(peer, new TokenError('ERR_TOKEN_REVOKED', `${peer} was revoked (${name})`), true)
      }
    }
    if (libp2p.getConnections().some((c) => c.remotePeer.toString() === name)) hangUp(name)
  }
  let offRevoked: (() => void) | undefined

  const loadOwnToken = async (): Promise<Token | undefined> => {
    const token = await pickOwnToken(tokens, {
      peerId: selfId,
      meshId,
      nowMs: clock.wall(),
      skewSeconds: skew,
    })
    ownToken = token
    if (token && !meshId) meshId = token.mesh
    return token
  }

  const learnToken = async (bytes: Uint8Array): Promise<Token> => {
    if (!meshId)
      throw new AdmissionError(
        'ERR_AUTH_NO_TOKEN',
        'this node has no token yet, so it knows no mesh',
      )
    const token = decodeToken(bytes)
    await verifyToken(token, { meshId, now: null, revoked: tokens.isRevoked })
    await tokens.rememberToken(token)
    noteMember(token)
    return token
  }

  const api: Admission = {
    get meshId() {
      return meshId
    },
    get token() {
      return ownToken
    },
    async start() {
      if (started) return
      started = true
      await loadOwnToken()
      if (!ownToken) {
        log.warn(
          'this node has no token: it admits nobody and serves nothing until it joins a mesh',
          { peerId: selfId },
        )
      }
      await libp2p.handle(AUTH_PROTOCOL, onAuthStream, {
        maxInboundStreams: 4,
        maxOutboundStreams: 4,
      })
      libp2p.addEventListener('connection:open', onConnectionOpen)
      libp2p.addEventListener('connection:close', onConnectionClose)
      offRevoked = tokens.onRevoked(revokedListener)
      for (const c of libp2p.getConnections()) {
        if (ownToken) scheduleGrace(c.remotePeer.toString())
        void handshake(c)
      }
    },
    async stop() {
      if (!started) return
      started = false
      libp2p.removeEventListener('connection:open', onConnectionOpen)
      libp2p.removeEventListener('connection:close', onConnectionClose)
      offRevoked?.()
      await libp2p.unhandle(AUTH_PROTOCOL).catch(() => undefined)
      for (const peer of [...admitted.keys()]) unadmit(peer)
      for (const peer of [...graceTimers.keys()]) clearGrace(peer)
      for (const peer of [...waiters.keys()])
        settleWaiters(peer, new AdmissionError('ERR_AUTH_NOT_ADMITTED', 'admission stopped'))
    },
    isAdmitted,
    isMember,
    async waitAdmitted(p, signal) {
      const peer = toStr(p)
      if (isAdmitted(peer)) return
      const bound = signal ? undefined : deadline(handshakeMs)
      const sig = signal ?? bound!.signal
      await new Promise<void>((resolve, reject) => {
        const w = {
          resolve: () => {
            sig.removeEventListener('abort', onAbort)
            resolve()
          },
          reject: (e: unknown) => {
            sig.removeEventListener('abort', onAbort)
            reject(e)
          },
        }
        const onAbort = () => {
          waiters.get(peer)?.delete(w)
          reject(new AdmissionError('ERR_AUTH_NOT_ADMITTED', `${peer} was not admitted in time`))
        }
        if (sig.aborted) return onAbort()
        sig.addEventListener('abort', onAbort, { once: true })
        const set = waiters.get(peer) ?? new Set()
        waiters.set(peer, set)
        set.add(w)
      }).finally(() => bound?.clear())
    },
    admittedPeers: () => [...admitted.keys()].filter(isAdmitted),
    tokenOf(p) {
      const peer = toStr(p)
      return isAdmitted(peer) ? admitted.get(peer)?.token : undefined
    },
    requireAdmitted(handler) {
      return async (stream, connection) => {
        const peer = connection.remotePeer.toString()
        if (!isAdmitted(peer)) {
          try {
            await withDeadline(requireWaitMs, undefined, (signal) => api.waitAdmitted(peer, signal))
          } catch {
            log.warn('stream from unadmitted peer reset', { peer, protocol: stream.protocol })
            stream.abort(new AdmissionError('ERR_AUTH_NOT_ADMITTED', `${peer} is not admitted`))
            return
          }
        }
        return handler(stream, connection)
      }
    },
    isAdmittedSource: (p) => isAdmitted(p),
    onAdmitted(listener) {
      admittedListeners.add(listener)
      return () => admittedListeners.delete(listener)
    },
    onRefused(listener) {
      refusedListeners.add(listener)
      return () => refusedListeners.delete(listener)
    },
    async reloadToken() {
      const before = ownToken?.id
      const token = await loadOwnToken()
      if (token && token.id !== before) {
        log.info('using token', {
          token: token.id,
          caps: token.cap,
          expires: new Date(token.exp * 1000).toISOString(),
        })
        await Promise.all(libp2p.getConnections().map((c) => handshake(c)))
      }
      return token
    },
    revoke: (name) => tokens.revoke(name),
    async authorizeEntry(entry) {
      if (!meshId)
        throw new AdmissionError(
          'ERR_AUTH_PENDING',
          'this node has no token yet, so it cannot authorize entries',
        )
      let token = await tokens.getToken(entry.tok)
      const body = entry.body as { token?: unknown } | undefined
      const isAdmit = entry.log === MESH_LOG && entry.kind === ADMIT_KIND
      if (isAdmit && (!isMap(body) || !(body.token instanceof Uint8Array))) {
        throw new AdmissionError('ERR_AUTH_HANDSHAKE', 'an admit entry carries { token: bytes }')
      }
      const carried = isAdmit ? decodeToken((body as { token: Uint8Array }).token) : undefined
      // An admit entry may carry its author's own token: it authorizes itself.
      if (!token && carried && carried.id === entry.tok) token = carried
      if (!token)
        throw new AdmissionError(
          'ERR_AUTH_PENDING',
          `token ${entry.tok} of ${entry.author} is not known yet`,
          { tok: entry.tok },
        )
      await verifyToken(token, {
        meshId,
        now: null,
        audience: entry.author,
        revoked: tokens.isRevoked,
      })
      if (carried) {
        await verifyToken(carried, { meshId, now: null, revoked: tokens.isRevoked })
        // Announcing one's own token needs no capability; announcing another's needs admin.
        if (carried.aud !== entry.author) requireCapability(token, 'admin')
        await tokens.rememberToken(carried)
        return
      }
      const cap = options.capabilityFor?.(entry.log, entry.kind) ?? null
      if (cap === null) {
        throw new AdmissionError(
          'ERR_AUTH_UNKNOWN_KIND',
          `no capability is defined for '${entry.kind}' entries in ${entry.log}`,
        )
      }
      requireCapability(token, cap)
    },
    learnToken,
    holdUnadmitted(peer) {
      holds.set(peer, (holds.get(peer) ?? 0) + 1)
      let done = false
      return () => {
        if (done) return
        done = true
        const n = (holds.get(peer) ?? 1) - 1
        if (n <= 0) holds.delete(peer)
        else holds.set(peer, n)
        if (!isAdmitted(peer) && ownToken) {
          clearGrace(peer)
          scheduleGrace(peer)
        }
      }
    },
  }
  return api
}
