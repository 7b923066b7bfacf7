/**
 * The signed log entry: encoding, decoding and verification (protocols/log-entry.md).
 *
 * Invariants:
 *  - envelope = CBOR [payloadBytes, signature]; payload = CBOR
 *    [v, log, kind, body, clock, author, wall, next, tok], positional so the encoding
 *    is stable; the signature covers SIGNING_DOMAIN || payloadBytes;
 *  - the id is the CID of the SHA-256 of the exact envelope bytes, which are kept;
 *    nothing is ever re-encoded to verify;
 *  - decodeEntry checks the size before decoding, the schema after, the signature last,
 *    and throws only EntryError subclasses;
 *  - an id whose signature verified once is remembered (bounded): the same bytes have the
 *    same valid signature, so a duplicate from gossip and sync costs one hash, not one
 *    Ed25519 verification.
 */
import { verifyByPeerId } from '../auth/identity.js'
import { trimToBound } from '../util/bounded.js'
import { decodeBounded, encode } from '../util/cbor.js'
import { RmeshError } from '../util/errors.js'
import { cidOf, isCidString } from '../util/hash.js'
import {
  EntryMalformedError,
  EntrySignatureError,
  EntryTooLargeError,
  EntryVersionError,
} from './errors.js'
import {
  ENTRY_FORMAT_VERSION,
  type EntryId,
  type LogEntry,
  type LogId,
  type PeerIdString,
  type Signer,
} from './types.js'

export const MAX_ENTRY_BYTES = 64 * 1024
export const MAX_PARENTS = 64
export const MAX_KIND_LENGTH = 32
export const MAX_TOKEN_ID_LENGTH = 128
export const MAX_AUTHOR_LENGTH = 128
export const SIGNATURE_BYTES = 64
/** Domain separation: a node key signature over an entry can never be replayed as anything else. */
export const SIGNING_DOMAIN = new TextEncoder().encode('rmesh/log-entry/1\n')

const KIND_RE = /^[a-z][a-z-]{0,31}$/
const LOG_RE = /^(mesh|job\/[A-Za-z0-9._-]{1,128})$/
const AUTHOR_RE = /^[1-9A-HJ-NP-Za-km-z]{1,128}$/

export interface EntryFields<Body = unknown> {
  log: LogId
  kind: string
  body: Body
  clock: number
  next: readonly EntryId[]
  wall: number
  tok: string
}

export function isLogId(text: unknown): text is LogId {
  return typeof text === 'string' && LOG_RE.test(text)
}

/** An author field's syntax (base58btc peer id text); the signature check proves the rest. */
export function isAuthorString(text: unknown): text is PeerIdString {
  return typeof text === 'string' && AUTHOR_RE.test(text)
}

export function isEntryKind(text: unknown): text is string {
  return typeof text === 'string' && KIND_RE.test(text)
}

// Entries this module produced or verified: join trusts these objects without re-checking.
const trusted = new WeakSet<LogEntry>()
const verifiedIds = new Set<string>()
/**
 * The bound of the log's id caches (verified ids here; dropped ids and entry metadata in
 * log.ts): about five minutes of a busy mesh's entries (~1,000 a minute in the soak).
 * Copies of an entry arrive within seconds (gossip from several peers, a sync session), so
 * recent ids suffice; each id kept costs 120–200 bytes, and at 20k the three caches took
 * over an hour of soak to fill, holding ~10 MiB that read as growth all along.
 */
export const ID_CACHE_MAX = 5_000
const VERIFIED_CACHE_MAX = ID_CACHE_MAX

function rememberVerified(id: string): void {
  verifiedIds.add(id)
  trimToBound(verifiedIds, VERIFIED_CACHE_MAX)
}

/** Verifications under way, by id (cleared as each settles: bounded by what is in flight). */
const verifying = new Map<string, Promise<boolean>>()

let verifications = 0
/** Ed25519 verifications of entries done by this process so far (benchmarks report it). */
export function entryVerificationCount(): number {
  return verifications
}

export function verifiedCacheFill(): { size: number; capacity: number } {
  return { size: verifiedIds.size, capacity: VERIFIED_CACHE_MAX }
}

/** Forget which ids verified (benchmarks measure the signature check with this). */
export function forgetVerifiedEntries(): void {
  verifiedIds.clear()
}

/** True for entry objects returned by createEntry / decodeEntry in this process. */
export function isTrustedEntry(entry: LogEntry): boolean {
  return trusted.has(entry)
}

export async function createEntry<Body>(
  signer: Signer,
  fields: EntryFields<Body>,
): Promise<LogEntry<Body>> {
  const next = [...new Set(fields.next)].sort() as EntryId[]
  const payload = encode([
    ENTRY_FORMAT_VERSION,
    fields.log,
    fields.kind,
    fields.body,
    fields.clock,
    signer.peerId,
    fields.wall,
    next,
    fields.tok,
  ])
  const signature = await signer.sign(signingInput(payload))
  const bytes = encode([payload, signature])
  // Round-trip through the same checks a peer applies, so we never publish what peers refuse.
  const entry = parseEntry(bytes)
  rememberVerified(entry.id)
  return entry as LogEntry<Body>
}

export interface DecodeOptions {
  /** Skip the signature check: only for bytes this node stored after verifying them. */
  trustedSource?: boolean
}

/** Size → decode → schema → signature. Throws an EntryError subclass on any failure. */
export async function decodeEntry(
  bytes: Uint8Array,
  options: DecodeOptions = {},
): Promise<LogEntry> {
  const read = readEntry(bytes)
  if (!options.trustedSource) return read.verify()
  trusted.add(read.entry)
  return read.entry
}

