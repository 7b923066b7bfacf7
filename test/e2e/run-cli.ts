/**
 * Runs the built `rmesh` command (bin/rmesh.js → dist/) as a child process, the way a user
 * or a script does: real argv, real exit code, stdout and stderr captured apart.
 *
 * Invariants: never throws on a non-zero exit (the code is the result); a run that outlives
 * its timeout is killed and reported with code null, so a hung command fails its test
 * instead of the suite. NO_COLOR is set: assertions read plain text.
 */
import { execFile } from 'node:child_process'
import { RMESH_BIN } from '../helpers/daemons.js'

export interface CliRun {
  code: number | null
  stdout: string
  stderr: string
  ms: number
}

export interface CliRunOptions {
  cwd?: string
  timeoutMs?: number
  env?: Record<string, string>
}

/** `rmesh <args…>`; pass `--dir` inside args where the test wants it. */
export function rmesh(args: readonly string[], o: CliRunOptions = {}): Promise<CliRun> {
  const started = Date.now()
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [RMESH_BIN, ...args],
      {
        cwd: o.cwd,
        timeout: o.timeoutMs ?? 30_000,
        killSignal: 'SIGKILL',
        maxBuffer: 16 * 1024 * 1024,
        env: { ...process.env, NO_COLOR: '1', RMESH_DIR: '', ...o.env },
      },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: unknown; killed?: boolean }) | null
        const code = !e ? 0 : e.killed ? null : typeof e.code === 'number' ? e.code : null
        resolve({ code, stdout, stderr, ms: Date.now() - started })
      },
    )
  })
}

/** `rmesh --dir <dir> <args…>`. */
export function rmeshIn(dir: string, args: readonly string[], o: CliRunOptions = {}) {
  return rmesh(['--dir', dir, ...args], o)
}

/** Parses stdout as JSON, with the whole run in the error when it is not. */
export function json<T = unknown>(r: CliRun): T {
  try {
    return JSON.parse(r.stdout) as T
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout}\nstderr: ${r.stderr}`)
  }
}

/** The names of the entries of a ZIP file, from its central directory. */
export function zipEntryNames(zip: Buffer): string[] {
  // End of central directory: signature, then (at +10) entry count, (at +16) offset.
  let eocd = -1
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 65_535); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i
      break
    }
  }
  if (eocd < 0) throw new Error('not a ZIP file: no end of central directory')
  const count = zip.readUInt16LE(eocd + 10)
  let p = zip.readUInt32LE(eocd + 16)
  const names: string[] = []
  for (let i = 0; i < count; i++) {
    if (zip.readUInt32LE(p) !== 0x02014b50) throw new Error(`bad central directory entry ${i}`)
    const nameLen = zip.readUInt16LE(p + 28)
    const extraLen = zip.readUInt16LE(p + 30)
    const commentLen = zip.readUInt16LE(p + 32)
    names.push(zip.subarray(p + 46, p + 46 + nameLen).toString('utf8'))
    p += 46 + nameLen + extraLen + commentLen
  }
  return names
}
