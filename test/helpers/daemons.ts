/**
 * Test harness: real `rmesh daemon` processes (spawned by cli/local-mesh.ts, the same code
 * the demo uses) on 127.0.0.1 with mDNS off, each with its own temporary data directory,
 * driven through their control sockets like the CLI does. Used by integration tests,
 * e2e tests and the benchmarks.
 */
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { admitDirs, type SpawnOptions, spawnDaemon, stopChild } from '../../cli/local-mesh.js'
import { packageRoot } from '../../src/version.js'

export const REPO_ROOT = packageRoot()
export const RMESH_BIN = join(REPO_ROOT, 'bin', 'rmesh.js')
/** What Debian's Blender 3.4.1 reports on a machine without a GPU (devicesScript's output). */
export const CPU_ONLY_REPORT = JSON.stringify({ blender: '3.4.1', devices: [] })

export interface DaemonProc {
  dir: string
  socket: string
  proc: ChildProcess
  /** The last lines the daemon wrote to stderr. */
  stderr: string[]
  options: SpawnOptions
  peerId: string
  addresses: string[]
}

export async function makeTempDir(prefix = 'rmesh-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix))
}

/** GET/POST JSON over the daemon's Unix socket. */
export function apiCall<T = unknown>(
  socket: string,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 10_000,
): Promise<{ status: number; body: T }> {
  return new Promise((resolvePromise, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body)
    const req = request(
      {
        socketPath: socket,
        method,
        path,
        headers: data
          ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) }
          : {},
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let parsed: unknown = text
          try {
            parsed = JSON.parse(text)
          } catch {}
          resolvePromise({ status: res.statusCode ?? 0, body: parsed as T })
        })
      },
    )
    req.on('timeout', () => req.destroy(new Error(`api ${method} ${path} timed out`)))
    req.on('error', reject)
    if (data) req.write(data)
    req.end()
  })
}

export async function waitFor<T>(
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs: number,
  what: string,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastErr: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) {
      lastErr = err
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`,
      )
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

export interface StartOptions extends Partial<SpawnOptions> {
  /** Test engine on (default true: fast, deterministic renders). */
  testEngine?: boolean
  /** startMesh: use these (existing, empty) data directories instead of fresh temp ones. */
  dirs?: string[]
}

export async function startDaemonProc(options: StartOptions = {}): Promise<DaemonProc> {
  const dir = options.dir ?? (await makeTempDir())
  const extraArgs = [...(options.extraArgs ?? [])]
  if (options.testEngine !== false && !extraArgs.includes('--test-engine'))
    extraArgs.push('--test-engine')
  // Device detection costs a Blender start per daemon: test daemons take the CPU-only report
  // recorded on this machine (the test hook), unless a test sets its own ('' runs the real one).
  const env = { RMESH_TEST_BLENDER_DEVICES: CPU_ONLY_REPORT, ...options.env }
  const spawnOptions: SpawnOptions = { ...options, dir, extraArgs, env }
  const node = await spawnDaemon(spawnOptions)
  return {
    dir,
    socket: node.socketPath,
    proc: node.proc,
    stderr: node.stderrTail,
    options: spawnOptions,
    peerId: node.peerId,
    addresses: node.addresses,
  }
}

/** Start `count` admitted daemons: the first owns a fresh mesh, the others bootstrap to it. */
export async function startMesh(count: number, options: StartOptions = {}): Promise<DaemonProc[]> {
  const dirs =
    options.dirs ?? (await Promise.all(Array.from({ length: count }, () => makeTempDir())))
  await admitDirs(dirs)
  const first = await startDaemonProc({ ...options, dir: dirs[0], name: 'node1' })
  const boot = first.addresses.filter((a) => a.includes('/ip4/127.0.0.1/'))
  const rest = await Promise.all(
    dirs
      .slice(1)
      .map((dir, i) => startDaemonProc({ ...options, dir, bootstrap: boot, name: `node${i + 2}` })),
  )
  return [first, ...rest]
}

export async function restartDaemonProc(d: DaemonProc): Promise<DaemonProc> {
  return startDaemonProc({ ...d.options, extraArgs: d.options.extraArgs })
}

export async function stopDaemonProc(
  d: DaemonProc,
  signal: NodeJS.Signals = 'SIGTERM',
  timeoutMs = 10_000,
): Promise<number | null> {
  if (d.proc.exitCode !== null || d.proc.signalCode !== null) return d.proc.exitCode
  if (signal === 'SIGTERM') {
    await stopChild(d.proc, timeoutMs)
    return d.proc.exitCode
  }
  const exited = new Promise<number | null>((r) => d.proc.once('exit', (code) => r(code)))
  d.proc.kill(signal)
  return exited
}

export async function nodeInfo(d: DaemonProc): Promise<{ peerId: string; addresses: string[] }> {
  const r = await apiCall<{ peerId: string; addresses: string[] }>(d.socket, 'GET', '/v1/node')
  if (r.status !== 200) throw new Error(`node info: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
}
