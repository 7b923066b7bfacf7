import type { Connection } from '@libp2p/interface'
import { describe, expect, it } from 'vitest'
import { createLinkMonitor } from '../../../src/net/link-monitor.js'
import { FakeClock } from '../../../src/util/clock.js'
import { silentLogger } from '../../../src/util/logger.js'

/** A connection as the monitor sees it; `dead` ones never answer a probe. */
function conn(id: string, peer: string, openedAt: number, dead = false) {
  const c = {
    id,
    status: 'open',
    dead,
    remotePeer: {
      toString: () => peer,
      equals: (o: { toString(): string }) => o.toString() === peer,
    },
    remoteAddr: { toString: () => `/ip4/10.0.0.1/tcp/4777/p2p/${peer}` },
    timeline: { open: openedAt },
    abort() {
      c.status = 'closed'
    },
  }
  return c
}
type FakeConn = ReturnType<typeof conn>

function setup(conns: FakeConn[], addrs: { now: string[] }) {
  const clock = new FakeClock()
  const listeners: ((e: CustomEvent<Connection>) => void)[] = []
  const changed: string[][] = []
  const monitor = createLinkMonitor(
    {
      libp2p: {
        getConnections: () => conns.filter((c) => c.status === 'open') as unknown as Connection[],
        addEventListener: (_t, fn) => listeners.push(fn),
        removeEventListener: (_t, fn) => listeners.splice(listeners.indexOf(fn), 1),
      },
      clock,
      logger: silentLogger,
      addresses: () => addrs.now,
      // A dead link never answers: the probe's deadline ends it.
      probe: (c, signal) =>
        (c as unknown as FakeConn).dead
          ? new Promise((_, reject) =>
              signal.addEventListener('abort', () => reject(signal.reason)),
            )
          : Promise.resolve(),
    },
    { pollMs: 1_000, probeTimeoutMs: 20, onAddressesChanged: (a) => changed.push(a) },
  )
  const open = (c: FakeConn) => {
    conns.push(c)
    for (const fn of listeners)
      fn(new CustomEvent('connection:open', { detail: c as unknown as Connection }))
  }
  return { clock, monitor, changed, open, listeners }
}

const settle = () => new Promise((r) => setTimeout(r, 60))

describe('link monitor: dead links after a move are found in seconds', () => {
  it('an address change probes every connection and closes only those that do not answer', async () => {
    const addrs = { now: ['10.1.0.12'] }
    const conns = [conn('a', 'P1', 1, true), conn('b', 'P2', 1, false)]
    const { clock, monitor, changed } = setup(conns, addrs)
    monitor.start()
    clock.advanceTo(5_000)
    await settle()
    expect(monitor.stats()).toEqual({ addressChanges: 0, probes: 0, closed: 0 })
    addrs.now = ['10.2.0.51']
    clock.advanceTo(6_000)
    await settle()
    expect(changed).toEqual([['10.2.0.51']])
    expect(conns.map((c) => c.status)).toEqual(['closed', 'open'])
    expect(monitor.stats()).toEqual({ addressChanges: 1, probes: 2, closed: 1 })
    monitor.stop()
  })

  it('a new connection from a peer probes its older ones, never a working one', async () => {
    const conns = [conn('old', 'P1', 1, true), conn('other', 'P2', 1, true)]
    const { monitor, open } = setup(conns, { now: ['10.0.0.2'] })
    monitor.start()
    open(conn('new', 'P1', 2))
    await settle()
    expect(conns.map((c) => `${c.id}:${c.status}`)).toEqual([
      'old:closed',
      'other:open',
      'new:open',
    ])
    // A second connection to a peer whose first one answers leaves both.
    const alive = [conn('x', 'P3', 1, false)]
    const s2 = setup(alive, { now: [] })
    s2.monitor.start()
    s2.open(conn('y', 'P3', 2))
    await settle()
    expect(alive.map((c) => c.status)).toEqual(['open', 'open'])
    monitor.stop()
    s2.monitor.stop()
    expect(s2.listeners).toHaveLength(0)
  })
})
