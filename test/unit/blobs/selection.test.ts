import { describe, expect, it } from 'vitest'
import {
  bitfieldBytes,
  bitfieldFromMissing,
  bitfieldHas,
  bitfieldSet,
  selectBlocks,
  validBitfield,
} from '../../../src/blobs/selection.js'

const blocks = Array.from({ length: 20 }, (_, i) => `b${i}`)

describe('have-bitfields', () => {
  it('name block i by bit 7 - i % 8 of byte i >> 3', () => {
    const bits = new Uint8Array(bitfieldBytes(20))
    expect(bits.length).toBe(3)
    bitfieldSet(bits, 0)
    bitfieldSet(bits, 9)
    bitfieldSet(bits, 19)
    expect([...bits]).toEqual([0x80, 0x40, 0x10])
    expect(bitfieldHas(bits, 9)).toBe(true)
    expect(bitfieldHas(bits, 10)).toBe(false)
    expect(bitfieldHas(bits, 400)).toBe(false)
    expect(bitfieldHas(new Uint8Array(0), 0)).toBe(false)
  })

  it('are built from the missing list, duplicates included', () => {
    const withDup = ['a', 'b', 'a', 'c']
    const bits = bitfieldFromMissing(withDup, ['a'])
    expect([0, 1, 2, 3].map((i) => bitfieldHas(bits, i))).toEqual([false, true, false, true])
  })

  it('must fit the manifest: exact length or empty, nothing past the end', () => {
    expect(validBitfield(new Uint8Array(0), 20)).toBe(true)
    expect(validBitfield(new Uint8Array(3), 20)).toBe(true)
    expect(validBitfield(new Uint8Array(2), 20)).toBe(false)
    expect(validBitfield(new Uint8Array(4), 20)).toBe(false)
    expect(validBitfield(Uint8Array.of(0, 0, 0x08), 20)).toBe(false)
    expect(validBitfield(Uint8Array.of(0xff, 0xff, 0xf0), 20)).toBe(true)
    expect(validBitfield(Uint8Array.of(0xff), 8)).toBe(true)
  })
})

describe('block selection', () => {
  it('asks a peer only for blocks it can serve, rarest first, ties in the fetch order', () => {
    // Block i is held by (i % 3) + 1 providers; the peer asked holds the even blocks.
    const picked = selectBlocks({
      pending: blocks,
      count: 4,
      canAsk: (cid) => Number(cid.slice(1)) % 2 === 0,
      holders: (cid) => (Number(cid.slice(1)) % 3) + 1,
    })
    expect(picked).toEqual(['b0', 'b6', 'b12', 'b18'])
  })

  it('the origin (holds everything) is asked for what nobody else has', () => {
    const heldElsewhere = new Set(['b0', 'b1', 'b2', 'b3'])
    const picked = selectBlocks({
      pending: blocks,
      count: 3,
      canAsk: () => true,
      holders: (cid) => (heldElsewhere.has(cid) ? 2 : 1),
    })
    expect(picked).toEqual(['b4', 'b5', 'b6'])
  })

  it('fetchers with different orders start on different blocks', () => {
    const orderA = [...blocks]
    const orderB = [...blocks].reverse()
    const pick = (pending: string[]) =>
      selectBlocks({ pending, count: 5, canAsk: () => true, holders: () => 1 })
    const a = pick(orderA)
    const b = pick(orderB)
    expect(a.filter((x) => b.includes(x))).toEqual([])
  })

  it('examines a bounded sample and nothing the peer lacks', () => {
    let looked = 0
    const many = Array.from({ length: 10_000 }, (_, i) => `c${i}`)
    const picked = selectBlocks({
      pending: many,
      count: 2,
      sample: 16,
      canAsk: () => true,
      holders: (cid) => {
        looked++
        return cid === 'c9000' ? 0 : 1
      },
    })
    expect(looked).toBe(16)
    expect(picked).toEqual(['c0', 'c1'])
    expect(
      selectBlocks({ pending: many, count: 2, canAsk: () => false, holders: () => 1 }),
    ).toEqual([])
  })
})
