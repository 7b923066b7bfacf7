/**
 * A hostile but admitted peer, for the fault tests: built from the daemon's own parts
 * (libp2p host, admission handshake with a valid token, the signed log and its sync,
 * presence), so every message it sends passes the checks a peer's must pass until it
 * chooses otherwise. Its attacks:
 *  - flood: bounded bursts of gossip (junk and valid-but-useless) on every rmesh topic;
 *  - garbage: malformed CBOR and oversized frames on every rmesh stream protocol;
 *  - forged: entries with parents that do not exist, bad signatures, another author;
 *  - claimAll: claim every open chunk of a job, never render, and keep heartbeating
 *    those leases in its presence;
 *  - bogusComplete: a complete entry for a chunk it holds, naming a manifest whose blocks
 *    nobody has; with `wrongBytes`, it then serves bytes that fail the hash check for
 *    every CID it is asked for on the blocks protocol;
 *  - hostileTree: announce a job whose file tree (protocols/file-tree.md) is any document
 *    it likes, and serve that document's manifest and block (valid bytes, hostile paths).
 * Invariants: it runs in the test process on 127.0.0.1 only; every attack is bounded in
 * count and time; stop() closes libp2p and LevelDB.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { Level } from 'level'
import { ADMIT_KIND, AUTH_PROTOCOL, createAdmission } from '../../src/auth/admission.js'
import { createAdmissionState, createConnectionGater } from '../../src/auth/gater.js'
import { loadOrCreateNodeKey, peerIdOf, signerFor } from '../../src/auth/identity.js'
import { INVITE_PROTOCOL } from '../../src/auth/invite.js'
import { loadMeshOwner } from '../../src/auth/mesh.js'
import { issueToken } from '../../src/auth/token.js'
import { createTokenStore } from '../../src/auth/token-store.js'
import { lpStream } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import {
  BLOCKS_PROTOCOL,
  decodeRequest,
  encodeResponseParts,
  HAVE_PROTOCOL,
  MAX_REQUEST_BYTES,
} from '../../src/blobs/wire.js'
import { HAVE_TOPIC } from '../../src/blobs/providers.js'
import { encodeManifest } from '../../src/blobs/manifest.js'
import { newJobId } from '../../src/jobs/entries.js'
import { capabilityFor } from '../../src/daemon.js'
import { createEntry } from '../../src/log/entry.js'
import { createLogManager, type LogManager } from '../../src/log/log.js'
import { createLevelLogStore } from '../../src/log/store.js'
import { type EntryId, jobLogId, type LogEntry, MESH_LOG } from '../../src/log/types.js'
import { createHost, type RmeshLibp2p } from '../../src/net/host.js'
import {
  createPresence,
  type LeaseRef,
  PRESENCE_PROTOCOL,
  PRESENCE_TOPIC,
  type PresenceService,
} from '../../src/net/presence.js'
import { encodeGossip, LOG_TOPIC, SYNC_PROTOCOL } from '../../src/sync/messages.js'
import { createLogSync, type LogSync } from '../../src/sync/sync.js'
import { encode } from '../../src/util/cbor.js'
import { systemClock } from '../../src/util/clock.js'
import { cidOf } from '../../src/util/hash.js'
import { createLogger } from '../../src/util/logger.js'
import { JobFold } from '../../src/jobs/reducer.js'
import { RMESH_VERSION } from '../../src/version.js'
import { makeTempDir } from './daemons.js'

// The handshake protocol last: garbage there rightly gets the peer cut off.
export const STREAM_PROTOCOLS = [
  SYNC_PROTOCOL,
  PRESENCE_PROTOCOL,
  BLOCKS_PROTOCOL,
  HAVE_PROTOCOL,
  INVITE_PROTOCOL,
  AUTH_PROTOCOL,
]
export const TOPICS = [LOG_TOPIC, PRESENCE_TOPIC, HAVE_TOPIC]

export interface HostilePeer {
  peerId: string
  dir: string
  libp2p: RmeshLibp2p
  log: LogManager
  waitConnected(peerIds: string[], timeoutMs?: number): Promise<void>
  /** Publish `count` gossip messages spread over the rmesh topics; returns how many went out. */
  flood(count: number): Promise<number>
  /** Malformed CBOR and oversized frames on every stream protocol of `peer`. */
  garbage(peer: string): Promise<{ protocol: string; sent: boolean; error?: string }[]>
  /** Entries that must be refused: unknown parents, bad signature, someone else as author. */
  forged(jobId: string, victimPeerId: string): Promise<number>
  /**
   * Sign an entry of the job's log on the current heads and publish it, skipping this peer's
   * own authorization (so an entry its token does not allow still goes out); its bytes.
   */
  publishEntry(jobId: string, kind: string, body: unknown): Promise<Uint8Array>
  /** Claim every open chunk of the job; heartbeat those leases while `holdMs` runs. */
  claimAll(jobId: string): Promise<LeaseRef[]>
  /** Complete a held chunk with a manifest nobody can serve (or, wrongBytes, that it serves garbage for). */
  bogusComplete(jobId: string, chunk: number, o?: { wrongBytes?: boolean }): Promise<void>
  /** Announce a test-engine job whose file tree document is `doc` (served by it); the job id. */
  hostileTree(doc: unknown): Promise<string>
  /** Requests it answered with wrong bytes. */
  wrongBytesServed(): number
  stop(): Promise<void>
}

