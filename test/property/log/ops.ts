/**
 * What the log property tests share: random schedules of appends, seals and deliveries
 * between replicas, and playing one out (each write is pooled; a delivery joins a pooled
 * entry's exact bytes at one replica, so duplicates, delay and loss come for free).
 */
import fc from 'fast-check'
import type { LogManager } from '../../../src/log/log.js'
import type { LogEntry, LogId } from '../../../src/log/types.js'

export type LogOp =
  | { t: 'append'; who: number }
  | { t: 'deliver'; to: number; pick: number }
  | { t: 'seal'; who: number }

/** Writers are replicas 0..2; deliveries go to replicas 0..deliverTo. */
export const logOpArb = (o: {
  deliverTo: number
  deliverWeight: number
  sealWeight: number
}): fc.Arbitrary<LogOp> =>
  fc.oneof(
    { weight: 5, arbitrary: fc.record({ t: fc.constant('append' as const), who: fc.nat(2) }) },
    {
      weight: o.deliverWeight,
      arbitrary: fc.record({
        t: fc.constant('deliver' as const),
        to: fc.nat(o.deliverTo),
        pick: fc.nat(),
      }),
    },
    {
      weight: o.sealWeight,
      arbitrary: fc.record({ t: fc.constant('seal' as const), who: fc.nat(2) }),
    },
  )

/** Plays `ops` on the replicas; returns every entry written, in order. */
export async function playOps(
  nodes: readonly { log: LogManager }[],
  log: LogId,
  ops: readonly LogOp[],
  seen: {
    delivered?: (to: number, e: LogEntry) => void
    written?: (who: number, e: LogEntry) => void
  } = {},
): Promise<LogEntry[]> {
  const pool: LogEntry[] = []
  let n = 0
  for (const op of ops) {
    if (op.t === 'deliver') {
      if (pool.length === 0) continue
      const e = pool[op.pick % pool.length]
      seen.delivered?.(op.to, e)
      await nodes[op.to].log.join(e.bytes)
      continue
    }
    const m = nodes[op.who].log
    const e =
      op.t === 'seal' ? await m.seal(log, { n: n++ }) : await m.append(log, 'claim', { n: n++ })
    pool.push(e)
    seen.written?.(op.who, e)
  }
  return pool
}
