import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { peerIdOf } from '../../../src/auth/identity.js'
import { meshIdOf } from '../../../src/auth/mesh.js'
import { decodeToken, formatToken, issueToken, verifyToken } from '../../../src/auth/token.js'
import { fromHex, toHex } from '../../../src/util/bytes.js'
import { seededKey } from './helpers.js'

// Regenerate with RMESH_WRITE_VECTORS=1 (only when the format deliberately changes).
const DIR = join(import.meta.dirname, '../../../protocols/vectors/token')
const NBF = 1_700_000_000
const EXP = NBF + 86_400

async function build() {
  const owner = await seededKey(1)
  const admin = await seededKey(2)
  const newcomer = await seededKey(3)
  const ownerKey = owner.publicKey.raw
  const adminToken = await issueToken({
    issuer: owner,
    ownerPublicKey: ownerKey,
    audience: peerIdOf(admin),
    caps: ['submit', 'render', 'admin'],
    nbf: NBF,
    exp: EXP,
    limits: { maxQueuedJobs: 10 },
    nonce: new Uint8Array(16).fill(0xaa),
  })
  const delegated = await issueToken({
    issuer: admin,
    ownerPublicKey: ownerKey,
    proof: adminToken.bytes,
    audience: peerIdOf(newcomer),
    caps: ['render'],
    nbf: NBF,
    exp: EXP - 3600,
    nonce: new Uint8Array(16).fill(0xbb),
  })
  const common = {
    ownerSeedHex: toHex(new Uint8Array(32).fill(1)),
    ownerPublicKeyHex: toHex(ownerKey),
    meshId: meshIdOf(ownerKey),
    verifyAtMs: (NBF + 60) * 1000,
  }
  return {
    'owner-issued.json': {
      description:
        'Admin token issued by the owner key (seed 0x01 x32) to the node of seed 0x02 x32',
      ...common,
      audience: peerIdOf(admin),
      tokenHex: toHex(adminToken.bytes),
      tokenString: formatToken(adminToken),
      id: adminToken.id,
      caps: adminToken.cap,
    },
    'delegated.json': {
      description:
        'Render token issued by the admin node (seed 0x02 x32) to the node of seed 0x03 x32, proof = owner-issued token',
      ...common,
      issuerSeedHex: toHex(new Uint8Array(32).fill(2)),
      audience: peerIdOf(newcomer),
      tokenHex: toHex(delegated.bytes),
      tokenString: formatToken(delegated),
      id: delegated.id,
      proofId: adminToken.id,
      caps: delegated.cap,
    },
  }
}

describe('token test vectors (protocols/vectors/token)', () => {
  it('match the implementation byte for byte and verify', async () => {
    const vectors = await build()
    for (const [file, v] of Object.entries(vectors)) {
      if (process.env.RMESH_WRITE_VECTORS)
        writeFileSync(join(DIR, file), `${JSON.stringify(v, null, 2)}\n`)
      const stored = JSON.parse(readFileSync(join(DIR, file), 'utf8'))
      expect(stored).toEqual(v)
      const token = decodeToken(fromHex(stored.tokenHex))
      expect(token.id).toBe(stored.id)
      await expect(
        verifyToken(token, {
          meshId: stored.meshId,
          now: stored.verifyAtMs,
          audience: stored.audience,
        }),
      ).resolves.toBeDefined()
    }
  })
})
