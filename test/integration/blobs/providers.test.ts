import { afterEach, describe, expect, it } from 'vitest'
import { createProviderIndex, encodeHave, HAVE_TOPIC } from '../../../src/blobs/providers.js'
import { cidOf } from '../../../src/util/hash.js'
import { silentLogger } from '../../../src/util/logger.js'
import { Cluster, patternBytes } from './helpers.js'

describe('provider index', () => {
  const cluster = new Cluster()
  afterEach(() => cluster.close())

  it('learns holders from gossip, ignores garbage, asks the DHT only when no holder is known, and bounds it', async () => {
    const a = await cluster.node()
    const b = await cluster.node()
    const { manifest } = await a.store.importBytes('scene.blend', patternBytes(10_000))
    const ia = createProviderIndex(
      { libp2p: a.host, logger: silentLogger, store: a.store },
      { announceIntervalMs: 0 },
    )
    const ib = createProviderIndex(
      { libp2p: b.host, logger: silentLogger },
      { announceIntervalMs: 0 },
    )
    await ia.start()
    await ib.start()
    try {
      // Garbage on the topic costs nothing.
      await a.host.services.pubsub.publish(HAVE_TOPIC, new Uint8Array([0xff, 1, 2]))
      // gossipsub grafts on its heartbeat: announce until it lands (the daemon re-announces).
      for (let i = 0; i < 50 && ib.providersOf(manifest).length === 0; i++) {
        await ia.announce([manifest])
        await new Promise((r) => setTimeout(r, 100))
      }
      expect(ib.providersOf(manifest)).toEqual([a.id])
      expect(ib.providersOf(cidOf(new Uint8Array([1])))).toEqual([])
      const found = await ib.findProviders(manifest, { timeoutMs: 1_000 })
      expect(found).toContain(a.id)
      // The found holder serves the file.
      await b.exchange.fetchManifest(manifest, { providers: found })
      expect(await b.store.missingBlocks(manifest)).toEqual([])
      expect(encodeHave([manifest]).byteLength).toBeLessThan(100)
      // Holders the caller knows (from the job log) come first, and spare the DHT walk.
      const unknown = cidOf(new Uint8Array([2]))
      let t0 = Date.now()
      expect(await ib.findProviders(unknown, { known: [a.id, b.id], timeoutMs: 1_000 })).toEqual([
        a.id,
      ])
      // Far below the 1 s walk timeout, with room for a loaded CI machine.
      expect(Date.now() - t0).toBeLessThan(500)
      // With none known the DHT is asked, within its timeout.
      t0 = Date.now()
      expect(await ib.findProviders(unknown, { timeoutMs: 500 })).toEqual([])
      expect(Date.now() - t0).toBeLessThan(2_000)
    } finally {
      await ia.stop()
      await ib.stop()
    }
  })
})

describe('provider index and the DHT', () => {
  const cluster = new Cluster()
  afterEach(() => cluster.close())

  it('withdraws what it provided once the store no longer holds it', async () => {
    const a = await cluster.node()
    await cluster.node()
    const { manifest } = await a.store.importBytes('scene.blend', patternBytes(10_000))
    const withdrawn: string[] = []
    const routing = a.host.contentRouting
    const cancel = routing.cancelReprovide.bind(routing)
    routing.cancelReprovide = async (cid, o) => {
      withdrawn.push(cid.toString())
      await cancel(cid, o)
    }
    const ia = createProviderIndex(
      { libp2p: a.host, logger: silentLogger, store: a.store },
      { announceIntervalMs: 100 },
    )
    await ia.start()
    try {
      await ia.announce([manifest])
      await new Promise((r) => setTimeout(r, 400))
      expect(withdrawn).toEqual([])
      const gc = await a.store.gc({ graceMs: 0 })
      expect(gc.manifestsRemoved).toBe(1)
      for (let i = 0; i < 50 && withdrawn.length === 0; i++)
        await new Promise((r) => setTimeout(r, 100))
      expect(withdrawn).toEqual([manifest])
    } finally {
      await ia.stop()
    }
  })

  it('on start provides what providedOnStart names (scenes), not every output held', async () => {
    const a = await cluster.node()
    await cluster.node()
    const scene = (await a.store.importBytes('scene.blend', patternBytes(10_000))).manifest
    const output = (await a.store.importBytes('0001.png', patternBytes(9_000))).manifest
    await a.store.pin('job-scene/j1', scene)
    await a.store.pin('job-outputs/j1', output)
    const provided: string[] = []
    const routing = a.host.contentRouting
    routing.provide = async (cid) => {
      provided.push(cid.toString())
    }
    const ia = createProviderIndex(
      {
        libp2p: a.host,
        logger: silentLogger,
        store: a.store,
        providedOnStart: () => a.store.pinnedByOwners('job-scene/'),
      },
      { announceIntervalMs: 0 },
    )
    await ia.start()
    try {
      for (let i = 0; i < 50 && provided.length === 0; i++)
        await new Promise((r) => setTimeout(r, 50))
      await new Promise((r) => setTimeout(r, 200))
      expect(provided).toEqual([scene])
    } finally {
      await ia.stop()
    }
  })
})

describe('provider index: what gossip repeats', () => {
  const cluster = new Cluster()
  afterEach(() => cluster.close())

  it('re-announces what announcedPeriodically names (scenes, their files), not every output held', async () => {
    const a = await cluster.node()
    const b = await cluster.node()
    const scene = (await a.store.importBytes('scene.blend', patternBytes(10_000))).manifest
    const texture = (await a.store.importBytes('wood.png', patternBytes(8_000))).manifest
    const output = (await a.store.importBytes('0001.png', patternBytes(9_000))).manifest
    await a.store.pin('job-scene/j1', scene)
    await a.store.pin('job-files/j1', texture)
    await a.store.pin('job-outputs/j1', output)
    const ia = createProviderIndex(
      {
        libp2p: a.host,
        logger: silentLogger,
        store: a.store,
        announcedPeriodically: async () => [
          ...(await a.store.pinnedByOwners('job-scene/')),
          ...(await a.store.pinnedByOwners('job-files/')),
        ],
      },
      { announceIntervalMs: 100, dht: false },
    )
    const ib = createProviderIndex(
      { libp2p: b.host, logger: silentLogger },
      { announceIntervalMs: 0, dht: false },
    )
    await ia.start()
    await ib.start()
    try {
      // gossipsub grafts on its heartbeat; the 100-ms rounds land once it has.
      for (let i = 0; i < 100 && ib.providersOf(texture).length === 0; i++)
        await new Promise((r) => setTimeout(r, 100))
      expect(ib.providersOf(scene)).toEqual([a.id])
      expect(ib.providersOf(texture)).toEqual([a.id])
      // A few more rounds: the output is never among them.
      await new Promise((r) => setTimeout(r, 400))
      expect(ib.providersOf(output)).toEqual([])
    } finally {
      await ia.stop()
      await ib.stop()
    }
  })
})
