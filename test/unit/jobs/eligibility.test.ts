import { describe, expect, it } from 'vitest'
import {
  chunkEligibility,
  eligibilityVerdict,
  type MeshNode,
} from '../../../src/jobs/eligibility.js'
import { reduceJob } from '../../../src/jobs/reducer.js'
import type { LogEntry, PeerIdString } from '../../../src/log/types.js'
import { A, announceBody, B, C, entry, outputsFor, SUB } from './fixtures.js'

const node = (id: PeerIdString, over: Partial<MeshNode> = {}): MeshNode => ({
  id,
  name: id.replace('peer-', 'node-'),
  engines: [{ name: 'test', version: '1.0.0' }],
  slots: 1,
  tags: [],
  ...over,
})
const blender = (version: string) => [{ name: 'blender', version }]
const job = (over = {}, ...more: LogEntry[]) =>
  reduceJob([entry('announce', announceBody(over), 1, SUB), ...more])!
const claim = (chunk: number, attempt: number, clock: number, who: PeerIdString) =>
  entry('claim', { chunk, attempt }, clock, who)
const fail = (chunk: number, attempt: number, clock: number, who: PeerIdString) =>
  entry('fail', { chunk, attempt, reason: 'boom' }, clock, who)

/** A and B each failed chunk 0 `times` times (alternating attempts). */
function failedOnBoth(times: number, over = {}) {
  const es: LogEntry[] = []
  let clock = 2
  for (let attempt = 1; attempt <= 2 * times; attempt++) {
    const who = attempt % 2 ? A : B
    es.push(claim(0, attempt, clock++, who), fail(0, attempt, clock++, who))
  }
  return job({ frames: [1, 2, 3], ...over }, ...es)
}

