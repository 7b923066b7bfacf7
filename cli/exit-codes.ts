/**
 * Exit codes of every rmesh command, stable for scripts (documented in the README and in
 * `rmesh --help`). Errors map to codes by their `code`, never by message text.
 */
import { isRmeshError } from '../src/util/errors.js'

export const EXIT = {
  OK: 0,
  /** The job failed or was canceled, or its outputs are not all in the output folder. */
  JOB_FAILED: 1,
  /**
   * Bad usage or input: unknown flag, missing file, wrong extension, bad frame range, a
   * scene file that is not a .blend, a scene whose files cannot be found.
   */
  USAGE: 2,
  /** No daemon answers on the data directory's socket. */
  DAEMON_NOT_RUNNING: 3,
  /** Unknown job, frame or token. */
  NOT_FOUND: 4,
  /** This node is not admitted, or its token lacks the capability. */
  NOT_ADMITTED: 5,
  /** The request conflicts with the current state (e.g. delete a running job, spent invite). */
  CONFLICT: 6,
  /** The daemon failed, timed out or answered garbage. */
  DAEMON_ERROR: 7,
  /** Interrupted (Ctrl-C); the job, if any, keeps running. */
  INTERRUPTED: 130,
} as const

export type ExitCode = (typeof EXIT)[keyof typeof EXIT]

export const EXIT_CODES_HELP = `Exit codes:
  0  ok
  1  job failed or canceled, or outputs missing
  2  bad usage or input
  3  daemon not running (start one: rmesh daemon)
  4  not found (job, frame, token)
  5  not admitted or not permitted (see rmesh join)
  6  conflicts with the current state
  7  daemon error or timeout
  130 interrupted; the job keeps running`

const BY_CODE: Record<string, ExitCode> = {
  ERR_INVALID_INPUT: EXIT.USAGE,
  ERR_USAGE: EXIT.USAGE,
  ERR_DECODE: EXIT.USAGE,
  ERR_TOO_LARGE: EXIT.USAGE,
  // The scene itself is bad input: not a .blend, or files it uses cannot be found.
  ERR_SCENE_INVALID: EXIT.USAGE,
  ERR_SCENE_MISSING_ASSET: EXIT.USAGE,
  ERR_DAEMON_NOT_RUNNING: EXIT.DAEMON_NOT_RUNNING,
  ERR_NOT_FOUND: EXIT.NOT_FOUND,
  ERR_NOT_ADMITTED: EXIT.NOT_ADMITTED,
  ERR_FORBIDDEN: EXIT.NOT_ADMITTED,
  ERR_SOCKET_PERMISSION: EXIT.NOT_ADMITTED,
  ERR_QUOTA: EXIT.NOT_ADMITTED,
  ERR_CONFLICT: EXIT.CONFLICT,
  ERR_JOB_FAILED: EXIT.JOB_FAILED,
  ERR_INTERRUPTED: EXIT.INTERRUPTED,
}

export function exitCodeFor(err: unknown): ExitCode {
  if (isRmeshError(err)) return BY_CODE[err.code] ?? EXIT.DAEMON_ERROR
  return EXIT.DAEMON_ERROR
}
