/**
 * Which blocks a fetch asks which peer for: pure functions, so the swarm's behaviour is
 * tested without a network.
 *
 * Invariants:
 *  - a peer is asked only for blocks it can serve as far as we know: its have-bitfield
 *    says so, or we have no bitfield from it (a peer without the have protocol is asked
 *    blindly and answers not-have);
 *  - rarest first: among the candidates looked at, the blocks held by the fewest known
 *    providers go first; ties keep the fetch's own (random) order, so fetchers that start
 *    together ask for different blocks and then have something to give each other; the
 *    origin, holding everything, ends up sending each block about once;
 *  - bounded work: at most `sample` candidates are examined per call, whatever the file
 *    size (a 27 000-block manifest costs the same per pick as a 64-block one);
 *  - a bitfield names block i of the manifest (file order) by bit (7 - i % 8) of byte
 *    i >> 3; its length is exactly ceil(blocks / 8) bytes, or 0 for "holds nothing".
 */

/** Bytes in a have-bitfield for a manifest of `blocks` blocks. */
export function bitfieldBytes(blocks: number): number {
  return (blocks + 7) >> 3
}

export function bitfieldHas(bits: Uint8Array, index: number): boolean {
  const byte = index >> 3
  return byte < bits.length && (bits[byte] & (0x80 >> (index & 7))) !== 0
}

export function bitfieldSet(bits: Uint8Array, index: number): void {
  bits[index >> 3] |= 0x80 >> (index & 7)
}

/** The bitfield of a manifest whose blocks are all held except `missing`. */
export function bitfieldFromMissing(blocks: string[], missing: Iterable<string>): Uint8Array {
  const lacking = new Set(missing)
  const bits = new Uint8Array(bitfieldBytes(blocks.length))
  blocks.forEach((cid, i) => {
    if (!lacking.has(cid)) bitfieldSet(bits, i)
  })
  return bits
}

/** A bitfield from a peer fits the manifest: right length (or empty), no bits past the end. */
export function validBitfield(bits: Uint8Array, blocks: number): boolean {
  if (bits.length === 0) return true
  if (bits.length !== bitfieldBytes(blocks)) return false
  const spare = bits.length * 8 - blocks
  return spare === 0 || (bits[bits.length - 1] & ((1 << spare) - 1)) === 0
}

export interface SelectInput {
  /** Blocks nobody is asked for yet, in this fetch's preference order. */
  pending: Iterable<string>
  /** How many to return at most. */
  count: number
  /** May this peer be asked for it now (it holds it or we cannot tell, and did not refuse it lately)? */
  canAsk: (cid: string) => boolean
  /** How many known providers hold it (smaller = rarer). */
  holders: (cid: string) => number
  /** Candidates examined at most (default 64: a window is 8; more costs CPU on every pick). */
  sample?: number
}

/** Up to `count` blocks for one peer, rarest first among the first `sample` it can serve. */
export function selectBlocks(input: SelectInput): string[] {
  const sample = Math.max(input.count, input.sample ?? 64)
  const candidates: Array<{ cid: string; rarity: number; order: number }> = []
  for (const cid of input.pending) {
    if (candidates.length >= sample) break
    if (!input.canAsk(cid)) continue
    candidates.push({ cid, rarity: input.holders(cid), order: candidates.length })
  }
  candidates.sort((a, b) => a.rarity - b.rarity || a.order - b.order)
  return candidates.slice(0, input.count).map((c) => c.cid)
}
