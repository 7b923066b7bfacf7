/**
 * This node's identity: an Ed25519 libp2p key kept in `<dir>/node.key` (protobuf form,
 * mode 0600). Its peer id is the node's name on the mesh and the author of its entries.
 *
 * Invariant: the key file is created once and never rewritten; a key file with wrong
 * permissions is tightened, a corrupt one is an error (never silently replaced: that
 * would change the node's name and orphan its tokens).
 *
 * Signatures go through node:crypto with KeyObjects made once per key and kept in a
 * bounded cache: libp2p's Ed25519 verify builds a KeyObject for every call (~132 µs a
 * verification against ~84 µs with a cached one, profiled on log sync), and a 100-node
 * mesh has at most a few hundred authors. Same results as libp2p's: Ed25519 (RFC 8032,
 * pure), a malformed key or signature is false, never a throw.
 */
import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto'
import { chmod, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { RmeshError } from '../util/errors.js'
import type { PeerIdString, Signer } from '../log/types.js'

export const NODE_KEY_FILE = 'node.key'

export class IdentityError extends RmeshError {
  constructor(message: string, cause?: unknown) {
    super('ERR_IDENTITY', message, { cause })
    this.name = 'IdentityError'
  }
}

export async function loadOrCreateNodeKey(dir: string): Promise<PrivateKey> {
  const file = join(dir, NODE_KEY_FILE)
  let bytes: Uint8Array | undefined
  try {
    bytes = await readFile(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new IdentityError(`cannot read ${file}`, err)
  }
  if (bytes) {
    try {
      const st = await stat(file)
      if ((st.mode & 0o077) !== 0) await chmod(file, 0o600)
      return privateKeyFromProtobuf(bytes)
    } catch (err) {
      throw new IdentityError(
        `${file} is not a valid node key; restore it from a backup or move it away to create a new identity`,
        err,
      )
    }
  }
  const key = await generateKeyPair('Ed25519')
  // 'wx' so two processes racing to create the identity cannot both win.
  try {
    await writeFile(file, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateNodeKey(dir)
    throw new IdentityError(`cannot write ${file}`, err)
  }
  return key
}

export function peerIdOf(key: PrivateKey): PeerIdString {
  return peerIdFromPrivateKey(key).toString() as PeerIdString
}

export function signerFor(key: PrivateKey): Signer {
  if (key.type !== 'Ed25519') {
    return { peerId: peerIdOf(key), sign: async (bytes) => key.sign(bytes) }
  }
  // libp2p's raw Ed25519 private key is seed (32 bytes) || public key (32 bytes).
  const keyObject = createPrivateKey({
    key: {
      kty: 'OKP',
      crv: 'Ed25519',
      d: Buffer.from(key.raw.subarray(0, 32)).toString('base64url'),
      x: Buffer.from(key.publicKey.raw).toString('base64url'),
    },
    format: 'jwk',
  })
  return {
    peerId: peerIdOf(key),
    sign: async (bytes) => new Uint8Array(sign(null, bytes, keyObject)),
  }
}

/** Public KeyObjects by peer id (or raw key, hex): most recently used last. */
const publicKeys = new Map<string, KeyObject>()
export const PUBLIC_KEY_CACHE_MAX = 1024

function cachedKey(cacheKey: string, raw: () => Uint8Array | undefined): KeyObject | undefined {
  const hit = publicKeys.get(cacheKey)
  if (hit) {
    publicKeys.delete(cacheKey)
    publicKeys.set(cacheKey, hit)
    return hit
  }
  const bytes = raw()
  if (bytes?.byteLength !== 32) return undefined
  const keyObject = createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(bytes).toString('base64url') },
    format: 'jwk',
  })
  publicKeys.set(cacheKey, keyObject)
  if (publicKeys.size > PUBLIC_KEY_CACHE_MAX) {
    const oldest = publicKeys.keys().next().value
    if (oldest !== undefined) publicKeys.delete(oldest)
  }
  return keyObject
}

export function publicKeyCacheFill(): { size: number; capacity: number } {
  return { size: publicKeys.size, capacity: PUBLIC_KEY_CACHE_MAX }
}

function verifyWith(key: KeyObject | undefined, data: Uint8Array, sig: Uint8Array): boolean {
  if (!key || sig.byteLength !== 64) return false
  return verify(null, data, key, sig)
}

/**
 * Verify `sig` over `data` by the Ed25519 key inside `peerId`. Returns false for any
 * malformed input rather than throwing: callers turn false into their own typed error.
 */
export async function verifyByPeerId(
  peerId: string,
  data: Uint8Array,
  sig: Uint8Array,
): Promise<boolean> {
  try {
    const key = cachedKey(peerId, () => {
      const pid = peerIdFromString(peerId)
      return pid.type === 'Ed25519' ? pid.publicKey?.raw : undefined
    })
    return verifyWith(key, data, sig)
  } catch {
    return false
  }
}

/** Verify with a raw 32-byte Ed25519 public key (mesh owner keys are carried raw). */
export async function verifyByRawKey(
  rawPublicKey: Uint8Array,
  data: Uint8Array,
  sig: Uint8Array,
): Promise<boolean> {
  try {
    if (!(rawPublicKey instanceof Uint8Array) || rawPublicKey.byteLength !== 32) return false
    const raw = new Uint8Array(rawPublicKey)
    return verifyWith(
      cachedKey(`raw:${Buffer.from(raw).toString('hex')}`, () => raw),
      data,
      sig,
    )
  } catch {
    return false
  }
}
