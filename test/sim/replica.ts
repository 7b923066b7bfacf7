/**
 * One simulated node's replica of the job logs: assigns Lamport clocks, folds every entry
 * with the real reducer and checks the safety invariants on every add (at most one holder
 * per chunk, done never reverts except by the submitter's reject of that exact attempt,
 * test/helpers/job-invariants.ts); a violation is reported to the mesh with the seed.
 */
import { AbortedError } from '../../src/util/errors.js'
import type { EntryId, LogEntry, LogId, PeerIdString } from '../../src/log/types.js'
import { jobIdOfLog } from '../../src/log/types.js'
import type { JobLogView } from '../../src/jobs/lease-manager.js'
import { JobFold } from '../../src/jobs/reducer.js'
import { illegalDoneRevert } from '../helpers/job-invariants.js'
import type { SimNode } from './mesh.js'

/** One node's replica of the logs: assigns Lamport clocks, checks invariants on every add. */
export class Replica implements JobLogView {
  readonly logs = new Map<string, Map<string, LogEntry>>()
  readonly folds = new Map<string, JobFold>()
  private readonly doneSeen = new Map<string, Map<number, PeerIdString>>()
  private listeners = new Set<(e: LogEntry) => void>()
  private seq = 0

  constructor(private readonly node: SimNode) {}

  has(id: string): boolean {
    for (const m of this.logs.values()) if (m.has(id)) return true
    return false
  }

  allEntries(): LogEntry[] {
    const out: LogEntry[] = []
    for (const m of this.logs.values()) out.push(...m.values())
    return out
  }

  async append(log: LogId, kind: string, body: unknown): Promise<LogEntry> {
    if (!this.node.alive) throw new AbortedError('append on a dead node')
    const m = this.logs.get(log)
    let clock = 1
    if (m) for (const e of m.values()) clock = Math.max(clock, e.clock + 1)
    const entry: LogEntry = Object.freeze({
      id: `e${String(++this.seq).padStart(6, '0')}-${this.node.id}` as EntryId,
      v: 1,
      log,
      kind,
      body: structuredClone(body),
      clock,
      author: this.node.id,
      wall: this.node.clock.wall(),
      next: [],
      tok: '',
      bytes: new Uint8Array(),
    })
    this.add(entry)
    this.node.mesh.gossip(this.node, entry)
    return entry
  }

  entries(log: LogId): readonly LogEntry[] {
    return [...(this.logs.get(log)?.values() ?? [])]
  }
  jobLogs(): readonly LogId[] {
    return [...this.logs.keys()] as LogId[]
  }
  onEntry(listener: (e: LogEntry) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }
  resetListeners(): void {
    this.listeners = new Set()
  }

  add(entry: LogEntry): boolean {
    let m = this.logs.get(entry.log)
    if (!m) {
      m = new Map()
      this.logs.set(entry.log, m)
    }
    if (m.has(entry.id)) return false
    m.set(entry.id, entry)
    // A restarted node's sequence must not reuse ids it wrote before.
    if (entry.author === this.node.id) this.seq = Math.max(this.seq, Number(entry.id.slice(1, 7)))
    this.check(entry)
    if (this.node.alive) for (const l of [...this.listeners]) l(entry)
    return true
  }

  private check(entry: LogEntry): void {
    const jobId = jobIdOfLog(entry.log)!
    let fold = this.folds.get(jobId)
    if (!fold) {
      fold = new JobFold()
      this.folds.set(jobId, fold)
    }
    fold.add(entry)
    const s = fold.state
    if (!s) return
    let done = this.doneSeen.get(jobId)
    if (!done) {
      done = new Map()
      this.doneSeen.set(jobId, done)
    }
    for (const c of s.chunks) {
      if ((c.state === 'claimed') !== (c.holder !== undefined)) {
        this.node.mesh.violation(`${this.node.id}: chunk ${c.index} holder/state mismatch`)
      }
      const was = done.get(c.index)
      if (was !== undefined) {
        if (c.state !== 'done') {
          // Only the submitter's reject of the exact attempt that made it done reopens it.
          const why = illegalDoneRevert(fold.entries)
          if (why)
            this.node.mesh.violation(`${this.node.id}: done chunk ${c.index} reverted: ${why}`)
          done.delete(c.index)
        }
        // A concurrent complete that sorts first may replace the outputs (both are valid
        // stored renders); count it, it is part of the duplicate cost.
        else if (c.completedBy !== was) {
          done.set(c.index, c.completedBy!)
          this.node.mesh.outputSwitches++
        }
      } else if (c.state === 'done') {
        done.set(c.index, c.completedBy!)
      }
    }
  }
}
