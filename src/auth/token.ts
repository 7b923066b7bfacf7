/**
 * Admission tokens: a small signed CBOR document (see protocols/token.md).
 *
 * Invariants:
 *  - verification runs over the exact bytes received, never over a re-encoding; the id of
 *    a token is the CID of its envelope bytes;
 *  - the size limit is checked before any decoding, the schema after, signatures and
 *    rules after that; every refusal is a TokenError with its own code;
 *  - the payload is canonical: fields in one fixed order, capabilities deduplicated in
 *    the order of CAPABILITIES, so one set of values has one encoding;
 *  - one level of delegation only: an owner-signed admin token may sign tokens whose caps
 *    are a subset of its own and whose expiry is within its own; a proof never has a proof.
 */
import { randomBytes } from 'node:crypto'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerIdString } from '../log/types.js'
import { bytesEqual, fromBase64Url, toBase64Url } from '../util/bytes.js'
import { decodeBounded, encode } from '../util/cbor.js'
import { cidOf } from '../util/hash.js'
import { TokenError } from './errors.js'
import { peerIdOf, verifyByPeerId, verifyByRawKey } from './identity.js'
import { isMeshId, meshIdOf } from './mesh.js'

export const TOKEN_VERSION = 1
/** Envelope limit, proof included. */
export const MAX_TOKEN_BYTES = 8 * 1024
export const TOKEN_STRING_PREFIX = 'rmesh-token-'
export const DEFAULT_SKEW_SECONDS = 120
export const CAPABILITIES = ['submit', 'render', 'admin'] as const
export type Capability = (typeof CAPABILITIES)[number]

/** Domain separation: a node key also signs log entries; a token signature must never verify as one. */
const SIGNING_DOMAIN = new TextEncoder().encode('rmesh/token/1\n')
const PAYLOAD_FIELDS = [
  'v',
  'mesh',
  'ownerKey',
  'iss',
  'aud',
  'cap',
  'nbf',
  'exp',
  'lim',
  'nnc',
] as const
const LIMIT_FIELDS = ['maxQueuedJobs'] as const
const MAX_PEER_ID_CHARS = 128
const MAX_STRING_CHARS = TOKEN_STRING_PREFIX.length + Math.ceil((MAX_TOKEN_BYTES * 4) / 3) + 4

export interface TokenLimits {
  maxQueuedJobs?: number
}

export interface TokenPayload {
  v: number
  mesh: string
  /** Raw 32-byte owner public key: meshIdOf(ownerKey) must equal mesh. */
  ownerKey: Uint8Array
  /** Raw owner public key (issued by the owner) or the peer id of a delegating admin node. */
  iss: Uint8Array | PeerIdString
  aud: PeerIdString
  cap: Capability[]
  /** Seconds since the epoch. */
  nbf: number
  exp: number
  lim: TokenLimits
  nnc: Uint8Array
}

export interface Token extends Readonly<TokenPayload> {
  readonly id: string
  /** The exact envelope bytes. */
  readonly bytes: Uint8Array
  readonly payloadBytes: Uint8Array
  readonly signature: Uint8Array
  /** The delegating admin token, when not issued by the owner key. */
  readonly proof?: Token
}

function malformed(message: string, cause?: unknown): TokenError {
  return new TokenError('ERR_TOKEN_MALFORMED', `malformed token: ${message}`, undefined, cause)
}

function copy(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes)
}

export function isCapability(x: unknown): x is Capability {
  return typeof x === 'string' && (CAPABILITIES as readonly string[]).includes(x)
}

/** Deduplicated, in canonical order; throws ERR_TOKEN_MALFORMED on an unknown capability. */
export function normalizeCaps(caps: readonly string[]): Capability[] {
  for (const c of caps)
    if (!isCapability(c))
      throw malformed(`unknown capability ${JSON.stringify(String(c).slice(0, 40))}`)
  const out = CAPABILITIES.filter((c) => caps.includes(c))
  if (out.length === 0) throw malformed('a token needs at least one capability')
  return out
}

function isPeerIdString(x: unknown): x is PeerIdString {
  if (typeof x !== 'string' || x.length === 0 || x.length > MAX_PEER_ID_CHARS) return false
  try {
    return peerIdFromString(x).type === 'Ed25519'
  } catch {
    return false
  }
}

