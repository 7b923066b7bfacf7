/**
 * Running an external program for an engine: argv only (no shell), its own process group
 * so the whole tree can be killed, every output line to a log file and to a callback,
 * cancel and timeout that leave no process behind.
 *
 * Invariants:
 *  - `kill()` sends SIGTERM to the process group, then SIGKILL after `killGraceMs`
 *    (default 400 ms), so the tree is gone within about half a second.
 *  - The returned promise settles only after the child has exited and the log is flushed.
 *  - Children still alive when Node exits are killed (a render must not outlive its node).
 *  - A child that cannot be started, or whose pipes fail, is an outcome (`spawnError`),
 *    never an unhandled 'error' event.
 *
 * Plain node:child_process, not execa: execa's ~110 modules stayed loaded in every daemon
 * (~1.5 MiB of heap at rest) for the one `spawn` with pipes this module needs.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { constants, createWriteStream, type WriteStream } from 'node:fs'
import { access, stat } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import { type ProcessLimits, withLimits } from './limits.js'

const live = new Set<number>()
let exitHookInstalled = false

/** Process groups of the engine processes running now (their leaders' pids). */
export function liveProcessGroups(): ReadonlySet<number> {
  return live
}

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const pid of live) killGroup(pid, 'SIGKILL')
  })
}

function killGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig)
  } catch {
    try {
      process.kill(pid, sig)
    } catch {
      // already gone
    }
  }
}

export interface RunOptions {
  file: string
  args: string[]
  cwd?: string
  env?: Record<string, string>
  signal?: AbortSignal
  timeoutMs?: number
  /** Append every output line here. */
  logPath?: string
  onLine?(line: string, stream: 'stdout' | 'stderr'): void
  onSpawn?(pid: number): void
  /** Keep stdin open as a pipe (persistent servers); otherwise it is closed. */
  stdin?: boolean
  killGraceMs?: number
  /** Niceness and memory ceiling (limits.ts); what cannot be applied goes to `onSkipped`. */
  limits?: ProcessLimits
  onSkipped?(what: string[]): void
}

export interface RunOutcome {
  exitCode: number | undefined
  signal: string | undefined
  canceled: boolean
  timedOut: boolean
  /** The process could not be started at all (ENOENT, EACCES). */
  spawnError?: Error
  /** The last lines of output, for error messages. */
  tail: string[]
  ms: number
}

export interface RunningProcess {
  pid: number | undefined
  /** Write to stdin (only when started with `stdin: true`). */
  write(text: string): void
  kill(): void
  done: Promise<RunOutcome>
}

const TAIL_LINES = 30

/** Split a byte stream into lines on \n and \r (Blender rewrites progress lines with \r). */
export function lineSplitter(onLine: (line: string) => void): {
  push(chunk: string): void
  end(): void
} {
  let buf = ''
  return {
    push(chunk) {
      buf += chunk
      const parts = buf.split(/\r\n|\n|\r/)
      buf = parts.pop() ?? ''
      for (const p of parts) if (p.length > 0) onLine(p)
    },
    end() {
      if (buf.length > 0) onLine(buf)
      buf = ''
    },
  }
}

