/**
 * The lease manager's task table: the chunks this node is claiming, holds, renders or
 * stores, one task per (job, chunk), shared by the pass (lease-pass.ts) and the renders
 * (lease-render.ts).
 *
 * Invariants:
 *  - at most one task per (job, chunk); a task is current while the table maps its key to
 *    that very object: a task removed (aborted, settled, lost) and its stale callbacks never
 *    touch a newer task of the same chunk;
 *  - phases: 'claiming' (its claim is being written: not held, not in heartbeats, not
 *    judged by a pass) → 'queued' (held, waiting for a render slot) → 'running' (takes a
 *    render slot) → 'storing' (its engine finished, outputs being stored: takes neither a
 *    render slot nor a claim slot, but is held);
 *  - removing a task through `abort` also aborts its controller, so its render stops;
 *  - a lease in `finishing` (its complete, fail or release entry is being written after its
 *    task left the table) is never released as "not running".
 *  Pure bookkeeping: no clock, no I/O.
 */
import { AbortedError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'
import type { JobFolds } from './job-folds.js'
import type { LeaseStats, NodeCapabilities } from './lease-types.js'
import { keyOf, leaseKey } from './lease-types.js'
import type { ChunkRunner } from './runner.js'

export interface Task {
  jobId: string
  chunk: number
  attempt: number
  phase: 'claiming' | 'queued' | 'running' | 'storing'
  claimedAt: number
  /** Monotonic ms when its render started. */
  renderStartedAt?: number
  /** Monotonic ms when its engine finished and storing began. */
  storingSince?: number
  controller: AbortController
}

/** What the tasks take at one moment (claim room is judged from it). */
export interface TaskCounts {
  storing: number
  /** Tasks claiming or running (not queued, not storing). */
  rendering: number
  /** Tasks holding a claim slot: every task but the storing ones. */
  held: number
}

/** What the lease pass and the renders both work with (lease-manager.ts builds it once). */
export interface LeaseCoreDeps {
  tasks: TaskTable
  jobs: JobFolds
  runner: ChunkRunner
  stats: LeaseStats
  logger: Logger
  now(): number
  capabilities(): NodeCapabilities
  /** Append an entry to a job's log and fold it; undefined when it could not be written. */
  append(jobId: string, kind: string, body: unknown): Promise<unknown>
}

export interface TaskTable {
  get(jobId: string, chunk: number): Task | undefined
  has(jobId: string, chunk: number): boolean
  add(task: Task): void
  /** Whether `task` is still the table's task for its chunk. */
  isCurrent(task: Task): boolean
  /** Remove `task` (if current). */
  remove(task: Task): void
  /** Remove `task` and abort its render with `why`. */
  abort(task: Task, why: string): void
  values(): IterableIterator<Task>
  readonly size: number
  counts(): TaskCounts
  /** Tasks in 'running'. */
  running(): number
  /** Queued tasks, oldest claim first (the order they start in). */
  queued(): Task[]
  /** Tasks whose lease this node holds (heartbeats list them): all but 'claiming'. */
  held(): Task[]
  beginFinish(task: Task): void
  endFinish(task: Task): void
  isFinishing(jobId: string, chunk: number, attempt: number): boolean
}

export function createTaskTable(self: string): TaskTable {
  const tasks = new Map<string, Task>()
  /** Leases whose render ended and whose complete/fail/release entry is being written. */
  const finishing = new Set<string>()
  const finKey = (task: Task) => leaseKey(task.jobId, task.chunk, task.attempt, self)

  return {
    get: (jobId, chunk) => tasks.get(keyOf(jobId, chunk)),
    has: (jobId, chunk) => tasks.has(keyOf(jobId, chunk)),
    add(task) {
      tasks.set(keyOf(task.jobId, task.chunk), task)
    },
    isCurrent: (task) => tasks.get(keyOf(task.jobId, task.chunk)) === task,
    remove(task) {
      const key = keyOf(task.jobId, task.chunk)
      if (tasks.get(key) === task) tasks.delete(key)
    },
    abort(task, why) {
      const key = keyOf(task.jobId, task.chunk)
      if (tasks.get(key) === task) tasks.delete(key)
      task.controller.abort(new AbortedError(why))
    },
    values: () => tasks.values(),
    get size() {
      return tasks.size
    },
    counts() {
      let storing = 0
      let rendering = 0
      for (const x of tasks.values()) {
        if (x.phase === 'storing') storing++
        else if (x.phase !== 'queued') rendering++
      }
      return { storing, rendering, held: tasks.size - storing }
    },
    running() {
      let n = 0
      for (const x of tasks.values()) if (x.phase === 'running') n++
      return n
    },
    queued: () =>
      [...tasks.values()]
        .filter((x) => x.phase === 'queued')
        .sort((a, b) => a.claimedAt - b.claimedAt),
    held: () => [...tasks.values()].filter((x) => x.phase !== 'claiming'),
    beginFinish(task) {
      finishing.add(finKey(task))
    },
    endFinish(task) {
      finishing.delete(finKey(task))
    },
    isFinishing: (jobId, chunk, attempt) => finishing.has(leaseKey(jobId, chunk, attempt, self)),
  }
}
