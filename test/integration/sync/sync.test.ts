import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { Level } from 'level'
import { afterEach, describe, expect, it } from 'vitest'
import { loadOrCreateNodeKey, signerFor } from '../../../src/auth/identity.js'
import { createLogManager, type LogManager } from '../../../src/log/log.js'
import { createLevelLogStore } from '../../../src/log/store.js'
import { jobLogId, MESH_LOG } from '../../../src/log/types.js'
import { createHost, type RmeshLibp2p } from '../../../src/net/host.js'
import { createLogSync, type LogSync } from '../../../src/sync/sync.js'
import { systemClock } from '../../../src/util/clock.js'
import { silentLogger } from '../../../src/util/logger.js'

interface Daemon {
  dir: string
  key: PrivateKey
  db: Level<string, string>
  host: RmeshLibp2p
  log: LogManager
  sync: LogSync
}

const dirs: string[] = []
const running = new Set<Daemon>()

async function startDaemon(
  dir: string,
  opts: { isAdmitted?: (p: string) => boolean } = {},
): Promise<Daemon> {
  const key = await loadOrCreateNodeKey(dir)
  const db = new Level<string, string>(join(dir, 'db'))
  await db.open()
  const host = await createHost({ privateKey: key, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
  const log = createLogManager({
    store: createLevelLogStore(db),
    signer: signerFor(key),
    clock: systemClock,
    logger: silentLogger,
    tokenId: () => '',
  })
  const sync = createLogSync(
    { libp2p: host, log, logger: silentLogger, clock: systemClock, isAdmitted: opts.isAdmitted },
    { intervalMs: 500 },
  )
  await sync.start()
  const d = { dir, key, db, host, log, sync }
  running.add(d)
  return d
}

async function stopDaemon(d: Daemon): Promise<void> {
  running.delete(d)
  await d.sync.stop()
  await d.host.stop()
  await d.db.close()
}

async function connect(a: Daemon, b: Daemon): Promise<void> {
  await a.host.dial(multiaddr(b.host.getMultiaddrs()[0].toString()))
}

async function until(cond: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 50))
  }
}

async function sameHeads(ds: Daemon[], logs: string[]): Promise<boolean> {
  for (const l of logs) {
    const hs = await Promise.all(
      ds.map(async (d) => JSON.stringify((await d.log.heads(l as never)).sort())),
    )
    if (new Set(hs).size !== 1 || hs[0] === '[]') return false
  }
  return true
}

afterEach(async () => {
  await Promise.all([...running].map(stopDaemon))
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'rmesh-sync-'))
  dirs.push(d)
  return d
}