describe('eligibility', () => {
  it('ok when a live node has the engine, tags and a slot', () => {
    expect(eligibilityVerdict(job(), [node(A)])).toEqual({ ok: true })
    expect(chunkEligibility(job({ frames: [1, 2] }), [node(B), node(A)])).toEqual([
      { chunk: 0, nodes: [A, B] },
      { chunk: 1, nodes: [A, B] },
    ])
  })

  it('stuck when no node has the engine in a satisfying version', () => {
    const s = job({ engine: { name: 'blender', version: '>=4.0' }, frames: [5, 6], chunkSize: 2 })
    const v = eligibilityVerdict(s, [node(A, { engines: blender('3.6.2') })])
    expect(v).toEqual({
      ok: false,
      chunk: 0,
      stuckChunks: [0],
      why: 'chunk 0 (frames 5-6): no node of the mesh has blender >=4.0',
    })
    expect(eligibilityVerdict(s, [node(A, { engines: blender('4.2.1') })]).ok).toBe(true)
  })

  it('a node paused by a full disk (slots 0, paused) counts as able: the job waits, it does not fail', () => {
    const paused = node(A, { slots: 0, paused: 'less than 256 MiB free on the data disk' })
    expect(eligibilityVerdict(job(), [paused])).toEqual({ ok: true })
    // Slots 0 without a passing reason (a submit-only machine) is not able.
    expect(eligibilityVerdict(job(), [node(A, { slots: 0 })]).ok).toBe(false)
  })

  it('names missing tags and missing slots', () => {
    const tagged = job({ requirements: { tags: ['gpu'] }, frames: [1] })
    expect(eligibilityVerdict(tagged, [node(A)])).toMatchObject({
      why: 'chunk 0 (frame 1): no node of the mesh with test has the tags gpu',
    })
    expect(eligibilityVerdict(tagged, [node(A, { tags: ['gpu', 'x'] })]).ok).toBe(true)
    expect(eligibilityVerdict(job({ frames: [1] }), [node(A, { slots: 0 })])).toMatchObject({
      why: 'chunk 0 (frame 1): no node of the mesh with test has a render slot',
    })
  })

  it('a chunk failed on every node is still eligible (the lease manager retakes it) until the blocklist', () => {
    const twice = failedOnBoth(2)
    expect(new Set(twice.chunks[0].failures.map((f) => f.node))).toEqual(new Set([A, B]))
    expect(eligibilityVerdict(twice, [node(A), node(B)])).toEqual({ ok: true })
    const thrice = failedOnBoth(3)
    expect(thrice.blocklist).toEqual([A, B])
    expect(eligibilityVerdict(thrice, [node(A), node(B)])).toEqual({
      ok: false,
      chunk: 0,
      stuckChunks: [0, 1, 2],
      why: 'chunk 0 (frame 1) (and 2 more chunk(s)): every node that can run it failed 3 chunk(s) of this job and is blocklisted: node-a, node-b',
    })
    // A third node that can run it: not stuck.
    expect(eligibilityVerdict(thrice, [node(A), node(B), node(C)]).ok).toBe(true)
    expect(chunkEligibility(thrice, [node(A), node(B), node(C)])[0]).toEqual({
      chunk: 0,
      nodes: [C],
    })
  })

  it('a claimed chunk needs no node while its holder is live; it does once the holder is gone', () => {
    const s = job({ frames: [1], engine: { name: 'blender' } }, claim(0, 1, 2, A))
    const holder = node(A, { engines: blender('4.2.0') })
    expect(eligibilityVerdict(s, [holder])).toEqual({ ok: true })
    expect(eligibilityVerdict(s, [node(B)])).toMatchObject({
      ok: false,
      why: 'chunk 0 (frame 1): no node of the mesh has blender',
    })
  })

  it('the encode chunk counts only once it opens, and needs ffmpeg', () => {
    const video = { frames: [1], output: { format: 'PNG', video: 'h264' } }
    const waiting = job(video)
    expect(eligibilityVerdict(waiting, [node(A)])).toEqual({ ok: true })
    const open = job(
      video,
      claim(0, 1, 2, A),
      entry('complete', { chunk: 0, attempt: 1, outputs: outputsFor([1]), renderMs: 1 }, 3, A),
    )
    expect(open.chunks[1].state).toBe('open')
    expect(eligibilityVerdict(open, [node(A)])).toMatchObject({
      ok: false,
      chunk: 1,
      why: 'the video encode: no node of the mesh has ffmpeg that encodes h264 (needed to encode the video)',
    })
    const ff = node(B, { engines: [{ name: 'ffmpeg', version: '6.1.1' }] })
    expect(eligibilityVerdict(open, [node(A), ff]).ok).toBe(true)
  })

  it('the encode chunk goes only to a node whose ffmpeg can encode what the job asks', () => {
    const output = { format: 'OPEN_EXR', video: 'h265', bitDepth: 10, hdr: 'hlg' }
    const open = job(
      { frames: [1], output },
      claim(0, 1, 2, A),
      entry('complete', { chunk: 0, attempt: 1, outputs: outputsFor([1]), renderMs: 1 }, 3, A),
    )
    const ffmpeg = [{ name: 'ffmpeg', version: '5.1.9' }]
    // An older node (no `video` list) and one without zscale cannot; one with it all can.
    const old = node(B, { engines: ffmpeg })
    const noHlg = node(C, { engines: ffmpeg, video: ['h264', 'h265', 'h265:10bit'] })
    expect(eligibilityVerdict(open, [node(A), old, noHlg])).toMatchObject({
      ok: false,
      why: 'the video encode: no node of the mesh has ffmpeg that encodes h265 10-bit HLG (needed to encode the video)',
    })
    const full = node(C, { engines: ffmpeg, video: ['h265', 'h265:10bit', 'hlg'] })
    expect(chunkEligibility(open, [node(A), old, full])).toEqual([{ chunk: 1, nodes: [C] }])
    // A plain h264 video keeps working on older nodes.
    const plain = job(
      { frames: [1], output: { format: 'PNG', video: 'h264' } },
      claim(0, 1, 2, A),
      entry('complete', { chunk: 0, attempt: 1, outputs: outputsFor([1]), renderMs: 1 }, 3, A),
    )
    expect(eligibilityVerdict(plain, [old]).ok).toBe(true)
  })

  it('a job that is not queued or rendering is never stuck', () => {
    const canceled = job({ frames: [1] }, entry('cancel', {}, 2, SUB))
    expect(eligibilityVerdict(canceled, [])).toEqual({ ok: true })
    const failed = failedOnBoth(3, { limits: { maxNodesPerChunk: 2 } })
    expect(failed.state).toBe('failed')
    expect(eligibilityVerdict(failed, [])).toEqual({ ok: true })
  })
})