function isUint(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0
}

function checkLimits(lim: unknown): TokenLimits {
  if (typeof lim !== 'object' || lim === null || Array.isArray(lim) || lim instanceof Uint8Array)
    throw malformed('lim is not a map')
  const out: TokenLimits = {}
  for (const [k, val] of Object.entries(lim)) {
    if (!(LIMIT_FIELDS as readonly string[]).includes(k))
      throw malformed(`unknown limit ${JSON.stringify(k.slice(0, 40))}`)
    if (!isUint(val)) throw malformed(`limit ${k} is not a non-negative integer`)
    out[k as keyof TokenLimits] = val
  }
  return out
}

function checkPayload(raw: unknown): TokenPayload {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || raw instanceof Uint8Array)
    throw malformed('payload is not a map')
  const keys = Object.keys(raw)
  if (keys.join(',') !== PAYLOAD_FIELDS.join(','))
    throw malformed(`payload fields must be ${PAYLOAD_FIELDS.join(',')} in that order`)
  const p = raw as Record<string, unknown>
  if (p.v !== TOKEN_VERSION) throw malformed(`unsupported version ${String(p.v).slice(0, 20)}`)
  if (!isMeshId(p.mesh)) throw malformed('mesh is not a mesh id')
  if (!(p.ownerKey instanceof Uint8Array) || p.ownerKey.byteLength !== 32)
    throw malformed('ownerKey is not a 32-byte key')
  let iss: Uint8Array | PeerIdString
  if (p.iss instanceof Uint8Array) {
    if (p.iss.byteLength !== 32) throw malformed('iss is not a 32-byte key')
    iss = copy(p.iss)
  } else if (isPeerIdString(p.iss)) {
    iss = p.iss
  } else {
    throw malformed('iss is neither a raw key nor a peer id')
  }
  if (!isPeerIdString(p.aud)) throw malformed('aud is not an Ed25519 peer id')
  if (!Array.isArray(p.cap) || p.cap.length === 0 || p.cap.length > CAPABILITIES.length)
    throw malformed('cap is not a capability list')
  const cap = normalizeCaps(p.cap)
  if (cap.join(',') !== p.cap.join(',')) throw malformed('cap is not in canonical order')
  if (!isUint(p.nbf) || !isUint(p.exp)) throw malformed('nbf/exp are not integer seconds')
  if (p.nbf > p.exp) throw malformed('nbf is after exp')
  const lim = checkLimits(p.lim)
  if (!(p.nnc instanceof Uint8Array) || p.nnc.byteLength < 8 || p.nnc.byteLength > 32)
    throw malformed('nnc is not 8..32 bytes')
  return {
    v: p.v,
    mesh: p.mesh,
    ownerKey: copy(p.ownerKey),
    iss,
    aud: p.aud,
    cap,
    nbf: p.nbf,
    exp: p.exp,
    lim,
    nnc: copy(p.nnc),
  }
}

function decodeAt(input: Uint8Array, depth: number): Token {
  if (!(input instanceof Uint8Array)) throw malformed('not bytes')
  let env: unknown
  try {
    env = decodeBounded(input, MAX_TOKEN_BYTES, 'token')
  } catch (err) {
    throw malformed((err as Error).message, err)
  }
  if (!Array.isArray(env) || env.length < 2 || env.length > 3)
    throw malformed('envelope is not [payload, signature, proof?]')
  const [payloadRaw, sigRaw, proofRaw] = env as unknown[]
  if (
    !(payloadRaw instanceof Uint8Array) ||
    !(sigRaw instanceof Uint8Array) ||
    sigRaw.byteLength !== 64
  ) {
    throw malformed('envelope holds no payload bytes or no 64-byte signature')
  }
  if (env.length === 3 && !(proofRaw instanceof Uint8Array)) throw malformed('proof is not bytes')
  let payload: TokenPayload
  try {
    payload = checkPayload(decodeBounded(payloadRaw, MAX_TOKEN_BYTES, 'token payload'))
  } catch (err) {
    if (err instanceof TokenError) throw err
    throw malformed((err as Error).message, err)
  }
  let proof: Token | undefined
  if (proofRaw instanceof Uint8Array) {
    if (depth > 0)
      throw new TokenError(
        'ERR_TOKEN_DELEGATION',
        'delegation is one level deep: a proof may not carry a proof',
      )
    proof = decodeAt(proofRaw, depth + 1)
  }
  const bytes = copy(input)
  return {
    ...payload,
    id: cidOf(bytes),
    bytes,
    payloadBytes: copy(payloadRaw),
    signature: copy(sigRaw),
    ...(proof ? { proof } : {}),
  }
}