describe('log sync over real libp2p and LevelDB', () => {
  it('a restarted daemon catches up on 1,000 entries to identical heads', async () => {
    const [a, b, c] = await Promise.all([0, 1, 2].map(async () => startDaemon(await tempDir())))
    await connect(a, b)
    await connect(b, c)
    await connect(a, c)
    const job = jobLogId('big')
    const first = await a.log.append(job, 'announce', { frames: 1000 })
    await until(() => sameHeads([a, b, c], [job]), 20_000)
    expect(await c.log.has(first.id)).toBe(true)

    const cDir = c.dir
    const cPeer = c.host.peerId.toString()
    await stopDaemon(c)
    for (let i = 0; i < 500; i++) {
      await a.log.append(job, 'claim', { i })
      await b.log.append(job, 'claim', { i })
    }
    await b.log.append(MESH_LOG, 'revoke', { who: 'nobody' })
    await until(() => sameHeads([a, b], [job, MESH_LOG]), 30_000)

    const c2 = await startDaemon(cDir)
    expect(c2.host.peerId.toString()).toBe(cPeer)
    expect(await c2.log.has(first.id)).toBe(true)
    await connect(c2, a)
    await connect(c2, b)
    await until(() => sameHeads([a, b, c2], [job, MESH_LOG]), 30_000)
    expect((await c2.log.entries(job)).length).toBe(1001)
    expect((await c2.log.entries(job)).map((e) => e.id)).toEqual(
      (await a.log.entries(job)).map((e) => e.id),
    )
  }, 90_000)

  it('a node away with entries of its own catches up by ranges to identical logs', async () => {
    const [a, b] = await Promise.all([0, 1].map(async () => startDaemon(await tempDir())))
    await connect(a, b)
    const job = jobLogId('away')
    for (let i = 0; i < 300; i++) await a.log.append(job, 'claim', { i })
    await until(() => sameHeads([a, b], [job]), 20_000)
    const bDir = b.dir
    await stopDaemon(b)
    for (let i = 0; i < 200; i++) await a.log.append(job, 'claim', { later: i })
    const b2 = await startDaemon(bDir)
    // Written while away: b2's heads are unknown to a, so a answers with its summary.
    for (let i = 0; i < 5; i++) await b2.log.append(job, 'claim', { own: i })
    // Only the address: the session below dials, and is the one that runs first.
    await b2.host.peerStore.merge(a.host.peerId, { multiaddrs: a.host.getMultiaddrs() })
    const r = await b2.sync.syncWith(a.host.peerId)
    expect(r.entries).toBe(200) // exactly the entries b2 lacked, not the 500 of the log
    expect(r.received).toBe(200)
    await connect(b2, a)
    await until(() => sameHeads([a, b2], [job]), 20_000)
    expect((await b2.log.entries(job)).map((e) => e.id)).toEqual(
      (await a.log.entries(job)).map((e) => e.id),
    )
  }, 60_000)

  it('serves only admitted peers and rejects their gossip', async () => {
    const a = await startDaemon(await tempDir())
    const outsider = await startDaemon(await tempDir())
    // restart `a` with an admission list that excludes the outsider
    await stopDaemon(a)
    const a2 = await startDaemon(a.dir, {
      isAdmitted: (p) => p !== outsider.host.peerId.toString(),
    })
    await a2.log.append(jobLogId('secret'), 'announce', {})
    await connect(outsider, a2)
    await expect(
      outsider.sync.syncWith(a2.host.peerId, { signal: AbortSignal.timeout(5_000) }),
    ).rejects.toBeDefined()
    const e = await outsider.log.append(jobLogId('x'), 'announce', {})
    for (let i = 0; i < 10; i++) {
      outsider.sync.publish(e)
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(await a2.log.has(e.id)).toBe(false)
    expect(await outsider.log.logs()).toEqual([jobLogId('x')])
  }, 20_000)

  it("names the publisher of each log gossip message (its pulse), and tells when this node's last left", async () => {
    const a = await startDaemon(await tempDir())
    const b = await startDaemon(await tempDir())
    const aId = a.host.peerId.toString()
    const heardAt = new Map<string, number>()
    b.sync.onPublisherHeard((p) => heardAt.set(p, systemClock.monotonic()))
    expect(a.sync.lastPublishedAt()).toBe(Number.NEGATIVE_INFINITY)
    await connect(a, b)
    // Gossip needs b's subscription at a first; keep appending until one message arrives.
    const before = systemClock.monotonic()
    await until(async () => {
      await a.log.append(jobLogId('pulse'), 'announce', {})
      await new Promise((r) => setTimeout(r, 100))
      return heardAt.has(aId)
    }, 10_000)
    expect(a.sync.lastPublishedAt()).toBeGreaterThanOrEqual(before)
    expect(heardAt.get(aId)).toBeGreaterThanOrEqual(before)
    // Only publishers are named: b never heard itself, nor a stranger.
    expect([...heardAt.keys()]).toEqual([aId])
  }, 20_000)
})

describe('log sync boundaries', () => {
  it('survives garbage on the sync protocol and on the gossip topic', async () => {
    const { lpStream } = await import('@libp2p/utils')
    const { SYNC_PROTOCOL, LOG_TOPIC } = await import('../../../src/sync/messages.js')
    const a = await startDaemon(await tempDir())
    const b = await startDaemon(await tempDir())
    await connect(b, a)
    for (const junk of [new Uint8Array([0xff, 0x00, 0x13]), new Uint8Array(300).fill(7)]) {
      const stream = await b.host.dialProtocol(a.host.peerId, SYNC_PROTOCOL)
      const lp = lpStream(stream)
      await lp.write(junk)
      await expect(lp.read({ signal: AbortSignal.timeout(5_000) })).rejects.toBeDefined()
    }
    // Malformed summaries and ranges: the session ends with an error, nothing is lost.
    const { cidOf } = await import('../../../src/util/hash.js')
    const { encode } = await import('../../../src/util/cbor.js')
    const { encodeFrame, decodeFrame } = await import('../../../src/sync/messages.js')
    const job = jobLogId('held')
    for (let i = 0; i < 20; i++) await a.log.append(job, 'claim', { i })
    const held = (await a.log.entries(job)).map((e) => e.id)
    const unknownHead = cidOf(new Uint8Array([42]))
    const author = a.host.peerId.toString()
    const badRanges = [
      encode(['ranges', jobLogId('not-summarized'), []]),
      encode(['ranges', job, [[author, 1, 1, new Uint8Array(3)]]]),
      encode(['ranges', job, [[author, -5, 1, new Uint8Array(16)]]]),
      encode(['ranges', job, 'x']),
      encode(['summary', job, null, []]),
      new Uint8Array([0xff, 0xfe]),
    ]
    for (const junk of badRanges) {
      const stream = await b.host.dialProtocol(a.host.peerId, SYNC_PROTOCOL)
      const lp = lpStream(stream)
      const signal = AbortSignal.timeout(5_000)
      await lp.write(encodeFrame({ t: 'heads', logs: [[job, [unknownHead as never]]] }), { signal })
      await lp.write(encodeFrame({ t: 'end' }), { signal })
      let summaries = 0
      for (;;) {
        const f = decodeFrame((await lp.read({ signal })).subarray())
        if (f.t === 'end') break
        if (f.t === 'summary') summaries++
        await lp.write(encodeFrame({ t: 'ack' }), { signal })
      }
      expect(summaries).toBe(1)
      await lp.write(junk, { signal })
      await lp.write(encodeFrame({ t: 'end' }), { signal })
      await expect(lp.read({ signal })).rejects.toBeDefined()
    }
    // A well-formed but lying request (a prefix it does not hold) costs one log's entries.
    {
      const stream = await b.host.dialProtocol(a.host.peerId, SYNC_PROTOCOL)
      const lp = lpStream(stream)
      const signal = AbortSignal.timeout(5_000)
      await lp.write(encodeFrame({ t: 'heads', logs: [[job, [unknownHead as never]]] }), { signal })
      await lp.write(encodeFrame({ t: 'end' }), { signal })
      for (;;) {
        const f = decodeFrame((await lp.read({ signal })).subarray())
        if (f.t === 'end') break
        await lp.write(encodeFrame({ t: 'ack' }), { signal })
      }
      const lie = { author: author as never, max: 10, count: 99, fp: new Uint8Array(16) }
      await lp.write(encodeFrame({ t: 'ranges', log: job, ranges: [lie, lie] }), { signal })
      await lp.write(encodeFrame({ t: 'end' }), { signal })
      let got = 0
      for (;;) {
        const f = decodeFrame((await lp.read({ signal })).subarray())
        if (f.t === 'end') break
        if (f.t === 'entries') got += f.entries.length
        await lp.write(encodeFrame({ t: 'ack' }), { signal })
      }
      expect(got).toBe(20)
      await stream.close()
    }
    expect((await a.log.entries(job)).map((e) => e.id)).toEqual(held)
    // Raw garbage published on the topic: the validator refuses it, nothing crashes.
    for (let i = 0; i < 5; i++) {
      await b.host.services.pubsub
        .publish(LOG_TOPIC, new Uint8Array([1, 2, 3, i]))
        .catch(() => undefined)
    }
    await new Promise((r) => setTimeout(r, 300))
    const e = await b.log.append(jobLogId('after'), 'announce', {})
    await until(async () => a.log.has(e.id), 10_000)
  }, 20_000)
})
