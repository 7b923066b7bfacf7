/**
 * The daemon's event bus: every part publishes what changed; each subscriber (an open
 * /v1/events stream) gets its own bounded queue.
 *
 * Invariant: a slow subscriber never slows the daemon or grows its memory without
 * bound: past MAX_QUEUED events its oldest are dropped and the gap shows as a jump in
 * `seq`, which tells the client to refetch its snapshot.
 */
import type { ApiEvent, EventInput } from './types.js'

const MAX_QUEUED = 2_000

export interface EventSubscription extends AsyncIterable<ApiEvent> {
  close(): void
}

export interface EventBus {
  publish(event: EventInput): void
  subscribe(filter?: (e: ApiEvent) => boolean): EventSubscription
  subscribers(): number
}

export function createEventBus(now: () => number = Date.now): EventBus {
  const subs = new Set<{ push(e: ApiEvent): void }>()
  let seq = 0
  return {
    publish(event) {
      const full = { ...event, seq: ++seq, time: now() } as ApiEvent
      for (const s of subs) s.push(full)
    },
    subscribers: () => subs.size,
    subscribe(filter) {
      const queue: ApiEvent[] = []
      let wake: (() => void) | undefined
      let closed = false
      let streamSeq = 0
      const sub = {
        push(e: ApiEvent) {
          if (closed || (filter && !filter(e))) return
          streamSeq++
          if (queue.length >= MAX_QUEUED) {
            queue.shift()
          }
          queue.push({ ...e, seq: streamSeq })
          wake?.()
        },
      }
      subs.add(sub)
      const close = () => {
        closed = true
        subs.delete(sub)
        wake?.()
      }
      return {
        close,
        async *[Symbol.asyncIterator]() {
          try {
            while (!closed) {
              if (queue.length === 0) {
                await new Promise<void>((r) => {
                  wake = r
                })
                wake = undefined
                continue
              }
              yield queue.shift()!
            }
          } finally {
            close()
          }
        },
      }
    },
  }
}
