/**
 * Which of this node's stored tokens it presents: one whose audience is this node, that
 * verifies for its mesh now, with the latest expiry (so a renewed token wins at once).
 */
import type { TokenStore } from './token-store.js'
import { type Token, verifyToken } from './token.js'

export interface PickOwnTokenOptions {
  peerId: string
  /** When unknown (a node that just joined), the mesh of the token itself is used. */
  meshId?: string
  nowMs: number
  skewSeconds?: number
}

export async function pickOwnToken(
  tokens: TokenStore,
  options: PickOwnTokenOptions,
): Promise<Token | undefined> {
  let best: Token | undefined
  for (const token of await tokens.ownTokens()) {
    try {
      await verifyToken(token, {
        meshId: options.meshId ?? token.mesh,
        now: options.nowMs,
        audience: options.peerId,
        revoked: tokens.isRevoked,
        skewSeconds: options.skewSeconds,
      })
    } catch {
      continue
    }
    if (!best || token.exp > best.exp) best = token
  }
  return best
}
