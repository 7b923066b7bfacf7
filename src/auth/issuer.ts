/**
 * Issuing tokens from this node: with the mesh owner key when this node owns the mesh,
 * else by one-level delegation from this node's own admin token (which becomes the proof).
 *
 * Invariants: a delegated token never outlives its proof (its expiry is clamped) and never
 * widens its caps (refused with ERR_TOKEN_DELEGATION); every issued token is recorded.
 */
import type { PrivateKey } from '@libp2p/interface'
import type { Clock } from '../util/clock.js'
import { TokenError } from './errors.js'
import { peerIdOf } from './identity.js'
import type { MeshOwner } from './mesh.js'
import { pickOwnToken } from './own-token.js'
import type { TokenStore } from './token-store.js'
import {
  type Capability,
  issueToken,
  normalizeCaps,
  type Token,
  type TokenLimits,
} from './token.js'

export const DEFAULT_TOKEN_TTL_SECONDS = 30 * 86_400

export interface IssueRequest {
  audience: string
  caps: readonly string[]
  /** Lifetime in seconds from now (default 30 days); clamped to the proof's expiry. */
  ttlSeconds?: number
  limits?: TokenLimits
}

export interface TokenIssuer {
  /** The caps this node may grant now (empty if it may grant none). */
  grantable(): Promise<Capability[]>
  issue(request: IssueRequest): Promise<Token>
}

export interface TokenIssuerComponents {
  nodeKey: PrivateKey
  tokens: TokenStore
  clock: Clock
  /** Present only on the node holding mesh.key. */
  owner?: MeshOwner
}

export function createTokenIssuer(components: TokenIssuerComponents): TokenIssuer {
  const { nodeKey, tokens, clock, owner } = components
  const selfId = peerIdOf(nodeKey)
  const adminToken = async (): Promise<Token | undefined> => {
    const t = await pickOwnToken(tokens, {
      peerId: selfId,
      meshId: owner?.meshId,
      nowMs: clock.wall(),
    })
    return t?.cap.includes('admin') ? t : undefined
  }
  return {
    async grantable() {
      if (owner) return ['submit', 'render', 'admin']
      return [...((await adminToken())?.cap ?? [])]
    },
    async issue(request) {
      const caps = normalizeCaps(request.caps)
      const nbf = Math.floor(clock.wall() / 1000)
      const ttl = request.ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS
      if (!Number.isSafeInteger(ttl) || ttl <= 0)
        throw new TokenError(
          'ERR_TOKEN_MALFORMED',
          'token lifetime must be a positive number of seconds',
        )
      let token: Token
      if (owner) {
        token = await issueToken({
          issuer: owner.privateKey,
          ownerPublicKey: owner.ownerPublicKey,
          audience: request.audience,
          caps,
          nbf,
          exp: nbf + ttl,
          limits: request.limits,
        })
      } else {
        const proof = await adminToken()
        if (!proof)
          throw new TokenError(
            'ERR_TOKEN_DELEGATION',
            'this node holds no valid admin token, so it cannot issue tokens',
          )
        token = await issueToken({
          issuer: nodeKey,
          ownerPublicKey: proof.ownerKey,
          proof: proof.bytes,
          audience: request.audience,
          caps,
          nbf: Math.max(nbf, proof.nbf),
          exp: Math.min(nbf + ttl, proof.exp),
          limits: request.limits,
        })
      }
      await tokens.recordIssued(token)
      return token
    },
  }
}
