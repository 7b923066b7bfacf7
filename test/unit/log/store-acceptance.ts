/** One acceptance suite for every LogStore implementation. */
import { beforeAll, describe, expect, it } from 'vitest'
import { createEntry } from '../../../src/log/entry.js'
import type { LogStore } from '../../../src/log/store.js'
import {
  type EntryId,
  jobLogId,
  type LogEntry,
  MESH_LOG,
  type Signer,
} from '../../../src/log/types.js'
import { newSigner } from './helpers.js'

export function storeAcceptance(
  name: string,
  open: () => Promise<{ store: LogStore; close?: () => Promise<void> }>,
) {
  describe(`LogStore acceptance: ${name}`, () => {
    let signer: Signer
    const log = jobLogId('acc')
    let a: LogEntry
    let b: LogEntry
    let c: LogEntry
    beforeAll(async () => {
      signer = await newSigner()
      a = await createEntry(signer, {
        log,
        kind: 'announce',
        body: 1,
        clock: 1,
        next: [],
        wall: 0,
        tok: '',
      })
      b = await createEntry(signer, {
        log,
        kind: 'claim',
        body: 2,
        clock: 2,
        next: [a.id],
        wall: 0,
        tok: '',
      })
      c = await createEntry(signer, {
        log,
        kind: 'claim',
        body: 3,
        clock: 12,
        next: [b.id],
        wall: 0,
        tok: '',
      })
    })

    it('keeps exact bytes, indexes by log in clock order, and tracks heads', async () => {
      const { store, close } = await open()
      expect(await store.getEntry(a.id)).toBeUndefined()
      expect(await store.hasEntry(a.id)).toBe(false)
      await store.commit(log, { put: [c, a, b], heads: [c.id] })
      expect(Buffer.from((await store.getEntry(a.id))!).equals(a.bytes)).toBe(true)
      expect(await store.hasEntry(b.id)).toBe(true)
      expect(await store.listEntryIds(log)).toEqual([a.id, b.id, c.id])
      expect(await store.getHeads(log)).toEqual([c.id])
      expect(await store.listEntryIds(MESH_LOG)).toEqual([])
      expect(await store.getHeads(MESH_LOG)).toEqual([])
      await store.setHeads(MESH_LOG, [])
      expect(await store.listLogs()).toEqual([log, MESH_LOG].sort())
      await close?.()
    })

    it('deletes entries and records a seal atomically', async () => {
      const { store, close } = await open()
      await store.putEntry(a)
      await store.putEntry(b)
      await store.commit(log, { del: [a], heads: [b.id], seal: b.id })
      expect(await store.hasEntry(a.id)).toBe(false)
      expect(await store.listEntryIds(log)).toEqual([b.id])
      expect(await store.getSeal(log)).toBe(b.id)
      expect(await store.getSeal(MESH_LOG)).toBeUndefined()
      await store.deleteEntry(b)
      expect(await store.listEntryIds(log)).toEqual([])
      expect(await store.getEntry(b.id as EntryId)).toBeUndefined()
      await close?.()
    })
  })
}
