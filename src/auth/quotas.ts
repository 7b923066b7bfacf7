/**
 * Per-submitter queue limits (`maxQueuedJobs`, RenderOnline's per-user limit) as the tokens
 * published in the mesh log say. Of several tokens of one peer the one expiring last counts
 * (ties: the larger token id), so every node that has seen the same tokens picks the same
 * limit whatever order they arrived in.
 *
 * Invariants: a token that does not decode is ignored; no verification here (the mesh log
 * only holds admitted, verified admit entries).
 */
import { decodeToken } from './token.js'

export interface QuotaBook {
  /** Take a token's limit into account (the bytes of an admit entry's token). */
  learn(tokenBytes: Uint8Array): void
  /** The queue limit of this submitter; undefined: none. */
  maxQueuedJobs(peer: string): number | undefined
}

export function createQuotaBook(): QuotaBook {
  const quotas = new Map<string, { max: number | undefined; exp: number; id: string }>()
  return {
    learn(bytes) {
      try {
        const t = decodeToken(bytes)
        const prev = quotas.get(t.aud)
        if (prev && (prev.exp > t.exp || (prev.exp === t.exp && prev.id >= t.id))) return
        quotas.set(t.aud, { max: t.lim.maxQueuedJobs, exp: t.exp, id: t.id })
      } catch {}
    },
    maxQueuedJobs: (peer) => quotas.get(peer)?.max,
  }
}
