/**
 * The mesh: an owner Ed25519 key pair whose public key names the mesh.
 *
 * Invariants:
 *  - the mesh id is derived from the owner public key (self-certifying): anyone holding a
 *    token, which carries the raw owner key, can check `meshIdOf(ownerKey) === mesh`;
 *  - `mesh.key` is written once with mode 0600 and never overwritten: losing or replacing
 *    it would orphan every token of the mesh.
 */
import { chmod, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { base32 } from 'multiformats/bases/base32'
import { sha256 } from '../util/hash.js'
import { MeshError } from './errors.js'

export const MESH_KEY_FILE = 'mesh.key'
const MESH_ID_PREFIX = 'rm'
const MESH_ID_RE = /^rm[a-z2-7]{26}$/

export interface MeshOwner {
  meshId: string
  /** Raw 32-byte Ed25519 public key of the owner. */
  ownerPublicKey: Uint8Array
  /** The owner private key: signs tokens directly. Only the node that ran `init` has it. */
  privateKey: PrivateKey
}

/** 'rm' + base32 (RFC 4648, lower case, no padding) of the first 16 bytes of SHA-256(raw key). */
export function meshIdOf(rawPublicKey: Uint8Array): string {
  return MESH_ID_PREFIX + base32.baseEncode(sha256(rawPublicKey).subarray(0, 16))
}

export function isMeshId(text: unknown): text is string {
  return typeof text === 'string' && MESH_ID_RE.test(text)
}

function ownerOf(privateKey: PrivateKey): MeshOwner {
  if (privateKey.type !== 'Ed25519')
    throw new MeshError('ERR_MESH_KEY', 'the mesh owner key must be Ed25519')
  const ownerPublicKey = privateKey.publicKey.raw
  return { meshId: meshIdOf(ownerPublicKey), ownerPublicKey, privateKey }
}

/** Create a new mesh in `dir`. Refuses (ERR_MESH_EXISTS) if `dir` already holds one. */
export async function createMesh(dir: string, keyPair?: PrivateKey): Promise<MeshOwner> {
  const file = join(dir, MESH_KEY_FILE)
  const key = keyPair ?? (await generateKeyPair('Ed25519'))
  const owner = ownerOf(key)
  try {
    // 'wx': the file is created or the call fails; an existing mesh is never replaced.
    await writeFile(file, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new MeshError(
        'ERR_MESH_EXISTS',
        `${file} already exists: this directory already owns a mesh (nothing was changed)`,
      )
    }
    throw new MeshError('ERR_MESH_KEY', `cannot write ${file}`, err)
  }
  return owner
}

/** Load the mesh owner of `dir`; ERR_MESH_NOT_FOUND if this node does not own a mesh. */
export async function loadMeshOwner(dir: string): Promise<MeshOwner> {
  const file = join(dir, MESH_KEY_FILE)
  let bytes: Uint8Array
  try {
    bytes = await readFile(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new MeshError(
        'ERR_MESH_NOT_FOUND',
        `no mesh owner key in ${dir}; run 'rmesh init' to create a mesh`,
      )
    }
    throw new MeshError('ERR_MESH_KEY', `cannot read ${file}`, err)
  }
  let key: PrivateKey
  try {
    key = privateKeyFromProtobuf(bytes)
  } catch (err) {
    throw new MeshError(
      'ERR_MESH_KEY',
      `${file} is not a valid mesh key; restore it from your backup`,
      err,
    )
  }
  const st = await stat(file)
  if ((st.mode & 0o077) !== 0) await chmod(file, 0o600)
  return ownerOf(key)
}
