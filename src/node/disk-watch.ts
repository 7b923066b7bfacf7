/**
 * Free space on the data disk, refreshed every DISK_CHECK_MS: below `minFreeMiB` the node
 * advertises no slots (so it claims nothing new) until space is freed, instead of failing
 * chunk after chunk with ERR_DISK_FULL.
 *
 * Invariants: `onChange` fires only when the low/not-low verdict flips; a failed statfs keeps
 * the last reading (a transient error never pauses a node); the timer never keeps the
 * process alive and is gone after stop().
 */
import { statfs } from 'node:fs/promises'
import type { Logger } from '../util/logger.js'

/** How often the data disk's free space is checked (the low-disk pause reacts this fast). */
export const DISK_CHECK_MS = 5_000

export interface DiskWatch {
  /** Read the disk now (also done every DISK_CHECK_MS once started). */
  refresh(): Promise<void>
  start(): void
  stop(): void
  /** Free bytes at the last reading. */
  freeBytes(): number
  /** Why no new renders are taken, while the disk is nearly full. */
  reason(): string | undefined
}

export function createDiskWatch(options: {
  dataDir: string
  /** 0: no check. */
  minFreeMiB: number
  logger: Logger
  onChange: () => void
  /** Injected for tests; node:fs/promises statfs by default. */
  statfs?: (path: string) => Promise<{ bavail: number | bigint; bsize: number | bigint }>
}): DiskWatch {
  const read = options.statfs ?? statfs
  let free = 0
  let low = false
  let timer: NodeJS.Timeout | undefined
  const refresh = async () => {
    try {
      const st = await read(options.dataDir)
      free = Number(st.bavail) * Number(st.bsize)
    } catch {
      return
    }
    const now = options.minFreeMiB > 0 && free < options.minFreeMiB * 1024 * 1024
    if (now === low) return
    low = now
    const freeMiB = Math.floor(free / 1024 / 1024)
    if (now)
      options.logger.warn('data disk nearly full: taking no new renders until space is freed', {
        freeMiB,
        minFreeDiskMiB: options.minFreeMiB,
        dataDir: options.dataDir,
      })
    else options.logger.info('data disk has room again: taking renders', { freeMiB })
    options.onChange()
  }
  return {
    refresh,
    start() {
      timer ??= setInterval(() => void refresh(), DISK_CHECK_MS)
      timer.unref()
    },
    stop() {
      if (timer) clearInterval(timer)
      timer = undefined
    },
    freeBytes: () => free,
    reason: () =>
      low
        ? `less than ${options.minFreeMiB} MiB free on the data disk (${options.dataDir}): free space, or lower --min-free-disk`
        : undefined,
  }
}
