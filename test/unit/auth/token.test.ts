import { generateKeyPair } from '@libp2p/crypto/keys'
import { beforeAll, describe, expect, it } from 'vitest'
import { peerIdOf } from '../../../src/auth/identity.js'
import { meshIdOf } from '../../../src/auth/mesh.js'
import {
  decodeToken,
  formatToken,
  issueToken,
  MAX_TOKEN_BYTES,
  parseTokenString,
  signTokenPayload,
  type Token,
  type TokenPayload,
  verifyToken,
} from '../../../src/auth/token.js'
import { encode } from '../../../src/util/cbor.js'
import { type Fixture, fixture, NOW_MS, NOW_S, ownerToken } from './helpers.js'

async function code(p: Promise<unknown> | (() => unknown)): Promise<string | undefined> {
  try {
    await (typeof p === 'function' ? p() : p)
    return undefined
  } catch (err) {
    return (err as { code?: string }).code
  }
}

function payloadOf(t: Token): TokenPayload {
  const { v, mesh, ownerKey, iss, aud, cap, nbf, exp, lim, nnc } = t
  return { v, mesh, ownerKey, iss, aud, cap: [...cap], nbf, exp, lim, nnc }
}

describe('tokens', () => {
  let f: Fixture
  let token: Token
  beforeAll(async () => {
    f = await fixture()
    token = await ownerToken(f, f.nodeId, ['render', 'submit'], NOW_S - 10, NOW_S + 3600)
  })
  const opts = () => ({ meshId: f.meshId, now: NOW_MS, audience: f.nodeId })

  it('issues, round-trips through bytes and the printable form, and verifies', async () => {
    expect(token.cap).toEqual(['submit', 'render'])
    expect(decodeToken(token.bytes).id).toBe(token.id)
    const s = formatToken(token)
    expect(s.startsWith('rmesh-token-')).toBe(true)
    expect(parseTokenString(`  ${s}\n`).id).toBe(token.id)
    await expect(verifyToken(token, opts())).resolves.toBe(token)
    expect(token.mesh).toBe(meshIdOf(f.ownerKey))
  })

  it('expired, with and beyond skew', async () => {
    const t = await ownerToken(f, f.nodeId, ['render'], NOW_S - 1000, NOW_S - 60)
    await expect(verifyToken(t, opts())).resolves.toBeDefined() // within 120 s skew
    expect(await code(verifyToken(t, { ...opts(), skewSeconds: 30 }))).toBe('ERR_TOKEN_EXPIRED')
    const old = await ownerToken(f, f.nodeId, ['render'], NOW_S - 1000, NOW_S - 500)
    expect(await code(verifyToken(old, opts()))).toBe('ERR_TOKEN_EXPIRED')
  })

  it('not yet valid: within skew passes, beyond fails', async () => {
    const soon = await ownerToken(f, f.nodeId, ['render'], NOW_S + 60, NOW_S + 3600)
    await expect(verifyToken(soon, opts())).resolves.toBeDefined()
    const later = await ownerToken(f, f.nodeId, ['render'], NOW_S + 600, NOW_S + 3600)
    expect(await code(verifyToken(later, opts()))).toBe('ERR_TOKEN_NOT_YET_VALID')
    // Log replay ignores time.
    await expect(verifyToken(later, { ...opts(), now: null })).resolves.toBeDefined()
  })

  it('revoked by token id or by peer id', async () => {
    expect(await code(verifyToken(token, { ...opts(), revoked: (x) => x === token.id }))).toBe(
      'ERR_TOKEN_REVOKED',
    )
    expect(await code(verifyToken(token, { ...opts(), revoked: (x) => x === f.nodeId }))).toBe(
      'ERR_TOKEN_REVOKED',
    )
  })

  it('forged signature (payload altered, signature kept)', async () => {
    const p = payloadOf(token)
    p.cap = ['submit', 'render', 'admin']
    const good = decodeToken(await signTokenPayload(p, f.owner))
    const forged = decodeToken(encode([good.payloadBytes, token.signature]))
    expect(await code(verifyToken(forged, opts()))).toBe('ERR_TOKEN_SIGNATURE')
    // Signed by some other key while claiming the owner as issuer.
    const other = await generateKeyPair('Ed25519')
    const byOther = decodeToken(await signTokenPayload(payloadOf(token), other))
    expect(await code(verifyToken(byOther, opts()))).toBe('ERR_TOKEN_SIGNATURE')
  })

  it('wrong mesh: another owner, or an ownerKey that does not hash to mesh', async () => {
    const g = await fixture()
    const foreign = await ownerToken(g, f.nodeId, ['render'])
    expect(await code(verifyToken(foreign, opts()))).toBe('ERR_TOKEN_WRONG_MESH')
    const p = payloadOf(foreign)
    p.mesh = f.meshId
    const lying = decodeToken(await signTokenPayload(p, g.owner))
    expect(await code(verifyToken(lying, opts()))).toBe('ERR_TOKEN_WRONG_MESH')
  })

  it('wrong audience / replay from another peer id', async () => {
    const thief = peerIdOf(await generateKeyPair('Ed25519'))
    expect(await code(verifyToken(token, { ...opts(), audience: thief }))).toBe(
      'ERR_TOKEN_WRONG_AUDIENCE',
    )
  })

  it('missing capability', async () => {
    expect(await code(verifyToken(token, { ...opts(), capability: 'admin' }))).toBe(
      'ERR_TOKEN_CAPABILITY',
    )
    await expect(verifyToken(token, { ...opts(), capability: 'render' })).resolves.toBeDefined()
  })

  describe('delegation', () => {
    let admin: Token
    let newcomer: string
    beforeAll(async () => {
      admin = await ownerToken(f, f.nodeId, ['submit', 'render', 'admin'], NOW_S - 10, NOW_S + 7200)
      newcomer = peerIdOf(await generateKeyPair('Ed25519'))
    })

    it('an admin node issues a token within its proof', async () => {
      const t = await issueToken({
        issuer: f.node,
        ownerPublicKey: f.ownerKey,
        proof: admin.bytes,
        audience: newcomer,
        caps: ['render'],
        nbf: NOW_S,
        exp: NOW_S + 3600,
      })
      expect(t.proof?.id).toBe(admin.id)
      await expect(
        verifyToken(decodeToken(t.bytes), { meshId: f.meshId, now: NOW_MS, audience: newcomer }),
      ).resolves.toBeDefined()
      // Revoking the proof revokes what it issued.
      expect(
        await code(
          verifyToken(t, { meshId: f.meshId, now: NOW_MS, revoked: (x) => x === admin.id }),
        ),
      ).toBe('ERR_TOKEN_REVOKED')
    })

    it('issueToken refuses widening caps, outliving the proof, a non-admin proof, or a non-owner without proof', async () => {
      const base = {
        issuer: f.node,
        ownerPublicKey: f.ownerKey,
        audience: newcomer,
        nbf: NOW_S,
        exp: NOW_S + 3600,
      }
      const noAdmin = await ownerToken(f, f.nodeId, ['render', 'submit'])
      expect(await code(issueToken({ ...base, proof: noAdmin.bytes, caps: ['render'] }))).toBe(
        'ERR_TOKEN_DELEGATION',
      )
      expect(
        await code(
          issueToken({ ...base, proof: admin.bytes, caps: ['render'], exp: NOW_S + 99_999 }),
        ),
      ).toBe('ERR_TOKEN_DELEGATION')
      expect(await code(issueToken({ ...base, caps: ['render'] }))).toBe('ERR_TOKEN_DELEGATION')
      const narrow = await ownerToken(f, f.nodeId, ['render', 'admin'], NOW_S - 10, NOW_S + 7200)
      expect(await code(issueToken({ ...base, proof: narrow.bytes, caps: ['submit'] }))).toBe(
        'ERR_TOKEN_DELEGATION',
      )
    })

    it('verify refuses hand-made delegations that break the rules', async () => {
      const narrow = await ownerToken(f, f.nodeId, ['render', 'admin'], NOW_S - 10, NOW_S + 7200)
      const p: TokenPayload = {
        ...payloadOf(narrow),
        iss: f.nodeId as TokenPayload['iss'],
        aud: newcomer as TokenPayload['aud'],
        cap: ['submit'],
      }
      const widened = decodeToken(await signTokenPayload(p, f.node, narrow.bytes))
      expect(await code(verifyToken(widened, { meshId: f.meshId, now: NOW_MS }))).toBe(
        'ERR_TOKEN_DELEGATION',
      )
      const outliving = decodeToken(
        await signTokenPayload(
          { ...p, cap: ['render'], exp: NOW_S + 10_000 },
          f.node,
          narrow.bytes,
        ),
      )
      expect(await code(verifyToken(outliving, { meshId: f.meshId, now: NOW_MS }))).toBe(
        'ERR_TOKEN_DELEGATION',
      )
      // Issued by someone who is not the proof's audience.
      const stranger = await generateKeyPair('Ed25519')
      const byStranger = decodeToken(
        await signTokenPayload(
          { ...p, cap: ['render'], iss: peerIdOf(stranger) as TokenPayload['iss'] },
          stranger,
          narrow.bytes,
        ),
      )
      expect(await code(verifyToken(byStranger, { meshId: f.meshId, now: NOW_MS }))).toBe(
        'ERR_TOKEN_DELEGATION',
      )
      // A node signs without a proof, claiming to be the issuer.
      const noProof = decodeToken(await signTokenPayload({ ...p, cap: ['render'] }, f.node))
      expect(await code(verifyToken(noProof, { meshId: f.meshId, now: NOW_MS }))).toBe(
        'ERR_TOKEN_DELEGATION',
      )
    })

    it('two levels deep is refused at decode', async () => {
      const level1 = await issueToken({
        issuer: f.node,
        ownerPublicKey: f.ownerKey,
        proof: admin.bytes,
        audience: newcomer,
        caps: ['render', 'admin'],
        nbf: NOW_S,
        exp: NOW_S + 3600,
      })
      const k2 = await generateKeyPair('Ed25519')
      const p: TokenPayload = {
        ...payloadOf(level1),
        iss: newcomer as TokenPayload['iss'],
        aud: peerIdOf(k2) as TokenPayload['aud'],
        cap: ['render'],
      }
      const bytes = await signTokenPayload(p, k2, level1.bytes)
      expect(await code(() => decodeToken(bytes))).toBe('ERR_TOKEN_DELEGATION')
    })
  })

  it('garbage strings and bytes are ERR_TOKEN_MALFORMED, never a crash', async () => {
    const samples = [
      '',
      'rmesh-token-',
      'rmesh-token-!!!',
      'hello',
      `rmesh-token-${'A'.repeat(20_000)}`,
      'rmesh-token-AAAA',
      formatToken(token).slice(0, 40),
    ]
    for (const s of samples)
      expect(await code(() => parseTokenString(s))).toBe('ERR_TOKEN_MALFORMED')
    const bytesSamples = [
      new Uint8Array(0),
      new Uint8Array([0xff, 0x00]),
      encode([1, 2]),
      encode([new Uint8Array(3), new Uint8Array(64)]),
      encode({ a: 1 }),
      token.bytes.subarray(0, token.bytes.length - 5),
      new Uint8Array(MAX_TOKEN_BYTES + 1),
    ]
    for (const b of bytesSamples)
      expect(await code(() => decodeToken(b))).toBe('ERR_TOKEN_MALFORMED')
    // Fields out of order, an extra field, an unknown capability.
    const p = payloadOf(token) as unknown as Record<string, unknown>
    const reordered = encode([encode({ mesh: p.mesh, v: p.v, ...p }), token.signature])
    expect(await code(() => decodeToken(reordered))).toBe('ERR_TOKEN_MALFORMED')
    const extra = encode([encode({ ...p, x: 1 }), token.signature])
    expect(await code(() => decodeToken(extra))).toBe('ERR_TOKEN_MALFORMED')
    const unknownCap = encode([encode({ ...p, cap: ['root'] }), token.signature])
    expect(await code(() => decodeToken(unknownCap))).toBe('ERR_TOKEN_MALFORMED')
  })
})
