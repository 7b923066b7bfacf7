/**
 * What a command receives: the resolved data directory, output streams, colours, a lazily
 * created API client, prompts and interrupt hooks. Everything from the process (argv, env,
 * streams, signals, the client) is injected, so commands run in-process in tests.
 *
 * Invariant: commands never call process.exit or write to process streams directly; they
 * return an exit code or throw a typed error that exitCodeFor() maps.
 */
import { join } from 'node:path'
import { createInterface } from 'node:readline/promises'
import { type ApiClient, createApiClient } from '../src/api/client.js'
import { SOCKET_FILE } from '../src/api/types.js'
import { RmeshError } from '../src/util/errors.js'
import { type Colors, createColors } from './format.js'

export interface Output {
  write(s: string): unknown
  isTTY?: boolean
  columns?: number
  rows?: number
}

/** The process-facing dependencies of the CLI; tests replace any of them. */
export interface CliDeps {
  stdout: Output
  stderr: Output
  stdin: NodeJS.ReadableStream & { isTTY?: boolean }
  env: Record<string, string | undefined>
  cwd: string
  home: string
  platform: NodeJS.Platform
  createClient: (socketPath: string) => ApiClient
  /** Subscribe to SIGINT; returns the unsubscribe function. */
  onInterrupt: (handler: () => void) => () => void
  now: () => number
}

export interface CliContext {
  readonly dataDir: string
  readonly socketPath: string
  readonly stdout: Output
  readonly stderr: Output
  readonly stdin: CliDeps['stdin']
  readonly env: Record<string, string | undefined>
  readonly cwd: string
  readonly color: Colors
  /** stdout and stdin are terminals: live progress and prompts are allowed. */
  readonly interactive: boolean
  client(): ApiClient
  /** Ask a question on the terminal; undefined when not interactive. */
  prompt(question: string): Promise<string | undefined>
  onInterrupt(handler: () => void): () => void
  now(): number
  /** Write a line to stdout. */
  print(line?: string): void
  /** Write a line to stderr. */
  warn(line: string): void
}

export function defaultDeps(): CliDeps {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    cwd: process.cwd(),
    home: process.env.HOME ?? '',
    platform: process.platform,
    createClient: (socketPath) => createApiClient({ socketPath }),
    onInterrupt: (handler) => {
      process.on('SIGINT', handler)
      return () => process.off('SIGINT', handler)
    },
    now: () => Date.now(),
  }
}

export function createContext(
  deps: CliDeps,
  dataDir: string,
  colorFlag: boolean | undefined,
): CliContext {
  const noColorEnv = deps.env.NO_COLOR !== undefined && deps.env.NO_COLOR !== ''
  const color = createColors(colorFlag ?? (!noColorEnv && deps.stdout.isTTY === true))
  const interactive = deps.stdout.isTTY === true && deps.stdin.isTTY === true
  const socketPath = join(dataDir, SOCKET_FILE)
  let client: ApiClient | undefined
  return {
    dataDir,
    socketPath,
    stdout: deps.stdout,
    stderr: deps.stderr,
    stdin: deps.stdin,
    env: deps.env,
    cwd: deps.cwd,
    color,
    interactive,
    client: () => {
      client ??= deps.createClient(socketPath)
      return client
    },
    prompt: async (question) => {
      if (!interactive) return undefined
      const rl = createInterface({
        input: deps.stdin,
        output: deps.stdout as NodeJS.WritableStream,
        terminal: true,
      })
      try {
        return await rl.question(question)
      } finally {
        rl.close()
      }
    },
    onInterrupt: deps.onInterrupt,
    now: deps.now,
    print: (line = '') => deps.stdout.write(`${line}\n`),
    warn: (line) => deps.stderr.write(`${line}\n`),
  }
}

/** Bad usage found by a command itself (commander reports its own as exit code 2 too). */
export class UsageError extends RmeshError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('ERR_USAGE', message, { details })
    this.name = 'UsageError'
  }
}

export function printJson(ctx: CliContext, value: unknown): void {
  ctx.print(JSON.stringify(value, null, 2))
}
