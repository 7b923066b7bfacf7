/**
 * Admission state on disk, in the `auth` sublevel of the node's LevelDB (values are raw
 * bytes: the exact token envelopes, never re-encoded).
 *
 * Invariants:
 *  - revocations are a grow-only set (token ids and peer ids), mirrored in memory so the
 *    connection gater and gossip validators can check them synchronously;
 *  - an invite nonce is marked used at most once: check-and-set runs through one serial
 *    queue, so concurrent redemptions in this process cannot both see it unused;
 *  - tokens are stored as received; what goes in is decoded (schema-checked) first.
 *    Verification against the mesh is the caller's job (admission knows the mesh and time).
 */
import type { Level } from 'level'
import { toHex } from '../util/bytes.js'
import { KeyedQueue } from '../util/queue.js'
import { decodeToken, type Token } from './token.js'

type Bytes = Level<string, Uint8Array>
// biome-ignore lint/suspicious/noExplicitAny: a sublevel of any Level works here.
type AnyLevel = Level<string, any>

export interface TokenStore {
  /** Tokens held by this node (any audience check is the caller's). */
  addOwnToken(bytes: Uint8Array): Promise<Token>
  ownTokens(): Promise<Token[]>
  removeOwnToken(id: string): Promise<void>
  /** Tokens this node issued, for `token list`. */
  recordIssued(token: Token): Promise<void>
  issuedTokens(): Promise<Token[]>
  /** Tokens of other peers, learned from handshakes and from the mesh log. */
  rememberToken(token: Token): Promise<void>
  /** Any token known under this id: own, issued or learned. */
  getToken(id: string): Promise<Token | undefined>
  revoke(tokenIdOrPeerId: string): Promise<boolean>
  isRevoked(tokenIdOrPeerId: string): boolean
  revocations(): string[]
  /** Mark an invite nonce used; true if this call was the first use. */
  consumeInviteNonce(nonce: Uint8Array, expSeconds: number): Promise<boolean>
  /** Listeners called after a new revocation is stored. */
  onRevoked(listener: (tokenIdOrPeerId: string) => void): () => void
}

export const AUTH_SUBLEVEL = 'auth'
/** Learned tokens are small, but a peer must not make us cache without bound. */
const CACHE_LIMIT = 4096

export async function createTokenStore(db: AnyLevel): Promise<TokenStore> {
  const auth = db.sublevel<string, Uint8Array>(AUTH_SUBLEVEL, { valueEncoding: 'view' })
  const sub = (name: string): Bytes =>
    auth.sublevel<string, Uint8Array>(name, { valueEncoding: 'view' }) as unknown as Bytes
  const own = sub('own')
  const issued = sub('issued')
  const known = sub('known')
  const revokedDb = sub('revoked')
  const invites = sub('invite')
  const queue = new KeyedQueue()
  const revoked = new Set<string>()
  const listeners = new Set<(id: string) => void>()
  const cache = new Map<string, Token>()
  for await (const key of revokedDb.keys()) revoked.add(key)

  const cacheToken = (t: Token) => {
    if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value as string)
    cache.set(t.id, t)
  }
  const all = async (level: Bytes): Promise<Token[]> => {
    const out: Token[] = []
    for await (const value of level.values()) {
      try {
        out.push(decodeToken(value))
      } catch {
        // A stored token that no longer decodes (format change) is skipped, not fatal.
      }
    }
    return out
  }
  const lookup = async (level: Bytes, id: string): Promise<Token | undefined> => {
    const bytes = await level.get(id)
    if (!bytes) return undefined
    try {
      return decodeToken(bytes)
    } catch {
      return undefined
    }
  }

  return {
    async addOwnToken(bytes) {
      const token = decodeToken(bytes)
      await own.put(token.id, token.bytes)
      cacheToken(token)
      return token
    },
    ownTokens: () => all(own),
    async removeOwnToken(id) {
      await own.del(id)
    },
    async recordIssued(token) {
      await issued.put(token.id, token.bytes)
      cacheToken(token)
    },
    issuedTokens: () => all(issued),
    async rememberToken(token) {
      if (cache.has(token.id)) return
      await known.put(token.id, token.bytes)
      cacheToken(token)
    },
    async getToken(id) {
      const hit = cache.get(id)
      if (hit) return hit
      for (const level of [known, own, issued]) {
        const t = await lookup(level, id)
        if (t) {
          cacheToken(t)
          return t
        }
      }
      return undefined
    },
    async revoke(name) {
      if (typeof name !== 'string' || name.length === 0 || name.length > 200) return false
      return queue.run('revoke', async () => {
        if (revoked.has(name)) return false
        await revokedDb.put(name, new Uint8Array(0))
        revoked.add(name)
        for (const l of listeners) l(name)
        return true
      })
    },
    isRevoked: (name) => revoked.has(name),
    revocations: () => [...revoked],
    consumeInviteNonce(nonce, expSeconds) {
      const key = toHex(nonce)
      return queue.run('invite', async () => {
        if (await invites.has(key)) return false
        // The value keeps the invite expiry so used nonces can be pruned once expired.
        await invites.put(key, new TextEncoder().encode(String(expSeconds)))
        return true
      })
    },
    onRevoked(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
  }
}
