/**
 * The simulator's renderer: a chunk takes simulated time and returns outputs named by
 * content, as a stored render would.
 *
 * Invariants: a hung render never settles and ignores abort; an aborted render reports
 * nothing to the mesh; a finished one is counted once (SimMesh.onRenderDone).
 */
import { AbortedError } from '../../src/util/errors.js'
import { cidOf } from '../../src/util/hash.js'
import type { ChunkOutput } from '../../src/jobs/entries.js'
import type { ChunkResult, ChunkRunner, ChunkTask } from '../../src/jobs/runner.js'
import { ChunkFailedError } from '../../src/jobs/runner.js'
import type { SimNode } from './mesh.js'

const outputCids = new Map<string, string>()
export function outputCid(key: string): string {
  let c = outputCids.get(key)
  if (!c) {
    c = cidOf(new TextEncoder().encode(key))
    outputCids.set(key, c)
  }
  return c
}

export type RunnerMode = 'ok' | 'hang' | 'fail'

/** A renderer whose chunk takes the mesh's frame time per frame of simulated time (±5 %). */
export class FakeRunner implements ChunkRunner {
  mode: RunnerMode = 'ok'
  active = 0

  constructor(private readonly node: SimNode) {}

  start(task: ChunkTask, signal: AbortSignal): Promise<ChunkResult> {
    const mesh = this.node.mesh
    // ±5 % per render, as real renders vary: identical durations would keep nodes in lockstep.
    const base =
      task.kind === 'encode'
        ? mesh.encodeMs
        : task.frames.reduce((sum, f) => sum + mesh.frameTime(f), 0)
    const ms = Math.round(base * (0.95 + 0.1 * mesh.random()))
    const mode = this.mode
    mesh.onRenderStart(this.node, task)
    return new Promise((resolve, reject) => {
      if (mode === 'hang') return // never settles and ignores abort: the worst worker
      this.active++
      const timer = this.node.clock.setTimeout(() => {
        this.active--
        signal.removeEventListener('abort', onAbort)
        if (mode === 'fail') return reject(new ChunkFailedError('simulated failure'))
        const outputs: ChunkOutput[] =
          task.kind === 'encode'
            ? [
                {
                  frame: 0,
                  manifest: outputCid(`${task.jobId}/video`),
                  size: 1000,
                  name: 'video.mp4',
                },
              ]
            : task.frames.map((f) => ({
                frame: f,
                manifest: outputCid(`${task.jobId}/${f}`),
                size: 100,
                name: `f${f}.png`,
              }))
        mesh.onRenderDone(this.node, task)
        resolve({ outputs, renderMs: ms })
      }, ms)
      const onAbort = () => {
        this.active--
        this.node.clock.clearTimeout(timer)
        reject(new AbortedError('render'))
      }
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }
}