/** Decode (size limit first, then schema); does not check signatures: see verifyToken. */
export function decodeToken(bytes: Uint8Array): Token {
  return decodeAt(bytes, 0)
}

function signingInput(payloadBytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(SIGNING_DOMAIN.byteLength + payloadBytes.byteLength)
  out.set(SIGNING_DOMAIN, 0)
  out.set(payloadBytes, SIGNING_DOMAIN.byteLength)
  return out
}

export interface VerifyTokenOptions {
  meshId: string
  /**
   * Receiver's wall clock in ms since the epoch, or null to skip nbf/exp (log entries are
   * replayed long after they were written: only mesh, signature, revocation and caps count).
   */
  now: number | null
  audience?: string
  /** Grow-only revocation set: token ids and peer ids. */
  revoked?: (tokenIdOrPeerId: string) => boolean
  skewSeconds?: number
  /** Capability the caller needs. */
  capability?: Capability
}

/**
 * Tokens whose signature checked out, by the hash of their exact bytes (payload, signature
 * and proof): every log entry names its author's token, and verifying that token's
 * signature again for each entry was a node's largest crypto cost per chunk (issue 17).
 * Revocation, audience, mesh and time are still checked on every use. Bounded.
 */
const signatureChecked = new Set<string>()
export const SIGNATURE_CACHE_MAX = 4_096

async function checkSignature(token: Token, verify: () => Promise<boolean>): Promise<void> {
  const key = cidOf(token.bytes)
  if (signatureChecked.has(key)) return
  if (!(await verify())) {
    throw new TokenError('ERR_TOKEN_SIGNATURE', `token ${token.id} has an invalid signature`, {
      id: token.id,
    })
  }
  signatureChecked.add(key)
  if (signatureChecked.size > SIGNATURE_CACHE_MAX) {
    const oldest = signatureChecked.values().next().value
    if (oldest !== undefined) signatureChecked.delete(oldest)
  }
}

function checkTime(token: Token, nowMs: number, skew: number): void {
  const now = Math.floor(nowMs / 1000)
  if (now + skew < token.nbf) {
    throw new TokenError(
      'ERR_TOKEN_NOT_YET_VALID',
      `token ${token.id} is not valid before ${new Date(token.nbf * 1000).toISOString()}`,
      {
        id: token.id,
        nbf: token.nbf,
      },
    )
  }
  if (now - skew >= token.exp) {
    throw new TokenError(
      'ERR_TOKEN_EXPIRED',
      `token ${token.id} expired at ${new Date(token.exp * 1000).toISOString()}; renew it`,
      {
        id: token.id,
        exp: token.exp,
      },
    )
  }
}

function delegation(message: string, token: Token): TokenError {
  return new TokenError('ERR_TOKEN_DELEGATION', message, { id: token.id })
}

/** Check a delegated token against its proof (rules only; signatures are checked by the caller). */
function checkDelegationRules(token: Token, proof: Token): void {
  if (proof.proof)
    throw delegation('delegation is one level deep: a proof may not carry a proof', token)
  if (!(proof.iss instanceof Uint8Array) || !bytesEqual(proof.iss, proof.ownerKey)) {
    throw delegation('the proof of a delegated token must be issued by the mesh owner', token)
  }
  if (proof.mesh !== token.mesh || !bytesEqual(proof.ownerKey, token.ownerKey)) {
    throw delegation('the proof belongs to another mesh', token)
  }
  if (!proof.cap.includes('admin'))
    throw delegation('the proof does not hold the admin capability', token)
  if (typeof token.iss !== 'string' || token.iss !== proof.aud) {
    throw delegation('a delegated token must be issued by the audience of its proof', token)
  }
  for (const c of token.cap)
    if (!proof.cap.includes(c))
      throw delegation(`delegated capability ${c} is not held by the proof`, token)
  if (token.exp > proof.exp) throw delegation('a delegated token may not outlive its proof', token)
}

