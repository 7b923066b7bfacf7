/**
 * Invites: a short-lived, single-use ticket that lets a new machine obtain a token from
 * the inviting node over '/rmesh/invite/1.0.0' (see protocols/invite.md).
 *
 * Invariants:
 *  - only the inviter can redeem its invite (it signed it with its node key and checks
 *    `iss` is itself), so the used-nonce set is local and atomic (token store queue);
 *  - the nonce is marked used *before* the token is issued: two concurrent redemptions
 *    admit at most one machine, and a crash in between burns the invite rather than
 *    reusing it;
 *  - the token is bound to the remote peer id of the noise-authenticated connection the
 *    invite arrived on, never to anything the newcomer claims;
 *  - the request is size-checked before decoding; any failure is answered with a code.
 */
import type { Connection, PrivateKey, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from 'libp2p'
import type { PeerIdString } from '../log/types.js'
import { DEFAULT_TIMEOUTS, deadline, raceSignal, withDeadline } from '../util/abort.js'
import { fromBase64Url, toBase64Url } from '../util/bytes.js'
import { decodeBounded, encode } from '../util/cbor.js'
import type { Clock } from '../util/clock.js'
import { describeError, isRmeshError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'
import type { Admission } from './admission.js'
import { InviteError, TokenError } from './errors.js'
import { peerIdOf, verifyByPeerId } from './identity.js'
import type { TokenIssuer } from './issuer.js'
import { checkMemberAddrs } from './member-addrs.js'
import { isMeshId, meshIdOf } from './mesh.js'
import type { TokenStore } from './token-store.js'
import { decodeToken, normalizeCaps, type Token, type TokenLimits, verifyToken } from './token.js'
import { framed, isMap } from './wire.js'

export const INVITE_PROTOCOL = '/rmesh/invite/1.0.0'
export const INVITE_VERSION = 1
export const INVITE_STRING_PREFIX = 'rmesh-invite-'
export const MAX_INVITE_BYTES = 4 * 1024
/** The reply carries one token (≤ 8 KiB) and the owner key. */
export const MAX_INVITE_REPLY_BYTES = 9 * 1024
export const DEFAULT_INVITE_TTL_SECONDS = 3600
const MAX_ADDRS = 16
const SIGNING_DOMAIN = new TextEncoder().encode('rmesh/invite/1\n')
const FIELDS = ['v', 'mesh', 'iss', 'cap', 'exp', 'ttl', 'lim', 'nnc', 'addrs'] as const

export interface Invite {
  v: number
  mesh: string
  iss: PeerIdString
  cap: string[]
  /** Expiry of the invite, seconds since the epoch. */
  exp: number
  /** Lifetime in seconds of the token it yields. */
  ttl: number
  lim: TokenLimits
  nnc: Uint8Array
  addrs: string[]
  /** Full multiaddrs (with /p2p/) of a few other members: where to go when the inviter is away. */
  mem: string[]
  bytes: Uint8Array
  payloadBytes: Uint8Array
  signature: Uint8Array
}

const bad = (message: string, cause?: unknown) =>
  new InviteError('ERR_INVITE_MALFORMED', `malformed invite: ${message}`, undefined, cause)

function signingInput(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(SIGNING_DOMAIN.byteLength + payload.byteLength)
  out.set(SIGNING_DOMAIN)
  out.set(payload, SIGNING_DOMAIN.byteLength)
  return out
}

/** Decode and schema-check an invite (size first). Signature is checked by verifyInviteSignature. */
export function decodeInvite(bytes: Uint8Array): Invite {
  let env: unknown
  let p: unknown
  try {
    env = decodeBounded(bytes, MAX_INVITE_BYTES, 'invite')
    if (
      !Array.isArray(env) ||
      env.length !== 2 ||
      !(env[0] instanceof Uint8Array) ||
      !(env[1] instanceof Uint8Array) ||
      env[1].byteLength !== 64
    ) {
      throw bad('envelope is not [payload, signature]')
    }
    p = decodeBounded(env[0], MAX_INVITE_BYTES, 'invite payload')
  } catch (err) {
    if (err instanceof InviteError) throw err
    throw bad((err as Error).message, err)
  }
  const keys = isMap(p) ? Object.keys(p).join(',') : ''
  if (!isMap(p) || (keys !== FIELDS.join(',') && keys !== [...FIELDS, 'mem'].join(',')))
    throw bad(`fields must be ${FIELDS.join(',')}[,mem]`)
  if (p.v !== INVITE_VERSION) throw bad('unsupported version')
  if (!isMeshId(p.mesh)) throw bad('mesh is not a mesh id')
  if (typeof p.iss !== 'string' || p.iss.length > 128) throw bad('iss is not a peer id')
  try {
    peerIdFromString(p.iss)
  } catch (err) {
    throw bad('iss is not a peer id', err)
  }
  if (!Array.isArray(p.cap)) throw bad('cap is not a list')
  let cap: string[]
  try {
    cap = normalizeCaps(p.cap as string[])
  } catch (err) {
    throw bad('cap is not a capability list', err)
  }
  const uint = (x: unknown) => typeof x === 'number' && Number.isSafeInteger(x) && x > 0
  if (!uint(p.exp) || !uint(p.ttl)) throw bad('exp/ttl are not positive integer seconds')
  if (!isMap(p.lim)) throw bad('lim is not a map')
  const lim: TokenLimits = {}
  for (const [k, val] of Object.entries(p.lim)) {
    if (k !== 'maxQueuedJobs' || typeof val !== 'number' || !Number.isSafeInteger(val) || val < 0)
      throw bad('bad limit')
    lim.maxQueuedJobs = val
  }
  if (!(p.nnc instanceof Uint8Array) || p.nnc.byteLength !== 16) throw bad('nnc is not 16 bytes')
  if (
    !Array.isArray(p.addrs) ||
    p.addrs.length > MAX_ADDRS ||
    !p.addrs.every((a) => typeof a === 'string' && a.length <= 256)
  ) {
    throw bad('addrs is not a list of multiaddr strings')
  }
  let mem: string[] = []
  if (p.mem !== undefined) {
    try {
      mem = checkMemberAddrs(p.mem)
    } catch (err) {
      throw bad('mem is not a list of member multiaddrs', err)
    }
  }
  const e = env as Uint8Array[]
  return {
    mem,
    v: p.v,
    mesh: p.mesh,
    iss: p.iss as PeerIdString,
    cap,
    exp: p.exp as number,
    ttl: p.ttl as number,
    lim,
    nnc: new Uint8Array(p.nnc),
    addrs: [...(p.addrs as string[])],
    bytes: new Uint8Array(bytes),
    payloadBytes: new Uint8Array(e[0]),
    signature: new Uint8Array(e[1]),
  }
}

export async function verifyInviteSignature(invite: Invite): Promise<void> {
  if (!(await verifyByPeerId(invite.iss, signingInput(invite.payloadBytes), invite.signature))) {
    throw new InviteError('ERR_INVITE_SIGNATURE', 'the invite signature does not verify')
  }
}

export function formatInvite(invite: Invite | Uint8Array): string {
  return INVITE_STRING_PREFIX + toBase64Url(invite instanceof Uint8Array ? invite : invite.bytes)
}

export function parseInviteString(text: string): Invite {
  if (typeof text !== 'string' || text.length > MAX_INVITE_BYTES * 2)
    throw bad('not an invite string')
  const s = text.trim()
  if (!s.startsWith(INVITE_STRING_PREFIX))
    throw bad(`an invite starts with '${INVITE_STRING_PREFIX}'`)
  const body = s.slice(INVITE_STRING_PREFIX.length)
  if (!/^[A-Za-z0-9_-]+$/.test(body)) throw bad('not base64url')
  return decodeInvite(fromBase64Url(body))
}

export interface CreateInviteOptions {
  caps: readonly string[]
  /** Invite lifetime (default 1 h). */
  expiresInSeconds?: number
  /** Lifetime of the token it yields (default 30 days). */
  tokenTtlSeconds?: number
  limits?: TokenLimits
  /** Addresses the newcomer should dial (this node's listen addresses, without /p2p). */
  addrs: readonly string[]
  /** A few other members' full addresses (auth/member-addrs.ts), for a newcomer beyond the LAN. */
  members?: readonly string[]
  nonce?: Uint8Array
}

/** Create an invite signed by this node; refuses caps this node may not grant. */
export async function createInvite(
  components: {
    nodeKey: PrivateKey
    issuer: TokenIssuer
    meshId: string
    clock: Clock
    random?: (n: number) => Uint8Array
  },
  options: CreateInviteOptions,
): Promise<Invite> {
  const caps = normalizeCaps(options.caps)
  const grantable = await components.issuer.grantable()
  if (!grantable.includes('admin') || caps.some((c) => !grantable.includes(c))) {
    throw new InviteError(
      'ERR_INVITE_NOT_ADMIN',
      `this node may not grant ${caps.join(',')}: it needs an admin token holding them`,
    )
  }
  const now = Math.floor(components.clock.wall() / 1000)
  const random = components.random ?? ((n: number) => crypto.getRandomValues(new Uint8Array(n)))
  const lim: TokenLimits = {}
  if (options.limits?.maxQueuedJobs !== undefined) lim.maxQueuedJobs = options.limits.maxQueuedJobs
  const payload = encode({
    v: INVITE_VERSION,
    mesh: components.meshId,
    iss: peerIdOf(components.nodeKey),
    cap: caps,
    exp: now + (options.expiresInSeconds ?? DEFAULT_INVITE_TTL_SECONDS),
    ttl: options.tokenTtlSeconds ?? 30 * 86_400,
    lim,
    nnc: options.nonce ?? random(16),
    // Only this node's own /p2p/ goes: a relayed address keeps its relay's.
    addrs: options.addrs
      .slice(0, MAX_ADDRS)
      .map((a) => a.replace(new RegExp(`/p2p/${peerIdOf(components.nodeKey)}$`), '')),
    ...(options.members?.length ? { mem: checkMemberAddrs([...options.members]) } : {}),
  })
  const signature = await components.nodeKey.sign(signingInput(payload))
  return decodeInvite(encode([payload, signature]))
}

export interface InviteServerComponents {
  // biome-ignore lint/suspicious/noExplicitAny: any service map; only the core API is used.
  libp2p: Libp2p<any>
  nodeKey: PrivateKey
  admission: Admission
  issuer: TokenIssuer
  tokens: TokenStore
  clock: Clock
  logger: Logger
}

export interface InviteServer {
  start(): Promise<void>
  stop(): Promise<void>
  /** Check and redeem one invite for `peer` (the protocol handler's core; exported for tests). */
  redeem(inviteBytes: Uint8Array, peer: string): Promise<Token>
}

export function createInviteServer(
  components: InviteServerComponents,
  options: { timeoutMs?: number } = {},
): InviteServer {
  const { libp2p, nodeKey, admission, issuer, tokens, clock } = components
  const log = components.logger.child('invite')
  const selfId = peerIdOf(nodeKey)
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUTS.request

  const redeem = async (bytes: Uint8Array, peer: string): Promise<Token> => {
    const invite = decodeInvite(bytes)
    if (invite.iss !== selfId)
      throw new InviteError(
        'ERR_INVITE_WRONG_INVITER',
        'this invite was issued by another node; dial that node',
      )
    await verifyInviteSignature(invite)
    if (invite.mesh !== admission.meshId)
      throw new InviteError('ERR_INVITE_REFUSED', 'this invite is for another mesh')
    if (Math.floor(clock.wall() / 1000) >= invite.exp) {
      throw new InviteError(
        'ERR_INVITE_EXPIRED',
        'this invite has expired; ask for a new one (rmesh token invite)',
      )
    }
    if (!(await tokens.consumeInviteNonce(invite.nnc, invite.exp))) {
      throw new InviteError(
        'ERR_INVITE_USED',
        'this invite was already used; ask for a new one (rmesh token invite)',
      )
    }
    const token = await issuer.issue({
      audience: peer,
      caps: invite.cap,
      ttlSeconds: invite.ttl,
      limits: invite.lim,
    })
    log.info('invite redeemed', { peer, token: token.id, caps: token.cap })
    return token
  }

  const handler = async (stream: Stream, connection: Connection) => {
    const peer = connection.remotePeer.toString()
    const release = admission.holdUnadmitted(peer)
    const bound = deadline(timeoutMs)
    const signal = bound.signal
    const io = framed(stream, MAX_INVITE_BYTES + 64, 'invite request')
    try {
      let reply: Record<string, unknown>
      try {
        const req = await io.read(signal)
        if (!isMap(req) || req.v !== INVITE_VERSION || !(req.invite instanceof Uint8Array))
          throw bad('request is not { v, invite }')
        const token = await redeem(req.invite, peer)
        reply = { v: INVITE_VERSION, ok: true, token: token.bytes, ownerKey: token.ownerKey }
      } catch (err) {
        log.warn('invite refused', { peer, err: describeError(err) })
        const code = isRmeshError(err) ? err.code : 'ERR_INVITE_REFUSED'
        reply = {
          v: INVITE_VERSION,
          ok: false,
          code,
          message: isRmeshError(err) ? err.message : 'invite refused',
        }
      }
      await io.write(reply, signal)
      await stream.close({ signal })
    } catch (err) {
      log.debug('invite stream failed', { peer, err: describeError(err) })
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      bound.clear()
      release()
    }
  }

  return {
    async start() {
      await libp2p.handle(INVITE_PROTOCOL, handler, { maxInboundStreams: 8 })
    },
    async stop() {
      await libp2p.unhandle(INVITE_PROTOCOL).catch(() => undefined)
    },
    redeem,
  }
}

export interface RedeemResult {
  token: Token
  /** The inviter's and the other members' full addresses, to dial after joining. */
  memberAddrs: string[]
  meshId: string
  ownerPublicKey: Uint8Array
}

/**
 * Newcomer side: dial the inviter, send the invite, receive a token bound to this node.
 * The caller stores it (tokens.addOwnToken) and calls admission.reloadToken().
 */
export async function redeemInvite(
  // biome-ignore lint/suspicious/noExplicitAny: any service map; only the core API is used.
  libp2p: Libp2p<any>,
  inviteString: string,
  options: { signal?: AbortSignal } = {},
): Promise<RedeemResult> {
  const invite = parseInviteString(inviteString)
  await verifyInviteSignature(invite)
  return withDeadline(DEFAULT_TIMEOUTS.request, options.signal, (signal) =>
    redeemParsed(libp2p, invite, signal),
  )
}

async function redeemParsed(
  // biome-ignore lint/suspicious/noExplicitAny: any service map; only the core API is used.
  libp2p: Libp2p<any>,
  invite: Invite,
  signal: AbortSignal,
): Promise<RedeemResult> {
  const addrs: Multiaddr[] = []
  for (const a of invite.addrs) {
    try {
      addrs.push(multiaddr(`${a}/p2p/${invite.iss}`))
    } catch {
      // An unparsable address is skipped; the others may work.
    }
  }
  if (addrs.length === 0)
    throw new InviteError(
      'ERR_INVITE_UNREACHABLE',
      'the invite names no usable address of the inviting node',
    )
  let stream: Stream
  try {
    const connection = await raceSignal(libp2p.dial(addrs, { signal }), signal, 'dial inviter')
    stream = await connection.newStream(INVITE_PROTOCOL, { signal })
  } catch (err) {
    throw new InviteError(
      'ERR_INVITE_UNREACHABLE',
      `cannot reach the inviting node ${invite.iss}: ${describeError(err)}`,
      undefined,
      err,
    )
  }
  const io = framed(stream, MAX_INVITE_REPLY_BYTES, 'invite reply')
  let reply: unknown
  try {
    await io.write({ v: INVITE_VERSION, invite: invite.bytes }, signal)
    reply = await io.read(signal)
    await stream.close({ signal }).catch(() => undefined)
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    throw new InviteError(
      'ERR_INVITE_UNREACHABLE',
      `the inviting node did not answer: ${describeError(err)}`,
      undefined,
      err,
    )
  }
  if (!isMap(reply) || reply.v !== INVITE_VERSION) throw bad('reply is not an invite reply')
  if (reply.ok !== true) {
    const code = typeof reply.code === 'string' ? reply.code.slice(0, 60) : 'ERR_INVITE_REFUSED'
    const message = typeof reply.message === 'string' ? reply.message.slice(0, 300) : 'refused'
    throw new InviteError('ERR_INVITE_REFUSED', `the inviting node refused: ${message}`, { code })
  }
  if (!(reply.token instanceof Uint8Array) || !(reply.ownerKey instanceof Uint8Array))
    throw bad('reply holds no token')
  const token = decodeToken(reply.token)
  const meshId = meshIdOf(reply.ownerKey)
  if (meshId !== invite.mesh)
    throw new TokenError(
      'ERR_TOKEN_WRONG_MESH',
      'the inviting node answered with a token of another mesh',
    )
  await verifyToken(token, { meshId, now: null, audience: libp2p.peerId.toString() })
  return {
    token,
    meshId,
    ownerPublicKey: new Uint8Array(reply.ownerKey),
    memberAddrs: [...addrs.map(String), ...invite.mem],
  }
}
