/**
 * The provider index's periodic rounds on a fake gossip bus and a fake clock: a manifest
 * many nodes hold is re-announced by a few of them per round (duplicate suppression), every
 * node still knows enough fresh holders, and the others speak up again when those go quiet.
 */
import { describe, expect, it } from 'vitest'
import type { BlockStore } from '../../../src/blobs/block-store.js'
import {
  createProviderIndex,
  ENOUGH_HOLDERS,
  manifestsToReannounce,
  type ProviderIndex,
} from '../../../src/blobs/providers.js'
import type { RmeshLibp2p } from '../../../src/net/host.js'
import { FakeClock } from '../../../src/util/clock.js'
import { cidOf } from '../../../src/util/hash.js'
import { silentLogger } from '../../../src/util/logger.js'

const SCENE = cidOf(new TextEncoder().encode('scene'))
const OTHER = cidOf(new TextEncoder().encode('other'))
const INTERVAL = 30_000

/** Gossip delivered to every other subscribed node at once, signed by its author. */
function createBus() {
  const nodes = new Map<string, Set<(evt: CustomEvent) => void>>()
  let published = 0
  const hostFor = (id: string): RmeshLibp2p => {
    const listeners = new Set<(evt: CustomEvent) => void>()
    nodes.set(id, listeners)
    const pubsub = {
      topicValidators: new Map(),
      subscribe() {},
      unsubscribe() {},
      addEventListener: (_: string, l: (evt: CustomEvent) => void) => listeners.add(l),
      removeEventListener: (_: string, l: (evt: CustomEvent) => void) => listeners.delete(l),
      async publish(topic: string, data: Uint8Array) {
        published++
        const detail = { topic, data, type: 'signed', from: { toString: () => id } }
        for (const [other, ls] of nodes)
          if (other !== id) for (const l of ls) l(new CustomEvent('message', { detail }))
      },
    }
    return { peerId: { toString: () => id }, services: { pubsub } } as unknown as RmeshLibp2p
  }
  return { hostFor, published: () => published }
}

function storeHolding(cids: string[]): BlockStore {
  return {
    listManifests: async () => [...cids],
    missingBlocks: async () => [],
  } as unknown as BlockStore
}

/** A seeded generator, so the rounds' jitter is the same on every run. */
function seeded(seed: number): () => number {
  let x = seed
  return () => {
    x = (x * 1_103_515_245 + 12_345) % 2 ** 31
    return x / 2 ** 31
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
}

describe('provider index rounds', () => {
  it('manifestsToReannounce leaves out what enough other holders said within the span', () => {
    const heard = new Map([
      [SCENE, new Map([...Array(ENOUGH_HOLDERS)].map((_, i) => [`p${i}`, 100 + i]))],
      [OTHER, new Map([...Array(ENOUGH_HOLDERS)].map((_, i) => [`p${i}`, i === 0 ? 50 : 100]))],
    ])
    const at = (cid: string) => heard.get(cid)
    expect(manifestsToReannounce([SCENE, OTHER], at, 100)).toEqual([OTHER])
    expect(manifestsToReannounce([SCENE, OTHER], at, 101)).toEqual([SCENE, OTHER])
    expect(manifestsToReannounce([SCENE, OTHER], at, 0)).toEqual([])
    expect(manifestsToReannounce(['unheard'], at, 0)).toEqual(['unheard'])
  })

  it('a manifest 20 nodes hold costs a few messages per round, and every node knows enough holders', async () => {
    const clock = new FakeClock(0)
    const bus = createBus()
    const random = seeded(7)
    const indices: ProviderIndex[] = []
    for (let i = 0; i < 20; i++) {
      const index = createProviderIndex(
        {
          libp2p: bus.hostFor(`node${i}`),
          logger: silentLogger,
          store: storeHolding([SCENE]),
          clock,
          random,
        },
        { announceIntervalMs: INTERVAL, dht: false },
      )
      await index.start()
      indices.push(index)
    }
    const roundsAt = async (rounds: number) => {
      const before = bus.published()
      for (let step = 0; step < (rounds * INTERVAL) / 500; step++) {
        clock.advance(500)
        await settle()
      }
      return bus.published() - before
    }
    // The first rounds: everyone still unheard speaks, then suppression sets in.
    await roundsAt(3)
    const steady = await roundsAt(10)
    // Without suppression: 20 per round. With it: about ENOUGH_HOLDERS, a few more when
    // rounds of several nodes fall close together.
    expect(steady / 10).toBeLessThanOrEqual(ENOUGH_HOLDERS + 3)
    expect(steady / 10).toBeGreaterThanOrEqual(ENOUGH_HOLDERS - 1)
    for (const index of indices)
      expect(index.providersOf(SCENE).length).toBeGreaterThanOrEqual(ENOUGH_HOLDERS - 1)

    // All but three go away: the three left repeat themselves every round again.
    for (const index of indices.splice(3)) await index.stop()
    await roundsAt(6)
    const few = await roundsAt(5)
    expect(few).toBeGreaterThanOrEqual(3 * 5 - 1)
    for (const index of indices) {
      expect(index.providersOf(SCENE).sort()).toEqual(
        ['node0', 'node1', 'node2'].filter((n) => index !== indices[Number(n.slice(4))]),
      )
      await index.stop()
    }
  })
})
