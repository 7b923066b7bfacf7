/**
 * Follows one job through the event stream until it ends, for `submit` (and `demo`).
 *
 * Invariants: the stream is connected (its first `node` event seen) before the job snapshot
 * is fetched, so no change between the two is missed; a gap in `seq` or a reconnect refetches
 * the snapshot. A job is finished when failed or canceled, or done with (for this node's
 * jobs) every output in the output folder.
 */
import { access } from 'node:fs/promises'
import type { ApiClient } from '../src/api/client.js'
import type { JobDetail, JobSummary } from '../src/api/types.js'
import { isRmeshError, NotFoundError, RmeshError } from '../src/util/errors.js'
import { sleep } from '../src/util/abort.js'
import { type Colors, formatDuration, progressBar } from './format.js'

export function isFinished(job: JobSummary): boolean {
  if (job.state === 'failed' || job.state === 'canceled') return true
  return job.state === 'done' && (!job.mine || job.localComplete !== false)
}

export interface WatchOptions {
  signal: AbortSignal
  onUpdate: (job: JobSummary) => void
  /** Pause between reconnects after the stream drops. */
  reconnectMs?: number
}

export async function watchJob(
  client: ApiClient,
  jobId: string,
  o: WatchOptions,
): Promise<JobSummary> {
  for (;;) {
    try {
      const last = await followOnce(client, jobId, o)
      if (last) return last
    } catch (err) {
      // Stop on anything that will not heal by reconnecting.
      if (
        o.signal.aborted ||
        !isRmeshError(err) ||
        !['ERR_TIMEOUT', 'ERR_BAD_RESPONSE'].includes(err.code)
      )
        throw err
    }
    await sleep(o.reconnectMs ?? 1000, o.signal)
  }
}

async function followOnce(
  client: ApiClient,
  jobId: string,
  o: WatchOptions,
): Promise<JobSummary | undefined> {
  const it = client.events({ signal: o.signal })[Symbol.asyncIterator]()
  try {
    const first = await it.next()
    if (first.done) return undefined
    let seq = first.value.seq
    const refetch = async () => {
      const job = await client.job(jobId, { signal: o.signal })
      o.onUpdate(job)
      return job
    }
    let job: JobSummary = await refetch()
    if (isFinished(job)) return job
    for (;;) {
      const r = await it.next()
      if (r.done) return undefined
      const ev = r.value
      const gap = ev.seq !== seq + 1
      seq = ev.seq
      if (gap) job = await refetch()
      else if (ev.type === 'job-updated' && ev.job.jobId === jobId) {
        job = ev.job
        o.onUpdate(job)
      } else if (ev.type === 'job-removed' && ev.jobId === jobId) {
        throw new NotFoundError(`job ${jobId} (it was deleted)`)
      }
      if (isFinished(job)) return job
    }
  } finally {
    await it.return?.()
  }
}

/** Frames of a finished job whose files are not all in the output folder. */
export async function missingOutputs(job: JobDetail): Promise<number[]> {
  const missing: number[] = []
  for (const f of job.frames) {
    const outs = f.outputs ?? []
    if (outs.length === 0) {
      missing.push(f.frame)
      continue
    }
    for (const p of outs) {
      try {
        await access(p)
      } catch {
        missing.push(f.frame)
        break
      }
    }
  }
  return missing
}

/** One status line: bar, frames, nodes, throughput, ETA; fits `width` columns. */
export function progressLine(job: JobSummary, width: number, c: Colors): string {
  const frac = job.framesTotal > 0 ? job.framesDone / job.framesTotal : 0
  const stats = [
    `${job.framesDone}/${job.framesTotal} frames`,
    job.framesFailed > 0 ? c.red(`${job.framesFailed} failed`) : '',
    `${job.nodesRendering} node${job.nodesRendering === 1 ? '' : 's'}`,
    `${job.framesPerMinute.toFixed(1)} f/min`,
    `ETA ${formatDuration(job.etaMs)}`,
  ]
    .filter(Boolean)
    .join('  ')
  const state =
    job.state === 'rendering'
      ? c.cyan(job.state)
      : // Paused or waiting: its reason starts with the state and says what it waits for.
        job.state === 'paused' || job.state === 'waiting'
        ? c.yellow(job.reason ?? job.state)
        : job.state
  const plain = `${job.framesDone}/${job.framesTotal} frames  ${job.nodesRendering} nodes  ${job.framesPerMinute.toFixed(1)} f/min  ETA 00m00s  rendering  `
  const barWidth = Math.max(10, Math.min(40, width - plain.length - 4))
  return `${state} [${c.green(progressBar(frac, barWidth))}] ${stats}`
}

export class JobEndedError extends RmeshError {
  constructor(job: JobSummary, extra = '') {
    super(
      'ERR_JOB_FAILED',
      `job ${job.name} (${job.jobId}) ${job.state}${job.reason ? `: ${job.reason}` : ''}${extra}`,
    )
    this.name = 'JobEndedError'
  }
}