/** Full verification; returns the token on success, throws a TokenError otherwise. */
export async function verifyToken(token: Token, options: VerifyTokenOptions): Promise<Token> {
  const skew = options.skewSeconds ?? DEFAULT_SKEW_SECONDS
  if (token.mesh !== options.meshId || meshIdOf(token.ownerKey) !== token.mesh) {
    throw new TokenError(
      'ERR_TOKEN_WRONG_MESH',
      `token ${token.id} belongs to mesh ${token.mesh}, not ${options.meshId}`,
      {
        id: token.id,
        mesh: token.mesh,
      },
    )
  }
  const proof = token.proof
  if (proof) {
    checkDelegationRules(token, proof)
    await checkSignature(proof, () =>
      verifyByRawKey(proof.ownerKey, signingInput(proof.payloadBytes), proof.signature),
    )
    await checkSignature(token, () =>
      verifyByPeerId(token.iss as string, signingInput(token.payloadBytes), token.signature),
    )
  } else {
    if (!(token.iss instanceof Uint8Array) || !bytesEqual(token.iss, token.ownerKey)) {
      throw delegation('a token without a proof must be issued by the mesh owner key', token)
    }
    await checkSignature(token, () =>
      verifyByRawKey(token.ownerKey, signingInput(token.payloadBytes), token.signature),
    )
  }
  const revoked = options.revoked
  if (revoked) {
    const names = [token.id, token.aud, ...(proof ? [proof.id, proof.aud] : [])]
    const hit = names.find((n) => revoked(n))
    if (hit)
      throw new TokenError('ERR_TOKEN_REVOKED', `token ${token.id} is revoked (${hit})`, {
        id: token.id,
        revoked: hit,
      })
  }
  if (options.now !== null) {
    if (proof) checkTime(proof, options.now, skew)
    checkTime(token, options.now, skew)
  }
  if (options.audience !== undefined && token.aud !== options.audience) {
    throw new TokenError(
      'ERR_TOKEN_WRONG_AUDIENCE',
      `token ${token.id} was issued to ${token.aud}, not ${options.audience}`,
      {
        id: token.id,
        aud: token.aud,
      },
    )
  }
  if (options.capability !== undefined) requireCapability(token, options.capability)
  return token
}

export function hasCapability(token: Pick<Token, 'cap'>, cap: Capability): boolean {
  return token.cap.includes(cap)
}

export function requireCapability(token: Token, cap: Capability): void {
  if (!hasCapability(token, cap)) {
    throw new TokenError(
      'ERR_TOKEN_CAPABILITY',
      `token ${token.id} does not grant '${cap}' (it grants ${token.cap.join(', ')})`,
      {
        id: token.id,
        needed: cap,
      },
    )
  }
}

export interface IssueTokenOptions {
  /** The owner key (no proof), or the node key that is the audience of `proof`. */
  issuer: PrivateKey
  ownerPublicKey: Uint8Array
  /** The issuer's owner-signed admin token, when the issuer is not the owner. */
  proof?: Uint8Array
  audience: string
  caps: readonly string[]
  /** Seconds since the epoch. */
  nbf: number
  exp: number
  limits?: TokenLimits
  /** Injected randomness; 16 random bytes by default. */
  nonce?: Uint8Array
}

function encodePayload(p: TokenPayload): Uint8Array {
  // Built field by field: the encoder keeps insertion order, which is the canonical order.
  const lim: TokenLimits = {}
  if (p.lim.maxQueuedJobs !== undefined) lim.maxQueuedJobs = p.lim.maxQueuedJobs
  return encode({
    v: p.v,
    mesh: p.mesh,
    ownerKey: p.ownerKey,
    iss: p.iss,
    aud: p.aud,
    cap: p.cap,
    nbf: p.nbf,
    exp: p.exp,
    lim,
    nnc: p.nnc,
  })
}

