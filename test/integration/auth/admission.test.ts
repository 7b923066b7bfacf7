import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { Level } from 'level'
import { afterEach, describe, expect, it } from 'vitest'
import {
  type Admission,
  AUTH_PROTOCOL,
  createAdmission,
  MAX_HELLO_BYTES,
} from '../../../src/auth/admission.js'
import { createAdmissionState, createConnectionGater } from '../../../src/auth/gater.js'
import { peerIdOf } from '../../../src/auth/identity.js'
import {
  createInvite,
  createInviteServer,
  formatInvite,
  redeemInvite,
} from '../../../src/auth/invite.js'
import { createTokenIssuer } from '../../../src/auth/issuer.js'
import { createMesh, type MeshOwner } from '../../../src/auth/mesh.js'
import { createTokenStore, type TokenStore } from '../../../src/auth/token-store.js'
import { framed } from '../../../src/auth/wire.js'
import { issueToken, signTokenPayload, type Token } from '../../../src/auth/token.js'
import { createHost, type RmeshLibp2p } from '../../../src/net/host.js'
import { systemClock } from '../../../src/util/clock.js'
import { silentLogger } from '../../../src/util/logger.js'

const ECHO = '/rmesh-test/echo/1.0.0'
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms))
const nowS = () => Math.floor(Date.now() / 1000)

interface Node {
  key: PrivateKey
  id: string
  host: RmeshLibp2p
  tokens: TokenStore
  admission: Admission
  db: Level<string, unknown>
  refused: string[]
}

