import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import { decodeManifest, encodeManifest } from '../../../src/blobs/manifest.js'
import { bitfieldFromMissing } from '../../../src/blobs/selection.js'
import {
  decodeHaveBits,
  decodeHaveSubscribe,
  decodeRequest,
  decodeResponse,
  encodeHaveBits,
  encodeHaveSubscribe,
  encodeRequest,
  encodeResponseParts,
  MAX_WANTS,
} from '../../../src/blobs/wire.js'
import { decodeHave, encodeHave } from '../../../src/blobs/providers.js'
import { fromHex, toHex } from '../../../src/util/bytes.js'
import { encode } from '../../../src/util/cbor.js'
import { isRmeshError } from '../../../src/util/errors.js'
import { cidOf } from '../../../src/util/hash.js'

const VECTORS = join(import.meta.dirname, '../../../protocols/vectors/blocks/small-file.json')

function concat(parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts))
}

/** The vector's inputs: a 2500-byte file cut into 1 KiB blocks. */
function vectorInputs() {
  const data = new Uint8Array(2500)
  for (let i = 0; i < data.length; i++) data[i] = i % 251
  const blockSize = 1024
  const blocks: string[] = []
  for (let off = 0; off < data.length; off += blockSize)
    blocks.push(cidOf(data.subarray(off, off + blockSize)))
  return { data, blockSize, blocks, name: 'scene.blend' }
}

function computeVectors() {
  const { data, blockSize, blocks, name } = vectorInputs()
  const m = encodeManifest({ name, size: data.length, blockSize, blocks })
  return {
    description: 'A 2500-byte file (byte i = i mod 251), 1 KiB blocks; see protocols/blocks.md',
    name,
    size: data.length,
    blockSize,
    blockCids: blocks,
    manifestHex: toHex(m.bytes),
    manifestCid: m.cid,
    requestHex: toHex(encodeRequest([m.cid, blocks[2]])),
    haveResponseHex: toHex(concat(encodeResponseParts(blocks[2], data.subarray(2048)))),
    notHaveResponseHex: toHex(concat(encodeResponseParts(blocks[0], null))),
    haveAnnouncementHex: toHex(encodeHave([m.cid])),
    haveSubscribeHex: toHex(encodeHaveSubscribe(m.cid)),
    // Holds blocks 0 and 2 of 3: bits 0b101 followed by five zero bits.
    haveBitsHex: toHex(encodeHaveBits(bitfieldFromMissing(blocks, [blocks[1]]))),
  }
}

describe('blocks wire format', () => {
  it('matches the recorded vectors in protocols/vectors/blocks', async () => {
    const computed = computeVectors()
    if (process.env.RMESH_WRITE_VECTORS === '1') {
      await writeFile(VECTORS, `${JSON.stringify(computed, null, 2)}\n`)
    }
    const recorded = JSON.parse(await readFile(VECTORS, 'utf8'))
    expect(computed).toEqual(recorded)
    const m = decodeManifest(fromHex(recorded.manifestHex))
    expect(m.blocks).toEqual(recorded.blockCids)
    expect(cidOf(fromHex(recorded.manifestHex))).toBe(recorded.manifestCid)
    expect(decodeHaveSubscribe(fromHex(recorded.haveSubscribeHex))).toBe(recorded.manifestCid)
    expect([...decodeHaveBits(fromHex(recorded.haveBitsHex))]).toEqual([0b1010_0000])
  })

  it('hand-built response frames are exactly the CBOR of [cid, block]', () => {
    const { blocks } = vectorInputs()
    for (const size of [0, 1, 23, 24, 255, 256, 65535, 65536, 1 << 20]) {
      const block = new Uint8Array(size).fill(7)
      const cid = cidOf(block)
      const parts = encodeResponseParts(cid, block)
      expect(concat(parts)).toEqual(encode([CID.parse(cid).bytes, block]))
      const back = decodeResponse(concat(parts))
      expect(back.cid).toBe(cid)
      expect(back.block?.byteLength).toBe(size)
    }
    expect(decodeResponse(concat(encodeResponseParts(blocks[0], null)))).toEqual({
      cid: blocks[0],
      block: null,
    })
  })

  it('rejects garbage requests, responses and announcements with typed errors', () => {
    const { blocks } = vectorInputs()
    const garbage = [
      new Uint8Array([0xff]),
      encode({ wants: [] }),
      encode({ wants: 'x' }),
      encode({ wants: [new Uint8Array(36)] }),
      encode({ wants: Array(MAX_WANTS + 1).fill(encodeRequest([blocks[0]]).subarray(0, 36)) }),
      encode([1, 2]),
      new Uint8Array(64 * 1024 + 1),
    ]
    for (const g of garbage) {
      let caught: unknown
      try {
        decodeRequest(g)
      } catch (e) {
        caught = e
      }
      expect(isRmeshError(caught), String(caught)).toBe(true)
    }
    for (const g of [
      encode([1]),
      encode([new Uint8Array(3), null]),
      encode(['x', new Uint8Array(1)]),
      new Uint8Array((1 << 20) + 2000),
    ]) {
      expect(() => decodeResponse(g)).toThrow()
    }
    expect(() => encodeRequest([])).toThrow()
    expect(() => decodeHave(encode({ manifests: [1] }))).toThrow()
    expect(() => decodeHave(new Uint8Array(70_000))).toThrow()
    for (const g of [
      encode({ manifest: 'x' }),
      encode([1]),
      new Uint8Array(2000),
      new Uint8Array([0xff]),
    ]) {
      expect(() => decodeHaveSubscribe(g)).toThrow()
    }
    for (const g of [
      encode({ have: 'x' }),
      encode({ have: new Uint8Array(4097) }),
      encode({}),
      new Uint8Array(5000),
    ]) {
      expect(() => decodeHaveBits(g)).toThrow()
    }
    expect(() => encodeHaveBits(new Uint8Array(4097))).toThrow()
  })
})
