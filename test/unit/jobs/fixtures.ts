/** Builders for job log entries in tests: no crypto, deterministic ids. */
import { cidOf } from '../../../src/util/hash.js'
import type { EntryId, LogEntry, PeerIdString } from '../../../src/log/types.js'
import { jobLogId } from '../../../src/log/types.js'
import type { AnnounceBody } from '../../../src/jobs/entries.js'

export const JOB = 'abcdefgh'
export const SUB = 'peer-sub' as PeerIdString
export const A = 'peer-a' as PeerIdString
export const B = 'peer-b' as PeerIdString
export const C = 'peer-c' as PeerIdString
export const D = 'peer-d' as PeerIdString

export const cid = (s: string) => cidOf(new TextEncoder().encode(s))

export function announceBody(over: Partial<AnnounceBody> = {}): AnnounceBody {
  return {
    jobId: JOB,
    name: 'test job',
    submitter: SUB,
    scene: { manifest: cid('scene'), name: 'scene.blend', size: 10 },
    engine: { name: 'test' },
    frames: [1, 2, 3, 4],
    chunkSize: 1,
    output: { format: 'PNG' },
    priority: 0,
    params: {},
    requirements: {},
    limits: {},
    ...over,
  }
}

let n = 0
export function entry(
  kind: string,
  body: unknown,
  clock: number,
  author: PeerIdString,
  id?: string,
): LogEntry {
  return {
    id: (id ?? `e${String(++n).padStart(5, '0')}`) as EntryId,
    v: 1,
    log: jobLogId(JOB),
    kind,
    body,
    clock,
    author,
    wall: 1_700_000_000_000 + clock,
    next: [],
    tok: '',
    bytes: new Uint8Array(),
  }
}

export function outputsFor(frames: number[]) {
  return frames.map((f) => ({ frame: f, manifest: cid(`out${f}`), size: 1, name: `f${f}.png` }))
}
