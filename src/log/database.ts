/**
 * The node's one LevelDB (every persistent fact: logs, tokens, peers, caches, under key
 * prefixes), opened with a clear error when another daemon holds it.
 *
 * Invariants: one process per data directory (LevelDB's lock); a failure to open is a typed
 * error naming the directory and what to do, never a raw LevelDB error.
 */
import { join } from 'node:path'
import { Level } from 'level'
import { describeError, RmeshError } from '../util/errors.js'

export const DB_DIR = 'db'

export class DataDirLockedError extends RmeshError {
  constructor(dir: string) {
    super(
      'ERR_DAEMON_RUNNING',
      `another rmesh daemon is already using ${dir}; stop it first (or start this one with another --dir)`,
    )
    this.name = 'DataDirLockedError'
  }
}

export async function openDatabase(dataDir: string): Promise<Level<string, unknown>> {
  const db = new Level<string, unknown>(join(dataDir, DB_DIR), { valueEncoding: 'json' })
  try {
    await db.open()
  } catch (err) {
    const e = err as { code?: string; cause?: { code?: string; message?: string } }
    if (
      e.cause?.code === 'LEVEL_LOCKED' ||
      e.code === 'LEVEL_LOCKED' ||
      /lock/i.test(String(e.cause?.message ?? ''))
    )
      throw new DataDirLockedError(dataDir)
    throw new RmeshError(
      'ERR_STORE_OPEN',
      `cannot open the database in ${dataDir}: ${describeError(err)}`,
      { cause: err },
    )
  }
  return db
}