function varint(n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return new Uint8Array(out)
}

const lp = (bytes: Uint8Array) => {
  const v = varint(bytes.length)
  const out = new Uint8Array(v.length + bytes.length)
  out.set(v)
  out.set(bytes, v.length)
  return out
}

/** Admit a fresh node key in `ownerDir`'s mesh and start the hostile peer on loopback. */
export async function startHostilePeer(o: {
  ownerDir: string
  bootstrap: string[]
  /** Its token's capabilities (default submit and render). */
  caps?: ('submit' | 'render' | 'admin')[]
}): Promise<HostilePeer> {
  const dir = await makeTempDir('rmesh-hostile-')
  const key = await loadOrCreateNodeKey(dir)
  const peerId = peerIdOf(key)
  const owner = await loadMeshOwner(o.ownerDir)
  const now = Math.floor(Date.now() / 1000)
  const token = await issueToken({
    issuer: owner.privateKey,
    ownerPublicKey: owner.ownerPublicKey,
    audience: peerId,
    caps: o.caps ?? ['submit', 'render'],
    nbf: now - 60,
    exp: now + 86_400,
  })
  const db = new Level<string, unknown>(join(dir, 'db'), { valueEncoding: 'json' })
  await db.open()
  const logger = createLogger(
    { level: 'warn', file: join(dir, 'hostile.log'), stderr: false },
    'hostile',
  )
  const clock = systemClock
  const tokens = await createTokenStore(db)
  await tokens.addOwnToken(token.bytes)
  const state = createAdmissionState({ tokens, clock })
  const libp2p = await createHost({
    privateKey: key,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    mdns: false,
    connectionGater: createConnectionGater(state),
  })
  const admission = createAdmission(
    { libp2p, tokens, state, clock, logger },
    { meshId: owner.meshId, capabilityFor },
  )
  const signer = signerFor(key)
  const log = createLogManager({
    store: createLevelLogStore(db),
    signer,
    clock,
    logger,
    authorize: (e) => admission.authorizeEntry(e),
    tokenId: () => admission.token?.id ?? '',
  })
  const sync: LogSync = createLogSync(
    { libp2p, log, logger, clock, isAdmitted: (p) => admission.isAdmitted(p) },
    { intervalMs: 1_000 },
  )
  let held: LeaseRef[] = []
  const presence: PresenceService = createPresence(
    {
      libp2p,
      clock,
      logger,
      isAdmitted: (p) => admission.isAdmitted(p),
      // It claims to be a big idle renderer holding (and so heartbeating) every lease it took.
      self: () => ({
        name: 'hostile',
        version: RMESH_VERSION,
        engines: [{ name: 'test', version: '1.0.0' }],
        slots: 64,
        tags: [],
        freeDiskBytes: 1e12,
        load: 0,
        doing: held.map((l) => ({ job: l.job, chunk: l.chunk })),
        leases: held.slice(0, 64),
        meshId: owner.meshId,
      }),
    },
    { intervalMs: 500 },
  )
  await admission.start()
  await presence.start()
  await sync.start()
  admission.onAdmitted((p) => {
    void presence.exchange(p)
    void sync.syncWith(p).catch(() => {})
  })
  await log.append(MESH_LOG, ADMIT_KIND, { token: token.bytes })
  for (const b of o.bootstrap) await libp2p.dial(multiaddr(b)).catch(() => {})

  const admittedPeers = () => admission.admittedPeers()
  const fold = async (jobId: string) => {
    const f = new JobFold({})
    for (const e of await log.entries(jobLogId(jobId))) f.add(e)
    return f.state
  }

  let wrongServed = 0
  let servingWrong = false
  /** CID → the bytes it serves for it (its hostile trees); anything else: not have. */
  const serving = new Map<string, Uint8Array>()
  let handling = false
  /**
   * One blocks handler: with servingWrong, bytes that are not the block (the hash check
   * fails) for every CID; otherwise what `serving` holds.
   */
  const serveBlocks = async () => {
    if (handling) return
    handling = true
    await libp2p.handle(BLOCKS_PROTOCOL, async (stream) => {
      const lps = lpStream(stream, { maxDataLength: MAX_REQUEST_BYTES })
      try {
        for (;;) {
          const wants = decodeRequest((await lps.read()).subarray())
          for (const want of wants) {
            if (servingWrong) {
              wrongServed++
              const junk = new TextEncoder().encode(`not the bytes of ${want}`)
              await lps.write(new Uint8ArrayList(...encodeResponseParts(want, junk)))
            } else {
              const bytes = serving.get(want) ?? null
              await lps.write(new Uint8ArrayList(...encodeResponseParts(want, bytes)))
            }
          }
        }
      } catch {
        stream.abort(new Error('done'))
      }
    })
  }
  const serveWrongBytes = async () => {
    servingWrong = true
    await serveBlocks()
  }

  const hostile: HostilePeer = {
    wrongBytesServed: () => wrongServed,
    peerId,
    dir,
    libp2p,
    log,
    async waitConnected(peerIds, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs
      while (!peerIds.every((p) => admittedPeers().includes(p))) {
        if (Date.now() > deadline)
          throw new Error(
            `hostile peer not admitted by ${peerIds.filter((p) => !admittedPeers().includes(p)).join(', ')}`,
          )
        await new Promise((r) => setTimeout(r, 100))
      }
    },
    async flood(count) {
      let sent = 0
      const junk = encode({ junk: 'x'.repeat(512) })
      const valid = await log.append(MESH_LOG, ADMIT_KIND, { token: token.bytes })
      for (let i = 0; i < count; i++) {
        const topic = TOPICS[i % TOPICS.length]
        const kind = i % 4
        const data =
          kind === 0
            ? new Uint8Array([0xff, 0x1c, i & 0xff])
            : kind === 1
              ? junk
              : kind === 2 && topic === LOG_TOPIC
                ? encodeGossip([valid.bytes])
                : encode({ v: 1, peerId, seq: -i })
        try {
          await libp2p.services.pubsub.publish(topic, data)
          sent++
        } catch {}
        if (i % 200 === 199) await new Promise((r) => setTimeout(r, 10))
      }
      return sent
    },
    async garbage(peer) {
      const id: PeerId = peerIdFromString(peer)
      const badCbor = lp(new Uint8Array([0xff, 0xfe, 0x1c, 0x1d, 0x1e, 0xa5]))
      // A length prefix of 64 MiB, then some of it: must be refused before buffering.
      const oversized = [varint(64 * 1024 * 1024), new Uint8Array(256 * 1024)]
      const out: { protocol: string; sent: boolean; error?: string }[] = []
      for (const protocol of STREAM_PROTOCOLS) {
        for (const frames of [
          [badCbor],
          oversized,
          [new Uint8Array([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01])],
        ]) {
          let sent = false
          let error: string | undefined
          try {
            const s = await libp2p.dialProtocol(id, protocol, {
              signal: AbortSignal.timeout(5_000),
            })
            for (const f of frames) s.send(f)
            sent = true
            await Promise.race([s.close(), new Promise((r) => setTimeout(r, 1_000))]).catch(
              () => {},
            )
            s.abort(new Error('done'))
          } catch (err) {
            error = (err as Error).message
          }
          out.push({ protocol, sent, error })
        }
      }
      return out
    },
    async forged(jobId, victim) {
      const heads = (await log.entries(jobLogId(jobId))).map((e) => e.id)
      const base = { log: jobLogId(jobId), wall: Date.now(), tok: admission.token?.id ?? '' }
      const bad: Uint8Array[] = []
      // Parents nobody has: held as pending (bounded), never applied.
      for (let i = 0; i < 20; i++) {
        const fake = cidOf(encode({ fake: i, jobId })) as EntryId
        bad.push(
          (
            await createEntry(signer, {
              ...base,
              kind: 'claim',
              body: { chunk: i, attempt: 99 },
              clock: 1_000_000 + i,
              next: [fake],
            })
          ).bytes,
        )
      }
      // A valid entry with one signature byte flipped.
      const good = await createEntry(signer, {
        ...base,
        kind: 'release',
        body: { chunk: 0, attempt: 1 },
        clock: 5,
        next: heads,
      })
      const flipped = new Uint8Array(good.bytes)
      flipped[flipped.length - 3] ^= 0xff
      bad.push(flipped)
      // An entry that names the victim as author but is signed by us.
      const victimSigner = { ...signer, peerId: victim as typeof signer.peerId }
      const forgedAuthor = await createEntry(victimSigner, {
        ...base,
        kind: 'cancel',
        body: {},
        clock: 6,
        next: heads,
      }).catch(() => undefined)
      if (forgedAuthor) bad.push(forgedAuthor.bytes)
      for (const b of bad)
        await libp2p.services.pubsub.publish(LOG_TOPIC, encodeGossip([b])).catch(() => {})
      return bad.length
    },
    async publishEntry(jobId, kind, body) {
      const known = await log.entries(jobLogId(jobId))
      const e = await createEntry(signer, {
        log: jobLogId(jobId),
        kind,
        body,
        wall: Date.now(),
        tok: admission.token?.id ?? '',
        clock: Math.max(0, ...known.map((x) => x.clock)) + 1,
        next: await log.heads(jobLogId(jobId)),
      })
      await libp2p.services.pubsub.publish(LOG_TOPIC, encodeGossip([e.bytes])).catch(() => {})
      return e.bytes
    },
    async claimAll(jobId) {
      const s = await fold(jobId)
      if (!s) throw new Error(`hostile peer does not know job ${jobId}`)
      const taken: LeaseRef[] = []
      for (const c of s.chunks) {
        if (c.state !== 'open' && c.state !== 'claimed') continue
        const e: LogEntry = await log.append(jobLogId(jobId), 'claim', {
          chunk: c.index,
          attempt: c.attempt + 1,
        })
        if (e) taken.push({ job: jobId, chunk: c.index, attempt: c.attempt + 1 })
      }
      const after = await fold(jobId)
      held = taken.filter(
        (l) =>
          after?.chunks[l.chunk]?.holder === peerId && after.chunks[l.chunk].attempt === l.attempt,
      )
      presence.publishNow()
      return held
    },
    async bogusComplete(jobId, chunk, o = {}) {
      const s = await fold(jobId)
      const c = s?.chunks[chunk]
      if (!c) throw new Error(`no chunk ${chunk}`)
      if (o.wrongBytes) await serveWrongBytes()
      const manifest = cidOf(encode({ nothing: jobId, chunk, wrong: o.wrongBytes === true }))
      await log.append(jobLogId(jobId), 'complete', {
        chunk,
        attempt: c.attempt,
        outputs: c.frames.map((frame) => ({
          frame,
          manifest,
          size: 100,
          name: `${String(frame).padStart(4, '0')}.png`,
        })),
        renderMs: 1,
      })
    },
    async hostileTree(doc) {
      const bytes = encode(doc)
      const block = cidOf(bytes)
      const m = encodeManifest({
        name: 'files.rmesh-tree',
        size: bytes.length,
        blockSize: 1 << 20,
        blocks: [block],
      })
      serving.set(block, bytes)
      serving.set(m.cid, m.bytes)
      // Valid bytes from here on: the document must reach the renderers to be judged.
      servingWrong = false
      await serveBlocks()
      const jobId = newJobId((n) => new Uint8Array(randomBytes(n)))
      await log.append(jobLogId(jobId), 'announce', {
        jobId,
        name: 'hostile tree',
        submitter: peerId,
        scene: { manifest: cidOf(encode({ scene: jobId })), name: 'scene.blend', size: 1 },
        files: { tree: m.cid, count: 2, size: 2 },
        engine: { name: 'test' },
        frames: [1],
        chunkSize: 1,
        output: { format: 'PNG' },
        priority: 0,
        params: {},
        requirements: {},
        limits: {},
      })
      return jobId
    },
    async stop() {
      await sync.stop()
      await presence.stop()
      await admission.stop()
      await libp2p.stop()
      await db.close()
    },
  }
  return hostile
}
