/**
 * Presence on real libp2p hosts: peer exchange (a mesh member heard through a neighbour is
 * introduced, anyone else is dropped), the silent-link report (not after a stall of its
 * own), and the dialer's reconnect.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { afterEach, describe, expect, it } from 'vitest'
import { createDialer } from '../../../src/net/dialer.js'
import { createHost, type RmeshLibp2p } from '../../../src/net/host.js'
import type { PeerBook } from '../../../src/net/peerbook.js'
import {
  createPresence,
  type PresenceComponents,
  type PresenceService,
} from '../../../src/net/presence.js'
import { type Clock, systemClock } from '../../../src/util/clock.js'
import { silentLogger } from '../../../src/util/logger.js'
import { idleSelf } from '../../helpers/presence-self.js'

const self = idleSelf

const connectedTo = (host: RmeshLibp2p) => (peerId: string) =>
  host.getConnections().some((c) => c.remotePeer.toString() === peerId && c.status === 'open')

const until = async (what: string, ok: () => boolean, timeoutMs = 10_000) => {
  const end = Date.now() + timeoutMs
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

describe('presence on libp2p', () => {
  const hosts: RmeshLibp2p[] = []
  const services: PresenceService[] = []
  afterEach(async () => {
    await Promise.all(services.splice(0).map((s) => s.stop()))
    await Promise.all(hosts.splice(0).map((h) => h.stop()))
  })

  const host = async () => {
    const h = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      mdns: false,
    })
    hosts.push(h)
    return h
  }
  const connect = (a: RmeshLibp2p, b: RmeshLibp2p) => a.dial(multiaddr(b.getMultiaddrs()[0]))
  const presence = async (
    h: RmeshLibp2p,
    extra: Partial<PresenceComponents> = {},
    options: { silentAfterMs?: number; restIntervalMs?: number } = {},
  ) => {
    const p = createPresence(
      {
        libp2p: h,
        clock: systemClock,
        logger: silentLogger,
        self,
        isAdmitted: connectedTo(h),
        ...extra,
      },
      { intervalMs: 100, restIntervalMs: 100, ...options },
    )
    await p.start()
    services.push(p)
    return p
  }

  it('introduces a mesh member heard through a neighbour, and only a member', async () => {
    const [hub, b, c] = [await host(), await host(), await host()]
    await connect(b, hub)
    await connect(c, hub)
    const cId = c.peerId.toString()
    const bId = b.peerId.toString()
    await presence(hub)
    const pb = await presence(b, { isMember: (p) => p === cId })
    // c knows no members: b's heartbeats reach it through the hub and are dropped.
    const pc = await presence(c)
    const introducedToB: { id: string; addrs: string[] }[] = []
    const introducedToC: string[] = []
    pb.onIntroduced((id, addrs) => introducedToB.push({ id, addrs }))
    pc.onIntroduced((id) => introducedToC.push(id))

    await until('b to be introduced to c', () => introducedToB.length > 0)
    expect(introducedToB[0].id).toBe(cId)
    expect(introducedToB[0].addrs).toEqual(c.getMultiaddrs().map((a) => a.toString()))
    // Introduced is not heard: no liveness, no leases from a peer not admitted.
    expect(pb.peers().has(cId)).toBe(false)
    await until('c to drop b’s heartbeat', () => pc.stats().rejected > 0)
    expect(introducedToC).toEqual([])
    expect(pc.peers().has(bId)).toBe(false)
    expect(pb.stats().introduced).toBeGreaterThan(0)
  })

  it('at rest a node speaks five times less often, and its peers wait for it accordingly', async () => {
    const [a, b] = [await host(), await host()]
    await connect(a, b)
    const aId = a.peerId.toString()
    let leases: ReturnType<PresenceComponents['self']>['leases'] = []
    const pa = await presence(a, { self: () => ({ ...self(), leases }) }, { restIntervalMs: 500 })
    const pb = await presence(b)
    const heard: number[] = []
    pb.onPresence((p) => p.peerId === aId && heard.push(p.every ?? 0))
    const gone: string[] = []
    pb.onGone((id) => gone.push(id))
    await until('b to hear a', () => pb.peers().get(aId)?.state === 'up')
    // Fast for a rest interval after it started or connected (a forming mesh meets so).
    expect(heard).toContain(100)
    await new Promise((r) => setTimeout(r, 600))
    // At rest: about one heartbeat per 500 ms, and not gone after 3 × b's own 100 ms.
    heard.length = 0
    await new Promise((r) => setTimeout(r, 2_000))
    expect(heard.length).toBeGreaterThanOrEqual(2)
    expect(heard.length).toBeLessThanOrEqual(6)
    expect(heard.every((e) => e === 500)).toBe(true)
    expect(gone).toEqual([])
    // Holding a lease: the lease heartbeat every 100 ms.
    leases = [{ job: 'j', chunk: 1, attempt: 1 }]
    await until('a busy heartbeat', () => heard.includes(100))
    heard.length = 0
    await new Promise((r) => setTimeout(r, 1_000))
    expect(heard.length).toBeGreaterThanOrEqual(6)
    // A busy node that stops is gone after 3 of its busy intervals, well before 3 rest ones.
    const stoppedAt = performance.now()
    await pa.stop()
    services.splice(services.indexOf(pa), 1)
    await until('a gone', () => gone.length > 0, 5_000)
    expect(performance.now() - stoppedAt).toBeLessThan(1_200)
  })

  it('a busy node beats at the pace its leases ask for, within [interval, rest], and peers stretch its spans', async () => {
    const [a, b] = [await host(), await host()]
    await connect(a, b)
    const aId = a.peerId.toString()
    let wanted: number | undefined = 330
    const pa = await presence(
      a,
      {
        self: () => ({ ...self(), leases: [{ job: 'j', chunk: 1, attempt: 1 }] }),
        busyPace: () => (wanted === undefined ? undefined : { ms: wanted, farFromEnd: false }),
      },
      { restIntervalMs: 500 },
    )
    const pb = await presence(b)
    const heard: number[] = []
    pb.onPresence((p) => p.peerId === aId && heard.push(p.every ?? 0))
    const gone: string[] = []
    pb.onGone((id) => gone.push(id))
    await until('b to hear a', () => pb.peers().get(aId)?.state === 'up')
    // Fast while the mesh forms (a rest interval after connecting), then the leases' pace,
    // rounded to b's… to a's own interval: 330 → 300 ms.
    await until('the paced heartbeat', () => heard.includes(300), 3_000)
    expect(pb.paceOf(aId)).toBe(3)
    heard.length = 0
    await new Promise((r) => setTimeout(r, 1_500))
    expect(heard.length).toBeGreaterThanOrEqual(3)
    expect(heard.length).toBeLessThanOrEqual(7)
    expect(heard.every((e) => e === 300)).toBe(true)
    expect(gone).toEqual([])
    // Never slower than the rest interval, never faster than the busy one.
    wanted = 60_000
    await until('the capped pace', () => heard.includes(500), 3_000)
    wanted = 10
    await until('the floor', () => heard.includes(100), 3_000)
    expect(pa.paceOf(aId)).toBe(1)
  })

  it('a busy node whose log gossip just left skips that heartbeat; its peers count the log message as heard', async () => {
    const [a, b] = [await host(), await host()]
    await connect(a, b)
    const aId = a.peerId.toString()
    let pulse = Number.NEGATIVE_INFINITY
    let busy = true
    await presence(
      a,
      {
        self: () => ({ ...self(), leases: busy ? [{ job: 'j', chunk: 1, attempt: 1 }] : [] }),
        busyPace: () => ({ ms: 300, farFromEnd: false }),
        lastPulseAt: () => pulse,
      },
      { restIntervalMs: 300 },
    )
    const pb = await presence(b)
    const heard: number[] = []
    pb.onPresence((p) => p.peerId === aId && heard.push(performance.now()))
    await until('b to hear a', () => pb.peers().get(aId)?.state === 'up')
    await until('the paced heartbeat', () => heard.length >= 3, 3_000)
    // Log messages leave more often than the pace: no heartbeat is due.
    const pulsing = setInterval(() => {
      pulse = systemClock.monotonic()
    }, 100)
    try {
      await new Promise((r) => setTimeout(r, 400))
      heard.length = 0
      await new Promise((r) => setTimeout(r, 1_500))
      expect(heard.length).toBe(0)
    } finally {
      clearInterval(pulsing)
    }
    // They stop: the heartbeat is back within a pace (300 ms) and a tick.
    await until('the heartbeat after the last log message', () => heard.length >= 1, 1_000)
    // At rest the heartbeat is how peers learn what a node can take: never skipped.
    busy = false
    await new Promise((r) => setTimeout(r, 400))
    heard.length = 0
    const pulsingAtRest = setInterval(() => {
      pulse = systemClock.monotonic()
    }, 100)
    try {
      await until('heartbeats at rest', () => heard.length >= 2, 2_000)
    } finally {
      clearInterval(pulsingAtRest)
    }
    // b's side: a log message of a's refreshes when a was last heard; a stranger's does nothing.
    const before = pb.lastHeard(aId) ?? 0
    await new Promise((r) => setTimeout(r, 20))
    pb.noteHeard(aId)
    expect(pb.lastHeard(aId)).toBeGreaterThan(before)
    pb.noteHeard('12D3KooWStranger')
    expect(pb.lastHeard('12D3KooWStranger')).toBeUndefined()
  })

  it('after a stall of its own (SIGSTOP, suspend) reports no peer gone or silent', async () => {
    const [a, b] = [await host(), await host()]
    await connect(a, b)
    const bId = b.peerId.toString()
    // A's clock jumps ahead between two of its ticks: to presence, the loop did not run.
    let jumpMs = 0
    const stalling: Clock = { ...systemClock, monotonic: () => performance.now() + jumpMs }
    const pa = await presence(a, { clock: stalling }, { silentAfterMs: 1_000 })
    await presence(b)
    const gone: string[] = []
    const silent: string[] = []
    pa.onGone((id) => gone.push(id))
    pa.onSilent((id) => silent.push(id))
    await until('a to hear b', () => pa.peers().get(bId)?.state === 'up')
    jumpMs = 20_000
    await new Promise((r) => setTimeout(r, 600))
    expect(gone).toEqual([])
    expect(silent).toEqual([])
    expect(pa.peers().get(bId)?.state).toBe('up')
  })

  it('reports a connected, admitted peer whose gossip is silent, and the dialer replaces the link', async () => {
    const [a, b] = [await host(), await host()]
    await connect(a, b)
    const bId = b.peerId.toString()
    const pa = await presence(a, {}, { silentAfterMs: 1_000 })
    const pb = await presence(b)
    const silent: string[] = []
    pa.onSilent((id) => silent.push(id))
    // b speaks: not silent.
    await until('a to hear b', () => pa.peers().get(bId)?.state === 'up')
    await new Promise((r) => setTimeout(r, 1_500))
    expect(silent).toEqual([])
    // b goes quiet on gossip while the connection stays up.
    await pb.stop()
    services.splice(services.indexOf(pb), 1)
    await until('a to report b silent', () => silent.length > 0)
    expect(silent[0]).toBe(bId)
    expect(pa.stats().silent).toBe(1)

    const peerBook: PeerBook = {
      remember: async () => undefined,
      forget: async () => undefined,
      all: async () => [],
    }
    const dialer = createDialer(
      { libp2p: a, peerBook, clock: systemClock, logger: silentLogger },
      { bootstrap: [] },
    )
    await dialer.start()
    try {
      // Garbage from an introduction or a report costs nothing: no throw, links unchanged.
      const openBefore = a.getConnections(b.peerId).length
      dialer.discovered('not-a-peer-id', ['garbage', '/ip4/1.2.3'])
      dialer.discovered(bId, ['garbage'])
      await expect(dialer.reconnect('not-a-peer-id')).resolves.toBeUndefined()
      expect(a.getConnections(b.peerId).length).toBe(openBefore)
      const before = a.getConnections(b.peerId).map((c) => c.id)
      await dialer.reconnect(bId)
      const after = a.getConnections(b.peerId).filter((c) => c.status === 'open')
      expect(after.length).toBe(1)
      expect(before).not.toContain(after[0].id)
    } finally {
      dialer.stop()
    }
  })
})