export function startProcess(opts: RunOptions): RunningProcess {
  installExitHook()
  const started = performance.now()
  const tail: string[] = []
  let log: WriteStream | undefined
  if (opts.logPath) {
    const stream = createWriteStream(opts.logPath, { flags: 'a' })
    // A log that cannot be written (a full disk, a removed folder) must not take the
    // daemon down with an unhandled stream error: the process runs on, its log stops.
    stream.on('error', () => {
      if (log === stream) log = undefined
      stream.destroy()
    })
    log = stream
  }
  let canceled = false
  let timedOut = false
  let child: ChildProcess | undefined
  let spawnError: Error | undefined
  const launch = withLimits(opts.file, opts.args, opts.limits)
  if (launch.skipped.length) opts.onSkipped?.(launch.skipped)
  try {
    child = spawn(launch.file, launch.args, {
      cwd: opts.cwd,
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
      detached: true,
      stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    })
  } catch (err) {
    spawnError = err as Error
  }
  // Settles once the child has exited and its pipes are drained ('close'), or at once when
  // it never started ('error' with no pid: ENOENT, EACCES, a missing cwd).
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (!child) return resolve({ code: null, signal: null })
    const c = child
    // A child that never started still closes (its code a negative errno): no exit code.
    c.once('close', (code, signal) => resolve({ code: c.pid === undefined ? null : code, signal }))
    child.on('error', (err) => {
      if (child?.pid === undefined) {
        spawnError ??= err
        resolve({ code: null, signal: null })
      }
    })
  })
  // A child gone before it read its stdin (EPIPE) must not crash the daemon.
  child?.stdin?.on('error', () => undefined)
  child?.stdout?.setEncoding('utf8')
  child?.stderr?.setEncoding('utf8')
  const pid = child?.pid
  if (pid !== undefined) {
    live.add(pid)
    opts.onSpawn?.(pid)
  }
  let killTimer: NodeJS.Timeout | undefined
  let exited = false
  let killRequested = false
  const kill = () => {
    if (pid === undefined || exited) return
    killRequested = true
    killGroup(pid, 'SIGTERM')
    killTimer ??= setTimeout(() => {
      // SIGKILL the group even if the leader has exited: grandchildren may linger.
      killGroup(pid, 'SIGKILL')
    }, opts.killGraceMs ?? 400)
  }
  const onAbort = () => {
    canceled = true
    kill()
  }
  if (opts.signal?.aborted) onAbort()
  else opts.signal?.addEventListener('abort', onAbort, { once: true })
  const timeout =
    opts.timeoutMs !== undefined && opts.timeoutMs > 0
      ? setTimeout(() => {
          timedOut = true
          kill()
        }, opts.timeoutMs)
      : undefined

  const handle = (stream: 'stdout' | 'stderr') => (line: string) => {
    log?.write(`${line}\n`)
    tail.push(line)
    if (tail.length > TAIL_LINES) tail.shift()
    try {
      opts.onLine?.(line, stream)
    } catch {
      // a callback bug must not break the process plumbing
    }
  }
  const splitters = {
    stdout: lineSplitter(handle('stdout')),
    stderr: lineSplitter(handle('stderr')),
  }
  child?.stdout?.on('data', (d: string | Buffer) => splitters.stdout.push(String(d)))
  child?.stderr?.on('data', (d: string | Buffer) => splitters.stderr.push(String(d)))

  const done = (async (): Promise<RunOutcome> => {
    const r = await ended
    const exitCode = r.code ?? undefined
    const signal = r.signal ?? undefined
    exited = true
    splitters.stdout.end()
    splitters.stderr.end()
    if (pid !== undefined) {
      // After a kill, make sure nothing else of the group survives the leader. Only then:
      // once reaped, the pid may be reused, and we only ever signal what we started.
      if (killRequested) killGroup(pid, 'SIGKILL')
      live.delete(pid)
    }
    if (killTimer) clearTimeout(killTimer)
    if (timeout) clearTimeout(timeout)
    opts.signal?.removeEventListener('abort', onAbort)
    if (log) {
      const l = log
      await new Promise<void>((resolve) => {
        l.once('close', resolve)
        l.end()
      })
    }
    return {
      exitCode,
      signal,
      canceled,
      timedOut,
      spawnError,
      tail: [...tail],
      ms: performance.now() - started,
    }
  })()

  return {
    pid,
    write(text) {
      child?.stdin?.write(text)
    },
    kill: () => {
      canceled = true
      kill()
    },
    done,
  }
}

/** Run to completion and collect stdout (for `--version`, `-encoders`, ffprobe). */
export async function runCapture(
  file: string,
  args: string[],
  options: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<{ stdout: string; outcome: RunOutcome }> {
  const lines: string[] = []
  const p = startProcess({
    file,
    args,
    signal: options.signal,
    timeoutMs: options.timeoutMs ?? 20_000,
    onLine: (l, s) => {
      if (s === 'stdout') lines.push(l)
    },
  })
  const outcome = await p.done
  return { stdout: lines.join('\n'), outcome }
}

export async function isExecutable(p: string): Promise<boolean> {
  try {
    const st = await stat(p)
    if (!st.isFile()) return false
    await access(p, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** Every executable named `name` on PATH, in PATH order. */
export async function findOnPath(
  name: string,
  pathEnv = process.env.PATH ?? '',
): Promise<string[]> {
  const found: string[] = []
  for (const dir of pathEnv.split(delimiter)) {
    if (!dir) continue
    const p = join(dir, name)
    if (await isExecutable(p)) found.push(p)
  }
  return found
}
