/**
 * Test harness: real `rmesh daemon` processes on 127.0.0.1 (mDNS off), each with its own
 * temporary data directory, driven through their control sockets like the CLI does.
 * Used by integration tests, e2e tests and the benchmarks.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

export const REPO_ROOT = resolve(import.meta.dirname, '..', '..', ...(import.meta.dirname.includes('/dist/') ? ['..'] : []))
export const RMESH_BIN = join(REPO_ROOT, 'bin', 'rmesh.js')

export interface DaemonProc {
  dir: string
  socket: string
  proc: ChildProcess
  stderr: string[]
  args: string[]
  env: Record<string, string>
}

export async function makeTempDir(prefix = 'rmesh-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix))
}

/** GET/POST JSON over the daemon's Unix socket. */
export function apiCall<T = unknown>(socket: string, method: string, path: string, body?: unknown, timeoutMs = 10_000): Promise<{ status: number; body: T }> {
  return new Promise((resolvePromise, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body)
    const req = request({ socketPath: socket, method, path, headers: data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}, timeout: timeoutMs }, (res) => {
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
    })
    req.on('timeout', () => req.destroy(new Error(`api ${method} ${path} timed out`)))
    req.on('error', reject)
    if (data) req.write(data)
    req.end()
  })
}

export async function waitFor<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, what: string, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastErr: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) {
      lastErr = err
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`)
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

export interface StartOptions {
  dir?: string
  bootstrap?: string[]
  extraArgs?: string[]
  env?: Record<string, string>
  /** Wait until the control socket answers (default true). */
  wait?: boolean
}

export async function startDaemonProc(options: StartOptions = {}): Promise<DaemonProc> {
  const dir = options.dir ?? (await makeTempDir())
  const args = [RMESH_BIN, 'daemon', '--dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--log-level', 'warn']
  for (const b of options.bootstrap ?? []) args.push('--bootstrap', b)
  args.push(...(options.extraArgs ?? []))
  const env = { ...options.env }
  const proc = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const stderr: string[] = []
  proc.stderr?.on('data', (c) => {
    stderr.push(String(c))
    if (stderr.length > 200) stderr.shift()
  })
  proc.stdout?.on('data', () => {})
  const d: DaemonProc = { dir, socket: join(dir, 'rmesh.sock'), proc, stderr, args, env }
  if (options.wait !== false) {
    await waitFor(
      async () => {
        if (proc.exitCode !== null) throw new Error(`daemon exited with ${proc.exitCode}: ${stderr.join('')}`)
        if (!existsSync(d.socket)) return false
        return (await apiCall(d.socket, 'GET', '/v1/node', undefined, 2_000)).status === 200
      },
      20_000,
      `daemon in ${dir} to answer`,
    )
  }
  return d
}

export async function restartDaemonProc(d: DaemonProc): Promise<DaemonProc> {
  const bootstrap: string[] = []
  for (let i = 0; i < d.args.length; i++) if (d.args[i] === '--bootstrap') bootstrap.push(d.args[i + 1])
  const extraArgs = d.args.slice(d.args.indexOf('warn') + 1).filter((a, i, all) => a !== '--bootstrap' && all[i - 1] !== '--bootstrap')
  return startDaemonProc({ dir: d.dir, bootstrap, extraArgs, env: d.env })
}

export async function stopDaemonProc(d: DaemonProc, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<number | null> {
  if (d.proc.exitCode !== null || d.proc.signalCode !== null) return d.proc.exitCode
  const exited = new Promise<number | null>((r) => d.proc.once('exit', (code) => r(code)))
  d.proc.kill(signal)
  const t = setTimeout(() => d.proc.kill('SIGKILL'), timeoutMs)
  const code = await exited
  clearTimeout(t)
  return code
}

export async function nodeInfo(d: DaemonProc): Promise<{ peerId: string; addresses: string[] }> {
  const r = await apiCall<{ peerId: string; addresses: string[] }>(d.socket, 'GET', '/v1/node')
  if (r.status !== 200) throw new Error(`node info: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
}
