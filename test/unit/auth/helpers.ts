import { generateKeyPair, generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdOf } from '../../../src/auth/identity.js'
import { meshIdOf } from '../../../src/auth/mesh.js'
import { issueToken, type Token } from '../../../src/auth/token.js'

export const NOW_S = 1_700_000_000
export const NOW_MS = NOW_S * 1000

/** Deterministic Ed25519 key from a one-byte seed (for test vectors). */
export function seededKey(seed: number): Promise<PrivateKey> {
  return generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(seed))
}

export interface Fixture {
  owner: PrivateKey
  ownerKey: Uint8Array
  meshId: string
  node: PrivateKey
  nodeId: string
}

export async function fixture(): Promise<Fixture> {
  const owner = await generateKeyPair('Ed25519')
  const node = await generateKeyPair('Ed25519')
  return {
    owner,
    ownerKey: owner.publicKey.raw,
    meshId: meshIdOf(owner.publicKey.raw),
    node,
    nodeId: peerIdOf(node),
  }
}

export function ownerToken(
  f: Fixture,
  audience: string,
  caps: string[],
  nbf = NOW_S - 10,
  exp = NOW_S + 3600,
): Promise<Token> {
  return issueToken({ issuer: f.owner, ownerPublicKey: f.ownerKey, audience, caps, nbf, exp })
}
