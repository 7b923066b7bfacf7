/**
 * Which of this node's stored tokens it presents: one whose audience is this node, that
 * verifies for its mesh now, with the latest expiry (so a renewed token wins at once).
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describeError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'
import type { TokenStore } from './token-store.js'
import { parseTokenString, type Token, verifyToken } from './token.js'

/** `rmesh init` and `rmesh join` (without a running daemon) leave the token in this file. */
export const NODE_TOKEN_FILE = 'node.token'

/** Store the token of NODE_TOKEN_FILE in `dir`, if any; a bad one is logged and ignored. */
export async function importNodeTokenFile(
  dir: string,
  tokens: TokenStore,
  logger: Logger,
): Promise<void> {
  let text: string
  try {
    text = (await readFile(join(dir, NODE_TOKEN_FILE), 'utf8')).trim()
  } catch {
    return
  }
  if (!text) return
  try {
    await tokens.addOwnToken(parseTokenString(text).bytes)
  } catch (err) {
    logger.warn(`ignoring ${NODE_TOKEN_FILE}: it does not hold a valid token`, {
      err: describeError(err),
    })
  }
}

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
