/**
 * protocols/vectors/jobs/*.json: job entries and the state every implementation must
 * reduce them to. RMESH_WRITE_VECTORS=1 regenerates the files from the cases below
 * (review the diff: a changed expected state is a protocol change).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { reduceJob } from '../../../src/jobs/reducer.js'
import type { EntryId, LogEntry, PeerIdString } from '../../../src/log/types.js'
import { jobLogId } from '../../../src/log/types.js'
import { A, announceBody, B, C, cid, D, JOB, outputsFor, SUB } from './fixtures.js'

const DIR = join(import.meta.dirname, '../../../protocols/vectors/jobs')

interface VectorEntry {
  id: string
  kind: string
  body: unknown
  clock: number
  author: string
  wall: number
}
interface Vector {
  description: string
  admins?: string[]
  entries: VectorEntry[]
  expected: unknown
}

function toLogEntry(v: VectorEntry): LogEntry {
  return {
    ...v,
    id: v.id as EntryId,
    author: v.author as PeerIdString,
    v: 1,
    log: jobLogId(JOB),
    next: [],
    tok: '',
    bytes: new Uint8Array(),
  }
}

function reduceVector(v: Omit<Vector, 'expected'>): unknown {
  const admins = new Set(v.admins ?? [])
  return JSON.parse(
    JSON.stringify(reduceJob(v.entries.map(toLogEntry), { isAdmin: (p) => admins.has(p) }) ?? null),
  )
}

let n = 0
const e = (kind: string, body: unknown, clock: number, author: string): VectorEntry => ({
  id: `entry-${String(++n).padStart(3, '0')}`,
  kind,
  body,
  clock,
  author,
  wall: 1_700_000_000_000 + clock * 1000,
})
const ann = (over = {}) => e('announce', announceBody(over), 1, SUB)
const done = (chunk: number, attempt: number, clock: number, who: string, frames: number[]) =>
  e('complete', { chunk, attempt, outputs: outputsFor(frames), renderMs: 900 }, clock, who)

const CASES: Record<string, Omit<Vector, 'expected'>> = {
  'concurrent-claims': {
    description:
      'Two claims of the same (chunk, attempt): the lower (clock, author) wins; the loser is not a holder.',
    entries: [
      ann({ frames: [1, 2] }),
      e('claim', { chunk: 0, attempt: 1 }, 2, B),
      e('claim', { chunk: 0, attempt: 1 }, 2, A),
      e('claim', { chunk: 1, attempt: 1 }, 3, C),
    ],
  },
  'dead-lease-duplicate': {
    description:
      'A reclaims a chunk as attempt 2 (B judged dead); B then completes attempt 1, A completes attempt 2: first complete wins, second is a duplicate.',
    entries: [
      ann({ frames: [1] }),
      e('claim', { chunk: 0, attempt: 1 }, 2, B),
      e('claim', { chunk: 0, attempt: 2 }, 3, A),
      done(0, 1, 4, B, [1]),
      done(0, 2, 5, A, [1]),
    ],
  },
  'failures-and-blocklist': {
    description:
      'Chunk 0 fails on 3 distinct nodes: the job fails. A fails 3 times in the job: blocklisted, its later claim ignored.',
    entries: [
      ann({ frames: [1, 2, 3, 4] }),
      e('claim', { chunk: 0, attempt: 1 }, 2, A),
      e('fail', { chunk: 0, attempt: 1, reason: 'crash' }, 3, A),
      e('claim', { chunk: 1, attempt: 1 }, 4, A),
      e('fail', { chunk: 1, attempt: 1, reason: 'crash' }, 5, A),
      e('claim', { chunk: 2, attempt: 1 }, 6, A),
      e('fail', { chunk: 2, attempt: 1, reason: 'crash' }, 7, A),
      e('claim', { chunk: 3, attempt: 1 }, 8, A),
      e('claim', { chunk: 0, attempt: 2 }, 9, B),
      e('fail', { chunk: 0, attempt: 2, reason: 'oom' }, 10, B),
      e('claim', { chunk: 0, attempt: 3 }, 11, C),
      e('fail', { chunk: 0, attempt: 3, reason: 'oom' }, 12, C),
    ],
  },
  authority: {
    description:
      'Cancel and priority from a non-submitter are ignored; from an admin (D) they apply; claims after cancel are ignored.',
    admins: [D],
    entries: [
      ann({ frames: [1, 2] }),
      e('cancel', {}, 2, B),
      e('priority', { priority: 9 }, 3, B),
      e('priority', { priority: 5 }, 4, D),
      e('cancel', {}, 5, D),
      e('claim', { chunk: 0, attempt: 1 }, 6, A),
    ],
  },
  'video-encode': {
    description:
      'The encode chunk (index = frame chunks) waits for every frame chunk, then is leased and completed; submitter acks.',
    entries: [
      ann({ frames: [1, 2, 3], chunkSize: 2, output: { format: 'PNG', video: 'h264', fps: 24 } }),
      e('claim', { chunk: 2, attempt: 1 }, 2, C),
      e('claim', { chunk: 0, attempt: 1 }, 2, A),
      e('claim', { chunk: 1, attempt: 1 }, 2, B),
      done(0, 1, 3, A, [1, 2]),
      done(1, 1, 4, B, [3]),
      e('claim', { chunk: 2, attempt: 1 }, 5, C),
      e(
        'complete',
        {
          chunk: 2,
          attempt: 1,
          outputs: [{ frame: 0, manifest: cid('video'), size: 5, name: 'out.mp4' }],
          renderMs: 2000,
        },
        6,
        C,
      ),
      e('ack', { chunks: [0, 1, 2] }, 7, SUB),
    ],
  },
  'garbage-ignored': {
    description:
      'Invalid bodies, unknown kinds and entries before the announce are ignored; a complete needs no prior claim.',
    entries: [
      e('claim', { chunk: 0, attempt: 1 }, 1, A),
      ann({ frames: [1] }),
      e('claim', { chunk: 0, attempt: 0 }, 2, A),
      e('claim', 'nonsense', 2, B),
      e('frobnicate', {}, 2, C),
      e('complete', { chunk: 0, attempt: 1, outputs: outputsFor([1]), renderMs: 1 }, 3, C),
      e('claim', { chunk: 7, attempt: 1 }, 4, A),
    ],
  },
  reject: {
    description:
      "The submitter rejects done chunks whose outputs it cannot obtain: chunk 0 (A's attempt 1) reopens, counts a failure of A, is re-rendered by B as attempt 2; a reject by A, one naming another attempt and one of an acked chunk are no-ops.",
    entries: [
      ann({ frames: [1, 2, 3] }),
      e('claim', { chunk: 0, attempt: 1 }, 2, A),
      e('claim', { chunk: 1, attempt: 1 }, 2, B),
      e('claim', { chunk: 2, attempt: 1 }, 2, C),
      done(0, 1, 3, A, [1]),
      done(1, 1, 3, B, [2]),
      done(2, 1, 3, C, [3]),
      e('ack', { chunks: [2] }, 4, SUB),
      e('reject', { chunk: 1, attempt: 1, reason: 'not mine to reject' }, 4, A),
      e('reject', { chunk: 1, attempt: 2, reason: 'wrong attempt' }, 4, SUB),
      e('reject', { chunk: 2, attempt: 1, reason: 'already acked' }, 5, SUB),
      e(
        'reject',
        { chunk: 0, attempt: 1, reason: 'outputs of frame 1 failed their hash check from peer-a' },
        5,
        SUB,
      ),
      e('claim', { chunk: 0, attempt: 2 }, 6, B),
      done(0, 2, 7, B, [1]),
    ],
  },
  abort: {
    description:
      "No eligible node remains: A and B failed chunk 0 three times each (N = 3, both blocklisted); the submitter's abort fails the job with its reason. An abort by A is ignored, a second one keeps the first reason, a claim after it is ignored.",
    entries: [
      ann({ frames: [1, 2] }),
      e('claim', { chunk: 0, attempt: 1 }, 2, A),
      e('fail', { chunk: 0, attempt: 1, reason: 'crash' }, 3, A),
      e('claim', { chunk: 0, attempt: 2 }, 4, B),
      e('fail', { chunk: 0, attempt: 2, reason: 'crash' }, 5, B),
      e('claim', { chunk: 0, attempt: 3 }, 6, A),
      e('fail', { chunk: 0, attempt: 3, reason: 'crash' }, 7, A),
      e('claim', { chunk: 0, attempt: 4 }, 8, B),
      e('fail', { chunk: 0, attempt: 4, reason: 'crash' }, 9, B),
      e('claim', { chunk: 0, attempt: 5 }, 10, A),
      e('fail', { chunk: 0, attempt: 5, reason: 'crash' }, 11, A),
      e('claim', { chunk: 0, attempt: 6 }, 12, B),
      e('fail', { chunk: 0, attempt: 6, reason: 'crash' }, 13, B),
      e('abort', { reason: 'not mine to abort' }, 14, A),
      e(
        'abort',
        {
          reason:
            'no eligible node remains: chunk 0 (frame 1) (and 1 more chunk(s)): every node that can run it failed 3 chunk(s) of this job and is blocklisted: node-a, node-b',
        },
        15,
        SUB,
      ),
      e('abort', { reason: 'a later abort' }, 16, SUB),
      e('claim', { chunk: 1, attempt: 1 }, 17, C),
    ],
  },
  'abort-retry': {
    description:
      'A retry by the submitter revives an aborted job with a fresh start: the abort, the failure counts, the blocklist and the failure lists of unfinished chunks are cleared; the next claim is a new attempt.',
    entries: [
      ann({ frames: [1, 2] }),
      e('claim', { chunk: 0, attempt: 1 }, 2, A),
      e('fail', { chunk: 0, attempt: 1, reason: 'crash' }, 3, A),
      e('claim', { chunk: 1, attempt: 1 }, 3, B),
      done(1, 1, 4, B, [2]),
      e(
        'abort',
        { reason: 'no eligible node remains: chunk 0 (frame 1): no node of the mesh has test' },
        5,
        SUB,
      ),
      e('retry', { chunks: [] }, 6, SUB),
      e('claim', { chunk: 0, attempt: 2 }, 7, C),
    ],
  },
  'video-options': {
    description:
      'Announces with nonsense video options (a CRF of 99 for h264, 12-bit, a frame rate of 0/1, HLG from PNG frames, 2-pass x264 without a bitrate) are ignored; the valid one (10-bit HLG H.265 at 24000/1001) makes the job, its options kept in its state.',
    entries: [
      e('announce', announceBody({ output: { format: 'PNG', video: 'h264', crf: 99 } }), 1, SUB),
      e(
        'announce',
        announceBody({ output: { format: 'PNG', video: 'vp9', bitDepth: 12 as never } }),
        1,
        SUB,
      ),
      e(
        'announce',
        announceBody({ output: { format: 'PNG', video: 'av1', frameRate: '0/1' } }),
        1,
        SUB,
      ),
      e(
        'announce',
        announceBody({ output: { format: 'PNG', video: 'h265', bitDepth: 10, hdr: 'hlg' } }),
        1,
        SUB,
      ),
      e(
        'announce',
        announceBody({ output: { format: 'PNG', video: 'h264', passes: 2, crf: 20 } }),
        1,
        SUB,
      ),
      e(
        'announce',
        announceBody({
          frames: [1, 2],
          output: {
            format: 'OPEN_EXR',
            video: 'h265',
            fps: 24,
            frameRate: '24000/1001',
            crf: 18,
            passes: 1,
            bitDepth: 10,
            hdr: 'hlg',
          },
        }),
        2,
        SUB,
      ),
      e('claim', { chunk: 0, attempt: 1 }, 3, A),
    ],
  },
  thumbnails: {
    description:
      'Outputs may name a thumbnail ({manifest, size ≤ 65536}); a malformed thumb is dropped and the output kept (what a node that predates thumbnails does), never the whole complete.',
    entries: [
      ann({ frames: [1, 2, 3] }),
      e(
        'complete',
        {
          chunk: 0,
          attempt: 1,
          outputs: [{ ...outputsFor([1])[0], thumb: { manifest: cid('thumb1'), size: 900 } }],
          renderMs: 5,
        },
        2,
        A,
      ),
      e(
        'complete',
        {
          chunk: 1,
          attempt: 1,
          outputs: [{ ...outputsFor([2])[0], thumb: { manifest: 'not-a-cid', size: 900 } }],
          renderMs: 5,
        },
        2,
        B,
      ),
      e(
        'complete',
        {
          chunk: 2,
          attempt: 1,
          outputs: [{ ...outputsFor([3])[0], thumb: { manifest: cid('thumb3'), size: 1_000_000 } }],
          renderMs: 5,
        },
        2,
        C,
      ),
    ],
  },
  pause: {
    description:
      "Job order: the submitter pauses the job. A's running chunk 0 completes; B's claim after the pause is ignored; a resume by A (not the submitter nor an admin) and malformed pause/resume bodies are ignored: the job stays paused.",
    entries: [
      ann({ frames: [1, 2, 3] }),
      e('claim', { chunk: 0, attempt: 1 }, 2, A),
      e('pause', {}, 3, SUB),
      e('claim', { chunk: 1, attempt: 1 }, 4, B),
      done(0, 1, 5, A, [1]),
      e('resume', {}, 6, A),
      e('resume', 'now', 6, SUB),
      e('resume', null, 6, SUB),
      e('pause', 7, 7, SUB),
    ],
  },
  'pause-resume': {
    description:
      "A pause then the submitter's resume (an admin's pause and resume count too): claims after the resume hold again; the last of pause/resume in fold order decides.",
    admins: [D],
    entries: [
      ann({ frames: [1, 2] }),
      e('pause', {}, 2, SUB),
      e('claim', { chunk: 0, attempt: 1 }, 3, A),
      e('resume', {}, 4, SUB),
      e('claim', { chunk: 0, attempt: 1 }, 5, A),
      e('pause', {}, 6, D),
      e('claim', { chunk: 1, attempt: 1 }, 7, B),
      e('resume', {}, 8, D),
      e('claim', { chunk: 1, attempt: 1 }, 9, B),
    ],
  },
  'after-ready': {
    description:
      "Job order: a job announced with `after` is waiting; claims are ignored until the submitter's `ready` (a ready by A, or with a malformed body, is ignored), then the job is claimed as usual.",
    entries: [
      ann({ frames: [1, 2], after: ['bcdefghi', 'cdefghij'] }),
      e('claim', { chunk: 0, attempt: 1 }, 2, A),
      e('ready', {}, 3, A),
      e('ready', [], 3, SUB),
      e('claim', { chunk: 1, attempt: 1 }, 4, B),
      e('ready', {}, 5, SUB),
      e('claim', { chunk: 0, attempt: 1 }, 6, A),
    ],
  },
  'after-abort': {
    description:
      "Job order: a dependency failed, so the submitter's node aborts the waiting job with a reason naming it; the job is failed and stays so (no ready follows).",
    entries: [
      ann({ frames: [1], after: ['bcdefghi'] }),
      e('abort', { reason: 'dependency bcdefghi was canceled' }, 2, SUB),
      e('claim', { chunk: 0, attempt: 1 }, 3, A),
    ],
  },
  unblock: {
    description:
      'With maxFailuresPerNode 1, A and B are blocklisted; an unblock by A and malformed ones are ignored; the submitter unblocks A (its count restarts, its failures stay on the chunks), A claims again; an unblock with no node clears B too.',
    entries: [
      ann({ frames: [1, 2, 3], limits: { maxFailuresPerNode: 1 } }),
      e('claim', { chunk: 0, attempt: 1 }, 2, A),
      e('claim', { chunk: 1, attempt: 1 }, 2, B),
      e('fail', { chunk: 0, attempt: 1, reason: 'out of memory' }, 3, A),
      e('fail', { chunk: 1, attempt: 1, reason: 'missing texture' }, 3, B),
      e('claim', { chunk: 0, attempt: 2 }, 4, A),
      e('unblock', { node: A }, 5, A),
      e('unblock', { node: 5 }, 5, SUB),
      e('unblock', 'everyone', 5, SUB),
      e('unblock', { node: A }, 6, SUB),
      e('claim', { chunk: 0, attempt: 2 }, 7, A),
      e('claim', { chunk: 1, attempt: 2 }, 7, B),
      e('unblock', {}, 8, SUB),
      e('claim', { chunk: 2, attempt: 1 }, 9, B),
    ],
  },
  'device-requirement': {
    description:
      "An announce may ask for a render device (`requirements.device`: cpu, gpu, cuda, optix, hip, oneapi, metal); one asking for an unknown device ('tpu', or 'OPTIX' in capitals) is ignored like any invalid announce, and the valid one keeps its device in the job's state (eligibility reads it there).",
    entries: [
      e('announce', announceBody({ requirements: { device: 'tpu' as never } }), 1, SUB),
      e('announce', announceBody({ requirements: { device: 'OPTIX' as never } }), 1, SUB),
      e(
        'announce',
        announceBody({
          engine: { name: 'blender', version: '>=4.2 <4.3' },
          requirements: { device: 'optix' },
        }),
        2,
        SUB,
      ),
    ],
  },
}

describe('job reducer test vectors', () => {
  if (process.env.RMESH_WRITE_VECTORS) {
    for (const [name, v] of Object.entries(CASES)) {
      writeFileSync(
        join(DIR, `${name}.json`),
        `${JSON.stringify({ ...v, expected: reduceVector(v) }, null, 2)}\n`,
      )
    }
  }
  const files = readdirSync(DIR).filter((f) => f.endsWith('.json'))
  it('has the vectors', () =>
    expect(files.length).toBeGreaterThanOrEqual(Object.keys(CASES).length))
  for (const f of files) {
    it(f, () => {
      const v = JSON.parse(readFileSync(join(DIR, f), 'utf8')) as Vector
      expect(reduceVector(v)).toEqual(v.expected)
      // Order independence on the vector too.
      expect(reduceVector({ ...v, entries: [...v.entries].reverse() })).toEqual(v.expected)
    })
  }
})
