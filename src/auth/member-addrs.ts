/**
 * Member addresses that travel with a join code (a token or an invite), so a new machine
 * beyond the LAN reaches the mesh with no --bootstrap flag (protocols/token.md, "Printable
 * form with member addresses"; protocols/invite.md, `mem`).
 *
 * Invariants:
 *  - at most MAX_MEMBER_ADDRS full multiaddrs, each ending in /p2p/<peer id> and at most
 *    256 characters; anything else is refused with ERR_TOKEN_MALFORMED before it is used;
 *  - addresses are hints, never trust: a dial reaches only the peer id it names (noise), and
 *    admission still decides everything; they are not signed in a token (its signature
 *    covers the envelope only, so a token with and without them is the same token);
 *  - chosen reachable-first: public addresses, then relayed ones, then the rest.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { isPrivate } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { fromBase64Url, toBase64Url } from '../util/bytes.js'
import { decodeBounded, encode } from '../util/cbor.js'
import { TokenError } from './errors.js'

export const MAX_MEMBER_ADDRS = 8
export const MAX_MEMBER_ADDRS_BYTES = 2304
/** Separates a printable token from its member addresses. */
export const MEMBER_ADDRS_SEPARATOR = '.'

const bad = (why: string) =>
  new TokenError('ERR_TOKEN_MALFORMED', `malformed member addresses: ${why}`)

/** Check one list (already decoded): returns copies, or throws ERR_TOKEN_MALFORMED. */
export function checkMemberAddrs(list: unknown): string[] {
  if (!Array.isArray(list) || list.length > MAX_MEMBER_ADDRS)
    throw bad(`a list of at most ${MAX_MEMBER_ADDRS} multiaddrs`)
  return list.map((a) => {
    if (typeof a !== 'string' || a.length > 256) throw bad('an address is not a short string')
    try {
      const p2p = multiaddr(a)
        .getComponents()
        .filter((c) => c.name === 'p2p')
        .pop()?.value
      if (!p2p) throw new Error('no /p2p/')
      peerIdFromString(p2p)
    } catch {
      throw bad(`${JSON.stringify(a.slice(0, 80))} is not a multiaddr ending in /p2p/<peer id>`)
    }
    return a
  })
}

/** The suffix of a printable token: base64url of a CBOR list. */
export function encodeMemberAddrs(addrs: readonly string[]): string {
  return toBase64Url(encode(checkMemberAddrs([...addrs])))
}

export function decodeMemberAddrs(text: string): string[] {
  if (text.length > Math.ceil((MAX_MEMBER_ADDRS_BYTES * 4) / 3) || !/^[A-Za-z0-9_-]+$/.test(text))
    throw bad('not base64url')
  try {
    return checkMemberAddrs(decodeBounded(fromBase64Url(text), MAX_MEMBER_ADDRS_BYTES, 'addresses'))
  } catch (err) {
    if (err instanceof TokenError) throw err
    throw bad('not a CBOR list')
  }
}

/** `rmesh-token-…[.<addrs>]` → the token text and the addresses it carries. */
export function splitTokenCode(code: string): { token: string; addrs: string[] } {
  const s = code.trim()
  const i = s.indexOf(MEMBER_ADDRS_SEPARATOR)
  if (i < 0) return { token: s, addrs: [] }
  return { token: s.slice(0, i), addrs: decodeMemberAddrs(s.slice(i + 1)) }
}

/** Up to MAX_MEMBER_ADDRS addresses of the given members, reachable-first, few per member. */
export function pickMemberAddrs(members: { peerId: string; addrs: string[] }[]): string[] {
  const rank = (a: string) => {
    if (a.includes('/p2p-circuit')) return 1
    try {
      return isPrivate(multiaddr(a)) ? 2 : 0
    } catch {
      return 3
    }
  }
  const out: string[] = []
  for (const m of members) {
    const full = [...new Set(m.addrs)]
      .filter((a) => !a.includes('/127.') && !a.includes('/::1/'))
      .map((a) => (a.endsWith(`/p2p/${m.peerId}`) ? a : `${a}/p2p/${m.peerId}`))
      .filter((a) => a.length <= 256)
      .sort((x, y) => rank(x) - rank(y))
    out.push(...full.slice(0, 3))
  }
  return checkMemberAddrs(out.slice(0, MAX_MEMBER_ADDRS))
}

/** Member addresses grouped by peer id (to dial each member once). */
export function byPeer(addrs: readonly string[]): Map<string, string[]> {
  const m = new Map<string, string[]>()
  for (const a of addrs) {
    const peer = a.slice(a.lastIndexOf('/p2p/') + 5)
    m.set(peer, [...(m.get(peer) ?? []), a])
  }
  return m
}
