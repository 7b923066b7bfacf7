/**
 * Structured logs: one JSON object per line to a file in the data directory, and a
 * human line to stderr at or above the configured level. Components get a child
 * logger with their name; they never print directly.
 */
import { createWriteStream, type WriteStream } from 'node:fs'

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent'
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 }

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void
  info(msg: string, fields?: Record<string, unknown>): void
  warn(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
  child(component: string): Logger
}

export function isLogLevel(x: unknown): x is LogLevel {
  return typeof x === 'string' && x in ORDER
}

export interface LoggerOptions {
  level?: LogLevel
  file?: string
  stderr?: boolean
}

export function createLogger(options: LoggerOptions = {}, component = 'rmesh'): Logger {
  const level = options.level ?? 'info'
  const file: WriteStream | undefined = options.file
    ? createWriteStream(options.file, { flags: 'a' })
    : undefined
  const toStderr = options.stderr ?? true
  const make = (comp: string): Logger => {
    const write = (
      lvl: Exclude<LogLevel, 'silent'>,
      msg: string,
      fields?: Record<string, unknown>,
    ) => {
      const record = { t: new Date().toISOString(), level: lvl, component: comp, msg, ...fields }
      // The file keeps everything at debug and above when it exists, so a support
      // request can attach it; stderr is for the person watching.
      file?.write(`${safeJson(record)}\n`)
      if (toStderr && ORDER[lvl] >= ORDER[level]) {
        const extra = fields && Object.keys(fields).length ? ` ${safeJson(fields)}` : ''
        process.stderr.write(`${record.t} ${lvl.padEnd(5)} [${comp}] ${msg}${extra}\n`)
      }
    }
    return {
      debug: (m, f) => write('debug', m, f),
      info: (m, f) => write('info', m, f),
      warn: (m, f) => write('warn', m, f),
      error: (m, f) => write('error', m, f),
      child: (c) => make(`${comp}:${c}`),
    }
  }
  return make(component)
}

/** A logger that drops everything, for tests. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger
  },
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x) =>
      typeof x === 'bigint'
        ? x.toString()
        : x instanceof Uint8Array
          ? `<${x.byteLength} bytes>`
          : x,
    )
  } catch {
    return '"<unserialisable>"'
  }
}
