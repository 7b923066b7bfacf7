/**
 * When a busy node's heartbeats go out as its pace changes, on a fake clock and a fake
 * gossip topic: a longer pace is said in a heartbeat that still comes at the shorter one,
 * a shorter pace brings the next heartbeat sooner, and neither costs a heartbeat of its own.
 */
import { describe, expect, it } from 'vitest'
import type { RmeshLibp2p } from '../../../src/net/host.js'
import {
  busyPaceMs,
  createPresence,
  FAR_PACE_CAP,
  type Presence,
} from '../../../src/net/presence.js'
import { decodeBounded } from '../../../src/util/cbor.js'
import { FakeClock } from '../../../src/util/clock.js'
import { silentLogger } from '../../../src/util/logger.js'
import { idleSelf } from '../../helpers/presence-self.js'

function fakeHost(sent: { at: number; every: number }[], clock: FakeClock): RmeshLibp2p {
  const pubsub = {
    topicValidators: new Map(),
    subscribe() {},
    unsubscribe() {},
    addEventListener() {},
    removeEventListener() {},
    async publish(_topic: string, data: Uint8Array) {
      const p = decodeBounded(data, 16 * 1024) as Presence
      sent.push({ at: clock.monotonic(), every: p.every ?? 0 })
    },
  }
  return {
    peerId: { toString: () => '12D3KooWSelf' },
    getMultiaddrs: () => [],
    getConnections: () => [],
    addEventListener() {},
    removeEventListener() {},
    handle: async () => {},
    unhandle: async () => {},
    services: { pubsub },
  } as unknown as RmeshLibp2p
}

describe('presence pace changes', () => {
  it('busyPaceMs rounds to the tick and caps at the rest interval, twice it far from the end', () => {
    expect(busyPaceMs(undefined, 2_000, 10_000)).toBe(2_000)
    expect(busyPaceMs({ ms: 5_000, farFromEnd: false }, 2_000, 10_000)).toBe(6_000)
    expect(busyPaceMs({ ms: 500, farFromEnd: true }, 2_000, 10_000)).toBe(2_000)
    expect(busyPaceMs({ ms: 15_000, farFromEnd: false }, 2_000, 10_000)).toBe(10_000)
    expect(busyPaceMs({ ms: 15_000, farFromEnd: true }, 2_000, 10_000)).toBe(16_000)
    expect(busyPaceMs({ ms: 90_000, farFromEnd: true }, 2_000, 10_000)).toBe(FAR_PACE_CAP * 10_000)
    expect(busyPaceMs({ ms: Number.NaN, farFromEnd: true }, 2_000, 10_000)).toBe(2_000)
  })

  it('a longer pace goes out at the shorter one, a shorter one needs no heartbeat of its own', async () => {
    const clock = new FakeClock(0)
    const sent: { at: number; every: number }[] = []
    let wanted = 6_000
    const presence = createPresence(
      {
        libp2p: fakeHost(sent, clock),
        clock,
        logger: silentLogger,
        self: () => ({ ...idleSelf(), leases: [{ job: 'j', chunk: 0, attempt: 1 }] }),
        busyPace: () => ({ ms: wanted, farFromEnd: false }),
      },
      { intervalMs: 2_000, restIntervalMs: 10_000 },
    )
    await presence.start()
    // The fast rest interval after start (a forming mesh), then the leases' 6-s pace.
    clock.advance(30_000)
    const paced = sent.filter((s) => s.at > 12_000)
    expect(paced.map((s) => s.every)).toEqual(paced.map(() => 6_000))
    for (let i = 1; i < paced.length; i++) expect(paced[i].at - paced[i - 1].at).toBe(6_000)
    const last = sent[sent.length - 1].at

    // Longer: the next heartbeat still comes 6 s after the last, and says 10 s.
    wanted = 10_000
    sent.length = 0
    clock.advanceTo(last + 6_000)
    expect(sent).toEqual([{ at: last + 6_000, every: 10_000 }])
    clock.advanceTo(last + 16_000)
    expect(sent.map((s) => s.at)).toEqual([last + 6_000, last + 16_000])

    // Shorter: nothing at once; the next one 2 s after the last (the new pace) says 2 s.
    wanted = 2_000
    sent.length = 0
    clock.advanceTo(last + 17_000)
    expect(sent).toEqual([])
    clock.advanceTo(last + 18_000)
    expect(sent).toEqual([{ at: last + 18_000, every: 2_000 }])
    await presence.stop()
  })
})