export interface UnverifiedEntry {
  /** The decoded fields: not to be stored or trusted before `verify` resolves. */
  readonly entry: LogEntry
  /** Check the signature (once per id, remembered); resolves to the now trusted entry. */
  verify(): Promise<LogEntry>
}

/**
 * The id of an envelope (the CID of its exact bytes), size checked, without decoding it: a
 * copy of an entry this node holds is recognised by one hash, not a decode (the same bytes
 * passed every check when first seen). Throws an EntryError subclass.
 */
export function entryIdOf(bytes: Uint8Array): EntryId {
  checkEnvelopeSize(bytes)
  return cidOf(bytes) as EntryId
}

/**
 * Size → decode → schema, the signature left for later: a caller that already stores the
 * id skips the Ed25519 check, so each entry costs one verification per node, never one
 * per copy received. `id`, when given, is entryIdOf(bytes) (spares hashing again). Throws
 * an EntryError subclass on any failure.
 */
export function readEntry(bytes: Uint8Array, id?: EntryId): UnverifiedEntry {
  const { entry, payload, signature } = parseEnvelope(bytes, id)
  return {
    entry,
    async verify() {
      if (!verifiedIds.has(entry.id)) {
        // Two copies checked at once (gossip and a sync session interleave entry by entry)
        // share one verification: the second awaits the first's verdict.
        let check = verifying.get(entry.id)
        const first = !check
        if (!check) {
          verifications++
          check = verifyByPeerId(entry.author, signingInput(payload), signature)
          verifying.set(entry.id, check)
        }
        let ok: boolean
        try {
          ok = await check
        } finally {
          if (first) verifying.delete(entry.id)
        }
        if (!ok) throw new EntrySignatureError(entry.author)
        rememberVerified(entry.id)
      }
      trusted.add(entry)
      return entry
    },
  }
}

function parseEntry(bytes: Uint8Array): LogEntry {
  const { entry } = parseEnvelope(bytes)
  trusted.add(entry)
  return entry
}

function signingInput(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(SIGNING_DOMAIN.byteLength + payload.byteLength)
  out.set(SIGNING_DOMAIN, 0)
  out.set(payload, SIGNING_DOMAIN.byteLength)
  return out
}

function decodeCbor(bytes: Uint8Array, what: string): unknown {
  try {
    return decodeBounded(bytes, MAX_ENTRY_BYTES, what)
  } catch (err) {
    throw new EntryMalformedError(
      `${what} is not valid CBOR`,
      undefined,
      err instanceof RmeshError ? err : undefined,
    )
  }
}

function checkEnvelopeSize(input: Uint8Array): void {
  if (!(input instanceof Uint8Array))
    throw new EntryMalformedError('entry bytes are not a byte array')
  if (input.byteLength > MAX_ENTRY_BYTES)
    throw new EntryTooLargeError(input.byteLength, MAX_ENTRY_BYTES)
}

function parseEnvelope(
  input: Uint8Array,
  knownId?: EntryId,
): {
  entry: LogEntry
  payload: Uint8Array
  signature: Uint8Array
} {
  checkEnvelopeSize(input)
  // Own the bytes: a caller's buffer (a stream chunk) may be reused after we return.
  const bytes = new Uint8Array(input)
  const env = decodeCbor(bytes, 'entry envelope')
  if (!Array.isArray(env) || env.length !== 2)
    throw new EntryMalformedError('envelope must be [payload, signature]')
  const [payload, signature] = env
  if (!(payload instanceof Uint8Array))
    throw new EntryMalformedError('payload must be a byte string')
  if (!(signature instanceof Uint8Array) || signature.byteLength !== SIGNATURE_BYTES) {
    throw new EntryMalformedError(`signature must be ${SIGNATURE_BYTES} bytes`)
  }
  const p = decodeCbor(payload, 'entry payload')
  if (!Array.isArray(p) || p.length !== 9)
    throw new EntryMalformedError('payload must be an array of 9 fields')
  const [v, log, kind, body, clock, author, wall, next, tok] = p
  if (v !== ENTRY_FORMAT_VERSION) {
    if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) throw new EntryVersionError(v)
    throw new EntryMalformedError('version must be a positive integer')
  }
  if (!isLogId(log)) throw new EntryMalformedError('log must be "mesh" or "job/<id>"')
  if (!isEntryKind(kind)) throw new EntryMalformedError('kind must be a short word of a-z and "-"')
  if (!isNonNegativeInt(clock))
    throw new EntryMalformedError('clock must be a safe non-negative integer')
  if (typeof author !== 'string' || !AUTHOR_RE.test(author)) {
    throw new EntryMalformedError('author must be a peer id string')
  }
  if (!isNonNegativeInt(wall))
    throw new EntryMalformedError('wall must be a safe non-negative integer')
  if (!Array.isArray(next) || next.length > MAX_PARENTS) {
    throw new EntryMalformedError(`next must be an array of at most ${MAX_PARENTS} ids`)
  }
  for (const id of next)
    if (!isCidString(id)) throw new EntryMalformedError('next holds an invalid id')
  if (new Set(next).size !== next.length) throw new EntryMalformedError('next holds a duplicate id')
  if (typeof tok !== 'string' || tok.length > MAX_TOKEN_ID_LENGTH) {
    throw new EntryMalformedError(
      `tok must be a string of at most ${MAX_TOKEN_ID_LENGTH} characters`,
    )
  }
  const id = knownId ?? (cidOf(bytes) as EntryId)
  if (next.includes(id)) throw new EntryMalformedError('entry names itself as a parent')
  const entry: LogEntry = Object.freeze({
    id,
    v,
    log,
    kind,
    body,
    clock,
    author: author as PeerIdString,
    wall,
    next: Object.freeze([...next]) as readonly EntryId[],
    tok,
    bytes,
  })
  return { entry, payload, signature }
}

function isNonNegativeInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0
}
