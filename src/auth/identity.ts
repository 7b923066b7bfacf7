/**
 * This node's identity: an Ed25519 libp2p key kept in `<dir>/node.key` (protobuf form,
 * mode 0600). Its peer id is the node's name on the mesh and the author of its entries.
 *
 * Invariant: the key file is created once and never rewritten; a key file with wrong
 * permissions is tightened, a corrupt one is an error (never silently replaced: that
 * would change the node's name and orphan its tokens).
 */
import { chmod, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  generateKeyPair,
  privateKeyFromProtobuf,
  privateKeyToProtobuf,
  publicKeyFromRaw,
} from '@libp2p/crypto/keys'
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
  return {
    peerId: peerIdOf(key),
    sign: async (bytes) => key.sign(bytes),
  }
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
    const pid = peerIdFromString(peerId)
    if (pid.type !== 'Ed25519' || !pid.publicKey) return false
    return await pid.publicKey.verify(data, sig)
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
    return await publicKeyFromRaw(rawPublicKey).verify(data, sig)
  } catch {
    return false
  }
}
