/**
 * Builds the log test vectors (protocols/vectors/log/*.json) from fixed keys. Ed25519
 * signatures are deterministic, so the same code always yields the same bytes: the
 * vectors test rebuilds them and compares, and RMESH_WRITE_VECTORS=1 rewrites the files.
 */
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { peerIdOf, signerFor } from '../../../src/auth/identity.js'
import { createEntry } from '../../../src/log/entry.js'
import { compareEntries, jobLogId, type LogEntry } from '../../../src/log/types.js'
import { fromHex, toHex } from '../../../src/util/bytes.js'
import { VECTOR_KEY_HEX } from './helpers.js'

/** RFC 8032 test 2 seed and public key, as a libp2p protobuf private key. */
export const VECTOR_KEY2_HEX =
  '08011240' +
  '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb' +
  '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c'

export interface VectorFiles {
  'entry.json': unknown
  'fold.json': unknown
}

function describeEntry(e: LogEntry) {
  return {
    id: e.id,
    bytesHex: toHex(e.bytes),
    fields: {
      v: e.v,
      log: e.log,
      kind: e.kind,
      body: e.body,
      clock: e.clock,
      author: e.author,
      wall: e.wall,
      next: e.next,
      tok: e.tok,
    },
  }
}

export async function buildVectors(): Promise<VectorFiles> {
  const k1 = privateKeyFromProtobuf(fromHex(VECTOR_KEY_HEX))
  const k2 = privateKeyFromProtobuf(fromHex(VECTOR_KEY2_HEX))
  const s1 = signerFor(k1)
  const s2 = signerFor(k2)
  const log = jobLogId('vector-job')
  const wall = 1_700_000_000_000
  const announce = await createEntry(s1, {
    log,
    kind: 'announce',
    body: { scene: 'cube.blend', frames: [1, 4], chunk: 1 },
    clock: 1,
    next: [],
    wall,
    tok: 'bafkreitoken',
  })
  const c1 = await createEntry(s1, {
    log,
    kind: 'claim',
    body: { chunk: 0 },
    clock: 2,
    next: [announce.id],
    wall: wall + 1,
    tok: '',
  })
  const c2 = await createEntry(s2, {
    log,
    kind: 'claim',
    body: { chunk: 0 },
    clock: 2,
    next: [announce.id],
    wall: wall + 2,
    tok: '',
  })
  const done = await createEntry(s2, {
    log,
    kind: 'complete',
    body: { chunk: 0 },
    clock: 3,
    next: [c1.id, c2.id],
    wall: wall + 3,
    tok: '',
  })
  const late = await createEntry(s1, {
    log,
    kind: 'claim',
    body: { chunk: 1 },
    clock: 3,
    next: [c1.id],
    wall: wall + 4,
    tok: '',
  })
  const set = [done, late, c2, announce, c1]
  return {
    'entry.json': {
      description: 'One signed log entry made with a fixed key (protocols/log-entry.md).',
      key: { privateKeyProtobufHex: VECTOR_KEY_HEX, peerId: peerIdOf(k1) },
      signingDomainUtf8: 'rmesh/log-entry/1\n',
      entry: describeEntry(announce),
    },
    'fold.json': {
      description:
        'Entries (in delivery order) of one log by two authors with concurrent claims; foldOrder is the order ' +
        'every replica folds them in (clock, then author, then id); heads are the sorted heads after joining all.',
      keys: [
        { privateKeyProtobufHex: VECTOR_KEY_HEX, peerId: peerIdOf(k1) },
        { privateKeyProtobufHex: VECTOR_KEY2_HEX, peerId: peerIdOf(k2) },
      ],
      entries: set.map(describeEntry),
      foldOrder: [...set].sort(compareEntries).map((e) => e.id),
      heads: [done.id, late.id].sort(),
    },
  }
}
