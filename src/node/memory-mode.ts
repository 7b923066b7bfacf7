/**
 * What V8 favours, by what the node is doing: memory at rest, speed at work.
 *
 * At rest (the lease manager's tick finds no live job) V8 runs in memory saver mode (the
 * mode Chrome gives background tabs): its memory reducer compacts the heap and hands freed
 * pages back, and the heap grows in small steps. A daemon at rest is ~9 MiB smaller for
 * no measurable CPU (it allocates little). Under load the same mode cost up to ~15 % more
 * CPU per chunk (more, smaller collections), so it is off the moment a job entry arrives;
 * leaving rest costs some tens of ms of CPU at the first job (the heap grows back).
 * At rest V8 also drops the bytecode of functions not run since the last full collection
 * (start-up code, the CLI, module bodies: ~2.4 MiB), not after V8's default 6 of them; a
 * function run again is compiled again from its source, lazily, as on first use.
 *
 * Invariants:
 *  - V8 is told only on a change of state (an idempotent, cheap flag write);
 *  - memory only, never behaviour: a flag V8 refuses is logged once and then ignored;
 *  - Node keeps V8's flags writable after start-up (it runs V8 with
 *    --no-freeze-flags-after-init for v8.setFlagsFromString), and V8 reads this one at
 *    each heap decision, so setting it at run time takes effect at the next collection.
 */
import { setFlagsFromString } from 'node:v8'
import { describeError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'

/** What V8 is told at rest, and at work (V8's defaults: no saver, bytecode old at 6 GCs). */
export const MEMORY_SAVER_FLAGS = '--memory-saver-mode --bytecode-old-age=1'
export const SPEED_FLAGS = '--no-memory-saver-mode --bytecode-old-age=6'

export interface MemoryMode {
  /** The node is at rest (true) or at work (false). */
  atRest(rest: boolean): void
  /** What V8 was last told; undefined before the first call. */
  current(): 'memory' | 'speed' | undefined
}

export function createMemoryMode(
  options: { logger?: Logger; setFlags?: (flags: string) => void } = {},
): MemoryMode {
  const setFlags = options.setFlags ?? setFlagsFromString
  let mode: 'memory' | 'speed' | undefined
  let failed = false
  return {
    atRest(rest) {
      const next = rest ? 'memory' : 'speed'
      if (next === mode || failed) return
      try {
        setFlags(rest ? MEMORY_SAVER_FLAGS : SPEED_FLAGS)
        mode = next
      } catch (err) {
        failed = true
        options.logger?.warn('cannot switch V8 memory saver mode; left as is', {
          error: describeError(err),
        })
      }
    },
    current: () => mode,
  }
}
