import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { createLevelLogStore, createMemoryLogStore } from '../../../src/log/store.js'
import { storeAcceptance } from './store-acceptance.js'

storeAcceptance('memory', async () => ({ store: createMemoryLogStore() }))

storeAcceptance('level', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rmesh-logstore-'))
  const db = new Level(dir)
  await db.open()
  return {
    store: createLevelLogStore(db),
    close: async () => {
      await db.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
})
