import { Key } from 'interface-datastore'
import { describe, expect, it } from 'vitest'
import { CopyingMemoryDatastore } from '../../../src/net/host.js'

describe('CopyingMemoryDatastore', () => {
  it('stores a copy of a view into a larger buffer, so the buffer is not pinned', async () => {
    const ds = new CopyingMemoryDatastore()
    const slab = new Uint8Array(64 * 1024)
    const view = slab.subarray(100, 106)
    view.set([1, 2, 3, 4, 5, 6])
    await ds.put(new Key('/dht/provider/x'), view)
    const got = await ds.get(new Key('/dht/provider/x'))
    expect([...got]).toEqual([1, 2, 3, 4, 5, 6])
    expect(got.buffer.byteLength).toBe(6)
    // Node's pooled small Buffers are exactly such views.
    const pooled = Buffer.from([7, 8])
    await ds.put(new Key('/y'), pooled)
    expect((await ds.get(new Key('/y'))).buffer.byteLength).toBe(2)
  })

  it('keeps a value that owns its whole buffer as is', async () => {
    const ds = new CopyingMemoryDatastore()
    const own = new Uint8Array([9, 9, 9])
    await ds.put(new Key('/z'), own)
    expect(await ds.get(new Key('/z'))).toBe(own)
  })
})