/**
 * Sign a payload as given, without the issuing rules. Exported for test vectors and the
 * tests of verifyToken (which need tokens that break the rules); callers use issueToken.
 */
export async function signTokenPayload(
  payload: TokenPayload,
  key: PrivateKey,
  proof?: Uint8Array,
): Promise<Uint8Array> {
  const payloadBytes = encodePayload(payload)
  const signature = await key.sign(signingInput(payloadBytes))
  return encode(proof ? [payloadBytes, signature, proof] : [payloadBytes, signature])
}

/** Issue a token, enforcing the issuing rules (owner key, or a valid one-level delegation). */
export async function issueToken(options: IssueTokenOptions): Promise<Token> {
  const caps = normalizeCaps(options.caps)
  if (!isPeerIdString(options.audience)) throw malformed('audience is not an Ed25519 peer id')
  if (!isUint(options.nbf) || !isUint(options.exp) || options.nbf > options.exp)
    throw malformed('nbf/exp must be integer seconds, nbf <= exp')
  const limits = checkLimits(options.limits ?? {})
  const ownerKey = copy(options.ownerPublicKey)
  const mesh = meshIdOf(ownerKey)
  let iss: Uint8Array | PeerIdString
  if (options.proof) {
    const proof = decodeToken(options.proof)
    iss = peerIdOf(options.issuer)
    const probe = {
      ...proof,
      iss,
      cap: caps,
      exp: options.exp,
      mesh,
      ownerKey,
      proof: undefined,
    } as Token
    checkDelegationRules(probe, proof)
  } else {
    if (options.issuer.type !== 'Ed25519' || !bytesEqual(options.issuer.publicKey.raw, ownerKey)) {
      throw new TokenError(
        'ERR_TOKEN_DELEGATION',
        'only the mesh owner key issues tokens without a proof; pass this node admin token as proof',
      )
    }
    iss = ownerKey
  }
  const nnc = options.nonce ?? new Uint8Array(randomBytes(16))
  const payload: TokenPayload = {
    v: TOKEN_VERSION,
    mesh,
    ownerKey,
    iss,
    aud: options.audience,
    cap: caps,
    nbf: options.nbf,
    exp: options.exp,
    lim: limits,
    nnc,
  }
  return decodeToken(await signTokenPayload(payload, options.issuer, options.proof))
}

/** The printable, copy-pasteable form. */
export function formatToken(token: Token | Uint8Array): string {
  return TOKEN_STRING_PREFIX + toBase64Url(token instanceof Uint8Array ? token : token.bytes)
}

/** Parse `rmesh-token-<base64url>` (surrounding whitespace allowed). Decodes, does not verify. */
export function parseTokenString(text: string): Token {
  if (typeof text !== 'string') throw malformed('not a string')
  if (text.length > MAX_STRING_CHARS + 64)
    throw malformed(`token string is longer than ${MAX_STRING_CHARS} characters`)
  const s = text.trim()
  if (!s.startsWith(TOKEN_STRING_PREFIX))
    throw malformed(`a token string starts with '${TOKEN_STRING_PREFIX}'`)
  const body = s.slice(TOKEN_STRING_PREFIX.length)
  if (body.length === 0 || body.length > MAX_STRING_CHARS || !/^[A-Za-z0-9_-]+$/.test(body))
    throw malformed('not base64url')
  return decodeToken(fromBase64Url(body))
}

/** A plain summary for `token list` and logs. */
export interface TokenSummary {
  id: string
  mesh: string
  audience: string
  issuer: string
  caps: Capability[]
  notBefore: string
  expires: string
  limits: TokenLimits
  delegated: boolean
}

export function summarizeToken(token: Token): TokenSummary {
  return {
    id: token.id,
    mesh: token.mesh,
    audience: token.aud,
    issuer: typeof token.iss === 'string' ? token.iss : 'owner',
    caps: [...token.cap],
    notBefore: new Date(token.nbf * 1000).toISOString(),
    expires: new Date(token.exp * 1000).toISOString(),
    limits: { ...token.lim },
    delegated: token.proof !== undefined,
  }
}
