/**
 * Member addresses in join codes: the printable token's suffix (vector), the invite's `mem`
 * field, and garbage in either refused with a typed error before anything is dialed.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { decodeInvite, formatInvite, parseInviteString } from '../../../src/auth/invite.js'
import {
  checkMemberAddrs,
  decodeMemberAddrs,
  encodeMemberAddrs,
  MAX_MEMBER_ADDRS,
  pickMemberAddrs,
  splitTokenCode,
} from '../../../src/auth/member-addrs.js'
import { parseTokenString } from '../../../src/auth/token.js'
import { toBase64Url } from '../../../src/util/bytes.js'
import { encode } from '../../../src/util/cbor.js'
import { packageRoot } from '../../../src/version.js'

const PEER = '12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq'
const code = (fn: () => unknown) => {
  try {
    fn()
    return 'no error'
  } catch (err) {
    return (err as { code?: string }).code
  }
}

describe('member addresses', () => {
  it('the vector: a printable token with member addresses is the same token', async () => {
    const v = JSON.parse(
      await readFile(
        join(packageRoot(), 'protocols/vectors/join/token-with-member-addrs.json'),
        'utf8',
      ),
    )
    const split = splitTokenCode(v.code)
    expect(split.addrs).toEqual(v.memberAddrs)
    expect(Buffer.from(parseTokenString(split.token).bytes).toString('hex')).toBe(v.tokenHex)
    expect(Buffer.from(encode(v.memberAddrs)).toString('hex')).toBe(v.suffixCborHex)
    expect(splitTokenCode(split.token)).toEqual({ token: split.token, addrs: [] })
  })

  it('garbage suffixes and lists are refused with ERR_TOKEN_MALFORMED', () => {
    const cases = [
      '',
      '!!',
      'A'.repeat(10_000),
      toBase64Url(new Uint8Array([0xff, 0x00])),
      toBase64Url(encode({ not: 'a list' })),
      toBase64Url(encode([42])),
      toBase64Url(encode(['/ip4/1.2.3.4/tcp/1'])),
      toBase64Url(encode(['/ip4/1.2.3.4/tcp/1/p2p/not-a-peer'])),
      toBase64Url(encode([`/ip4/1.2.3.4/tcp/1/p2p/${PEER}${'x'.repeat(300)}`])),
      toBase64Url(encode(Array(MAX_MEMBER_ADDRS + 1).fill(`/ip4/1.2.3.4/tcp/1/p2p/${PEER}`))),
    ]
    for (const c of cases)
      expect(
        code(() => decodeMemberAddrs(c)),
        c.slice(0, 40),
      ).toBe('ERR_TOKEN_MALFORMED')
    expect(code(() => splitTokenCode('rmesh-token-AAAA.%%%'))).toBe('ERR_TOKEN_MALFORMED')
    expect(code(() => encodeMemberAddrs(['nonsense']))).toBe('ERR_TOKEN_MALFORMED')
  })

  it('picks reachable addresses first, a few per member, never loopback', () => {
    const picked = pickMemberAddrs([
      {
        peerId: PEER,
        addrs: [
          '/ip4/127.0.0.1/tcp/4777',
          '/ip4/10.1.0.5/tcp/4777',
          `/ip4/11.77.0.10/tcp/4777/p2p/${PEER}/p2p-circuit`,
          '/ip4/11.77.0.9/tcp/4777',
        ],
      },
    ])
    expect(picked).toEqual([
      `/ip4/11.77.0.9/tcp/4777/p2p/${PEER}`,
      `/ip4/11.77.0.10/tcp/4777/p2p/${PEER}/p2p-circuit/p2p/${PEER}`,
      `/ip4/10.1.0.5/tcp/4777/p2p/${PEER}`,
    ])
    expect(checkMemberAddrs(picked)).toEqual(picked)
  })

  it("an invite's mem field round-trips; a bad one is ERR_INVITE_MALFORMED", () => {
    const payload = (mem?: unknown) =>
      encode({
        v: 1,
        mesh: 'rmgr2q7gf5lh6pzfdnurnkvputhm',
        iss: PEER,
        cap: ['render'],
        exp: 2_000_000_000,
        ttl: 86_400,
        lim: {},
        nnc: new Uint8Array(16),
        addrs: ['/ip4/11.77.0.10/tcp/4777'],
        ...(mem === undefined ? {} : { mem }),
      })
    const invite = (mem?: unknown) => encode([payload(mem), new Uint8Array(64)])
    const mem = [`/ip4/11.77.0.9/tcp/4777/p2p/${PEER}`]
    expect(parseInviteString(formatInvite(invite(mem))).mem).toEqual(mem)
    expect(decodeInvite(invite()).mem).toEqual([])
    for (const bad of [42, ['x'], Array(9).fill(mem[0])])
      expect(code(() => decodeInvite(invite(bad)))).toBe('ERR_INVITE_MALFORMED')
  })
})
