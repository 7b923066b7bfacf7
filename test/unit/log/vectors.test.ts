import { readFile, writeFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { decodeEntry } from '../../../src/log/entry.js'
import { fromHex } from '../../../src/util/bytes.js'
import { cidOf } from '../../../src/util/hash.js'
import { newNode, newSigner } from './helpers.js'
import { buildVectors, type VectorFiles } from './vectors.js'

const dir = new URL('../../../protocols/vectors/log/', import.meta.url)

interface EntryVector {
  id: string
  bytesHex: string
  fields: Record<string, unknown>
}

describe('log test vectors', async () => {
  const built = await buildVectors()
  if (process.env.RMESH_WRITE_VECTORS === '1') {
    for (const [name, content] of Object.entries(built)) {
      await writeFile(new URL(name, dir), `${JSON.stringify(content, null, 2)}\n`)
    }
  }
  const read = async (name: keyof VectorFiles) =>
    JSON.parse(await readFile(new URL(name, dir), 'utf8'))

  it('the stored vectors are what the code produces', async () => {
    for (const name of Object.keys(built) as Array<keyof VectorFiles>) {
      expect(await read(name)).toEqual(JSON.parse(JSON.stringify(built[name])))
    }
  })

  it('a signed entry decodes to its fields and its id is the CID of its bytes', async () => {
    const v = (await read('entry.json')).entry as EntryVector
    const bytes = fromHex(v.bytesHex)
    expect(cidOf(bytes)).toBe(v.id)
    const e = await decodeEntry(bytes)
    expect(e.id).toBe(v.id)
    expect({ ...v.fields }).toEqual({
      v: e.v,
      log: e.log,
      kind: e.kind,
      body: e.body,
      clock: e.clock,
      author: e.author,
      wall: e.wall,
      next: [...e.next],
      tok: e.tok,
    })
  })

  it('every replica folds the set in the given order, whatever the delivery order', async () => {
    const v = await read('fold.json')
    const entries = (v.entries as EntryVector[]).map((x) => fromHex(x.bytesHex))
    for (const order of [entries, [...entries].reverse()]) {
      const node = newNode(await newSigner())
      for (const b of order) await node.log.join(b)
      const log = (v.entries as EntryVector[])[0].fields.log as never
      expect((await node.log.entries(log)).map((e) => e.id)).toEqual(v.foldOrder)
      expect((await node.log.heads(log)).sort()).toEqual(v.heads)
    }
  })
})
