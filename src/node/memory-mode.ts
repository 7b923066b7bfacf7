/**
 * What V8 favours, by what the node is doing: memory at rest, speed at work.
 *
 * At rest (the lease manager's tick finds no live job) V8 runs in memory saver mode (the
 * mode Chrome gives background tabs): its memory reducer compacts the heap and hands freed
 * pages back, and the heap grows in small steps. A daemon at rest is ~9 MiB smaller for
 * no measurable CPU (it allocates little). Under load the same mode cost up to ~15 % more
 * CPU per chunk (more, smaller collections), so it is off the moment a job entry arrives;
 * leaving rest costs some tens of ms of CPU at the first job (the heap grows back).
 * Flushing bytecode at rest as well (--bytecode-old-age=1) took ~2 MiB more but made the
 * first job after a rest finish ~250 ms later in 3 of 4 tries (recompiling): not done.
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

export const MEMORY_SAVER_FLAG = '--memory-saver-mode'
export const NO_MEMORY_SAVER_FLAG = '--no-memory-saver-mode'

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
        setFlags(rest ? MEMORY_SAVER_FLAG : NO_MEMORY_SAVER_FLAG)
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
