/**
 * Hooks that connect the dashboard to the daemon through an injected ApiClient (tests pass
 * a fake). useDaemon keeps the model current from the event stream, reconnecting with
 * backoff and refetching the snapshot after a reconnect or a `seq` gap; useLogTail follows
 * one frame's log. Both stop their streams on unmount.
 */
import { useCallback, useEffect, useReducer, useRef, useState } from 'react'
import type { ApiClient } from '../../src/api/client.js'
import type { JobSummary } from '../../src/api/types.js'
import { describeError } from '../../src/util/errors.js'
import { sleep } from '../../src/util/abort.js'
import { type DashboardState, initialState, reduce } from './state.js'

export interface UseDaemonOptions {
  now?: () => number
  reconnectMs?: number
}

export interface DaemonHandle {
  state: DashboardState
  /** Load (and from then on keep current) one job's frames. */
  selectJob(jobId: string | undefined): void
  /** Show a job at once (e.g. the one just submitted) before its event arrives. */
  addJob(job: JobSummary): void
}

export function useDaemon(client: ApiClient, o: UseDaemonOptions = {}): DaemonHandle {
  const now = o.now ?? Date.now
  const [state, dispatch] = useReducer(reduce, undefined, () => initialState(now()))
  const selected = useRef<string | undefined>(undefined)

  const loadDetail = useCallback(
    async (signal?: AbortSignal) => {
      const id = selected.current
      if (!id) return
      try {
        const job = await client.job(id, { signal })
        if (selected.current === id) dispatch({ type: 'detail', job })
      } catch {
        // The job may be gone; the jobs list shows that through its own events.
      }
    },
    [client],
  )

  useEffect(() => {
    const controller = new AbortController()
    const { signal } = controller
    const loop = async () => {
      let backoff = o.reconnectMs ?? 500
      while (!signal.aborted) {
        try {
          const it = client.events({ signal })[Symbol.asyncIterator]()
          try {
            const first = await it.next()
            if (first.done) throw new Error('the daemon closed the event stream')
            let seq = first.value.seq
            const snapshot = async () => {
              const [node, peers, jobs] = await Promise.all([
                client.node({ signal }),
                client.peers({ signal }),
                client.jobs({ signal }),
              ])
              dispatch({ type: 'snapshot', node, peers, jobs, now: now() })
              await loadDetail(signal)
            }
            await snapshot()
            backoff = o.reconnectMs ?? 500
            for (;;) {
              const r = await it.next()
              if (r.done) throw new Error('the daemon closed the event stream')
              if (r.value.seq !== seq + 1) await snapshot()
              seq = r.value.seq
              dispatch({ type: 'event', event: r.value, now: now() })
            }
          } finally {
            await it.return?.()
          }
        } catch (err) {
          if (signal.aborted) return
          dispatch({ type: 'disconnected', error: describeError(err) })
        }
        await sleep(backoff, signal).catch(() => {})
        backoff = Math.min(backoff * 2, 5000)
      }
    }
    void loop()
    const tick = setInterval(() => dispatch({ type: 'tick', now: now() }), 1000)
    return () => {
      controller.abort()
      clearInterval(tick)
    }
  }, [client, loadDetail, now, o.reconnectMs])

  const selectJob = useCallback(
    (jobId: string | undefined) => {
      if (selected.current === jobId) return
      selected.current = jobId
      void loadDetail()
    },
    [loadDetail],
  )
  const addJob = useCallback((job: JobSummary) => dispatch({ type: 'job', job, now: now() }), [now])
  return { state, selectJob, addJob }
}

export const LOG_TAIL_LINES = 200

/** Follows a frame's log while `target` is set; the last LOG_TAIL_LINES lines. */
export function useLogTail(
  client: ApiClient,
  target: { jobId: string; frame: number } | undefined,
): string[] {
  const [lines, setLines] = useState<string[]>([])
  const jobId = target?.jobId
  const frame = target?.frame
  useEffect(() => {
    setLines([])
    if (jobId === undefined || frame === undefined) return
    const controller = new AbortController()
    let buffer: string[] = []
    let timer: NodeJS.Timeout | undefined
    // Batch lines: a chatty renderer must not re-render the screen per line.
    const flush = () => {
      timer = undefined
      setLines(buffer)
    }
    const run = async () => {
      try {
        for await (const line of client.followLogs(
          jobId,
          { frame, tail: LOG_TAIL_LINES },
          { signal: controller.signal },
        )) {
          buffer = [...buffer, line].slice(-LOG_TAIL_LINES)
          timer ??= setTimeout(flush, 50)
        }
      } catch (err) {
        if (controller.signal.aborted) return
        buffer = [...buffer, `(log unavailable: ${describeError(err)})`]
        flush()
      }
    }
    void run()
    return () => {
      controller.abort()
      if (timer) clearTimeout(timer)
    }
  }, [client, jobId, frame])
  return lines
}