describe('admission over real libp2p', () => {
  const cleanup: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined)
  })

  async function tmp(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'rmesh-auth-'))
    cleanup.push(() => rm(dir, { recursive: true, force: true }))
    return dir
  }

  async function node(
    opts: {
      owner?: MeshOwner
      tokenFor?: (id: string, key: PrivateKey) => Promise<Token | Uint8Array | undefined>
    } = {},
  ): Promise<Node> {
    const key = await generateKeyPair('Ed25519')
    const id = peerIdOf(key)
    const db = new Level<string, unknown>(join(await tmp(), 'db'))
    await db.open()
    cleanup.push(() => db.close())
    const tokens = await createTokenStore(db)
    const t = await opts.tokenFor?.(id, key)
    if (t) await tokens.addOwnToken(t instanceof Uint8Array ? t : t.bytes)
    const state = createAdmissionState({ tokens, clock: systemClock })
    const host = await createHost({
      privateKey: key,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      connectionGater: createConnectionGater(state),
    })
    cleanup.push(async () => host.stop())
    const admission = createAdmission(
      { libp2p: host, tokens, state, clock: systemClock, logger: silentLogger },
      { graceMs: 700, requireWaitMs: 400, handshakeTimeoutMs: 2000, capabilityFor: () => 'submit' },
    )
    const refused: string[] = []
    admission.onRefused((e) => refused.push(e.code))
    await admission.start()
    cleanup.push(() => admission.stop())
    await host.handle(
      ECHO,
      admission.requireAdmitted(async (stream) => {
        for await (const chunk of stream) stream.send(chunk)
        await stream.close()
      }),
    )
    if (opts.owner) {
      const issuer = createTokenIssuer({
        nodeKey: key,
        tokens,
        clock: systemClock,
        owner: opts.owner,
      })
      const server = createInviteServer({
        libp2p: host,
        nodeKey: key,
        admission,
        issuer,
        tokens,
        clock: systemClock,
        logger: silentLogger,
      })
      await server.start()
      ;(host as unknown as { issuer: unknown }).issuer = issuer
    }
    return { key, id, host, tokens, admission, db, refused }
  }

  async function mesh(): Promise<MeshOwner> {
    return createMesh(await tmp())
  }

  const owned =
    (
      owner: MeshOwner,
      caps = ['submit', 'render', 'admin'],
      nbf = nowS() - 5,
      exp = nowS() + 3600,
    ) =>
    (aud: string) =>
      issueToken({
        issuer: owner.privateKey,
        ownerPublicKey: owner.ownerPublicKey,
        audience: aud,
        caps,
        nbf,
        exp,
      })

  async function echo(from: Node, to: Node): Promise<boolean> {
    try {
      const stream = await from.host.dialProtocol(to.host.peerId, ECHO, {
        signal: AbortSignal.timeout(2000),
      })
      stream.send(new Uint8Array([7]))
      await stream.close()
      for await (const _ of stream) return true
      return false
    } catch {
      return false
    }
  }

  const dial = (from: Node, to: Node) =>
    from.host.dial(multiaddr(to.host.getMultiaddrs()[0].toString()), {
      signal: AbortSignal.timeout(2000),
    })

  async function until(cond: () => boolean, ms = 3000): Promise<boolean> {
    const end = Date.now() + ms
    while (Date.now() < end) {
      if (cond()) return true
      await new Promise((r) => setTimeout(r, 25))
    }
    return cond()
  }

  it('two admitted nodes admit each other and may use wrapped protocols', async () => {
    const owner = await mesh()
    const a = await node({ tokenFor: owned(owner) })
    const b = await node({ tokenFor: owned(owner, ['render']) })
    await dial(b, a)
    await a.admission.waitAdmitted(b.id, AbortSignal.timeout(3000))
    await b.admission.waitAdmitted(a.id, AbortSignal.timeout(3000))
    expect(a.admission.admittedPeers()).toEqual([b.id])
    expect(a.admission.tokenOf(b.id)?.cap).toEqual(['render'])
    expect(await echo(b, a)).toBe(true)
    expect(await echo(a, b)).toBe(true)
    // A token learned in the handshake authorizes that peer's log entries.
    const entry = {
      log: 'job/x',
      kind: 'announce',
      author: b.id,
      tok: a.admission.tokenOf(b.id)?.id,
      body: {},
    }
    await expect(a.admission.authorizeEntry(entry as never)).rejects.toMatchObject({
      code: 'ERR_TOKEN_CAPABILITY',
    })
  })

  const badCases: Array<
    [
      string,
      (
        owner: MeshOwner,
        other: MeshOwner,
      ) => (id: string, key: PrivateKey) => Promise<Token | Uint8Array | undefined>,
      string,
    ]
  > = [
    ['no token', () => async () => undefined, 'ERR_AUTH_NO_TOKEN'],
    [
      'an expired token',
      (o) => owned(o, ['render'], nowS() - 7200, nowS() - 3600),
      'ERR_TOKEN_EXPIRED',
    ],
    ['a wrong-mesh token', (_o, other) => owned(other), 'ERR_TOKEN_WRONG_MESH'],
    [
      'a wrong-audience (replayed) token',
      (o) => async () => owned(o)(peerIdOf(await generateKeyPair('Ed25519'))),
      'ERR_TOKEN_WRONG_AUDIENCE',
    ],
    [
      'a forged token',
      (o, other) => async (id) => {
        const t = await owned(o)(id)
        // Signed by another key while claiming the mesh owner as issuer.
        return signTokenPayload({ ...t, cap: [...t.cap] }, other.privateKey)
      },
      'ERR_TOKEN_SIGNATURE',
    ],
  ]

  /** A peer without admission that presents whatever bytes it likes in the handshake. */
  async function rogue(
    hello: (id: string, key: PrivateKey) => Promise<unknown>,
  ): Promise<Node & { present(to: Node): Promise<void> }> {
    const n = await node()
    await n.admission.stop()
    const msg = await hello(n.id, n.key)
    return {
      ...n,
      async present(to) {
        const conn = await dial(n, to)
        const stream = await conn.newStream(AUTH_PROTOCOL, { signal: AbortSignal.timeout(2000) })
        const io = framed(stream, MAX_HELLO_BYTES, 'test')
        await io.write(msg, AbortSignal.timeout(2000))
        await io.read(AbortSignal.timeout(2000)).catch(() => undefined)
      },
    }
  }

  for (const [name, make, expected] of badCases) {
    it(`a node with ${name} is disconnected, refused on redial and served nothing`, async () => {
      const owner = await mesh()
      const other = await mesh()
      const a = await node({ tokenFor: owned(owner) })
      const m = await rogue(async (id, key) => {
        const t = await make(owner, other)(id, key)
        return { v: 1, token: t === undefined ? null : t instanceof Uint8Array ? t : t.bytes }
      })
      await m.present(a).catch(() => undefined)
      expect(await echo(m, a)).toBe(false)
      expect(await until(() => a.host.getConnections(m.host.peerId).length === 0)).toBe(true)
      expect(a.admission.isAdmitted(m.id)).toBe(false)
      expect(a.refused).toContain(expected)
      // a will not dial it; a bad token is also refused inbound (no token: let in only to redeem an invite).
      await expect(dial(a, m)).rejects.toThrow()
      if (expected !== 'ERR_AUTH_NO_TOKEN') {
        const before = a.refused.length
        await dial(m, a).catch(() => undefined)
        expect(await until(() => a.host.getConnections(m.host.peerId).length === 0, 1000)).toBe(
          true,
        )
        // The gater refused the connection before any handshake could run.
        expect(a.refused.length).toBe(before)
      }
      expect(await echo(m, a)).toBe(false)
    })
  }

  it('garbage in the handshake costs the peer its connection, not the daemon', async () => {
    const owner = await mesh()
    const a = await node({ tokenFor: owned(owner) })
    for (const msg of [
      { v: 1, token: new Uint8Array(500).fill(9) },
      { v: 2 },
      'hello',
      [1, 2, 3],
      { v: 1, token: 'x' },
    ]) {
      const m = await rogue(async () => msg)
      await m.present(a).catch(() => undefined)
      expect(await until(() => a.host.getConnections(m.host.peerId).length === 0)).toBe(true)
      expect(a.admission.isAdmitted(m.id)).toBe(false)
      // libp2p rate-limits inbound connections per address (5/s by default).
      await pause(250)
    }
    // A frame over the limit.
    const big = await rogue(async () => ({ v: 1, token: new Uint8Array(20_000) }))
    await big.present(a).catch(() => undefined)
    expect(await until(() => a.host.getConnections(big.host.peerId).length === 0)).toBe(true)
    await pause(300)
    const b = await node({ tokenFor: owned(owner) })
    await dial(b, a)
    await a.admission.waitAdmitted(b.id, AbortSignal.timeout(3000))
  })

  it('a token the mesh log carried makes its audience a member (introduced), not admitted', async () => {
    const owner = await mesh()
    const a = await node({ tokenFor: owned(owner) })
    const stranger = peerIdOf(await generateKeyPair('Ed25519'))
    const expired = peerIdOf(await generateKeyPair('Ed25519'))
    expect(a.admission.isMember(stranger)).toBe(false)
    const tok = (await owned(owner, ['render'])(stranger)) as Token
    await a.admission.learnToken(tok.bytes)
    expect(a.admission.isMember(stranger)).toBe(true)
    expect(a.admission.isAdmitted(stranger)).toBe(false)
    // An expired token introduces nobody; nor does a revoked one.
    const old = (await owned(owner, ['render'], nowS() - 7200, nowS() - 3600)(expired)) as Token
    await a.admission.learnToken(old.bytes)
    expect(a.admission.isMember(expired)).toBe(false)
    await a.admission.revoke(tok.id)
    expect(a.admission.isMember(stranger)).toBe(false)
    // Garbage is refused with a typed error and teaches nothing.
    await expect(a.admission.learnToken(new Uint8Array([1, 2, 3]))).rejects.toMatchObject({
      code: expect.stringMatching(/^ERR_/),
    })
  })

  it('revocation disconnects now and refuses redial', async () => {
    const owner = await mesh()
    const a = await node({ tokenFor: owned(owner) })
    const b = await node({ tokenFor: owned(owner, ['render']) })
    await dial(b, a)
    await a.admission.waitAdmitted(b.id, AbortSignal.timeout(3000))
    const tok = a.admission.tokenOf(b.id) as Token
    expect(await a.admission.revoke(tok.id)).toBe(true)
    expect(a.admission.isAdmitted(b.id)).toBe(false)
    expect(await until(() => a.host.getConnections(b.host.peerId).length === 0)).toBe(true)
    await dial(b, a).catch(() => undefined)
    expect(await until(() => a.host.getConnections(b.host.peerId).length === 0, 1500)).toBe(true)
    expect(a.admission.isAdmitted(b.id)).toBe(false)
    expect(await echo(b, a)).toBe(false)
    expect(a.refused).toContain('ERR_TOKEN_REVOKED')
  })

  it('an invite admits one machine once; concurrent redemptions admit at most one', async () => {
    const owner = await mesh()
    const a = await node({ owner, tokenFor: owned(owner) })
    const issuer = (a.host as unknown as { issuer: Parameters<typeof createInvite>[0]['issuer'] })
      .issuer
    const make = async () =>
      formatInvite(
        await createInvite(
          { nodeKey: a.key, issuer, meshId: owner.meshId, clock: systemClock },
          { caps: ['render'], addrs: a.host.getMultiaddrs().map((m) => m.toString()) },
        ),
      )
    const invite = await make()
    const n = await node()
    expect(n.admission.token).toBeUndefined()
    const got = await redeemInvite(n.host, invite, { signal: AbortSignal.timeout(5000) })
    expect(got.token.aud).toBe(n.id)
    expect(got.meshId).toBe(owner.meshId)
    await n.tokens.addOwnToken(got.token.bytes)
    await n.admission.reloadToken()
    await a.admission.waitAdmitted(n.id, AbortSignal.timeout(3000))
    await n.admission.waitAdmitted(a.id, AbortSignal.timeout(3000))
    expect(await echo(n, a)).toBe(true)
    // Second use fails.
    const n2 = await node()
    await expect(redeemInvite(n2.host, invite)).rejects.toMatchObject({
      details: { code: 'ERR_INVITE_USED' },
    })

    // Concurrent redemptions of one fresh invite.
    const invite2 = await make()
    const [x, y] = await Promise.all([node(), node()])
    const results = await Promise.allSettled([
      redeemInvite(x.host, invite2),
      redeemInvite(y.host, invite2),
    ])
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1)
    // The unadmitted redeemers are hung up on after the grace.
    expect(await until(() => a.host.getConnections(n2.host.peerId).length === 0, 3000)).toBe(true)
  })
})
