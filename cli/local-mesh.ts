/**
 * A mesh of rmesh daemons on this machine's loopback, as child processes with their own
 * data directories: used by `rmesh demo`, the benchmarks and the end-to-end tests.
 *
 * Invariants: daemons listen on 127.0.0.1 only with mDNS off (nothing leaves the
 * machine); the first node owns a fresh mesh and every node holds a token before its
 * daemon starts; stop() ends every child (SIGTERM, then SIGKILL after a grace period)
 * and is safe to call twice.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { createApiClient } from '../src/api/client.js'
import { SOCKET_FILE } from '../src/api/types.js'
import { loadOrCreateNodeKey, peerIdOf } from '../src/auth/identity.js'
import { loadMeshOwner } from '../src/auth/mesh.js'
import { formatToken, issueToken } from '../src/auth/token.js'
import { RmeshError } from '../src/util/errors.js'
import { packageRoot } from '../src/version.js'
import { initMesh, writeNodeToken } from './commands/init.js'

export interface LocalNode {
  index: number
  dir: string
  socketPath: string
  peerId: string
  proc: ChildProcess
  stderrTail: string[]
  /** Full multiaddrs (ending /p2p/<peerId>) once started. */
  addresses: string[]
}

export interface LocalMesh {
  nodes: LocalNode[]
  stop(): Promise<void>
}

export interface LocalMeshOptions {
  baseDir: string
  count: number
  logLevel?: string
  /** Extra daemon arguments for every node (e.g. --test-engine). */
  extraArgs?: string[]
  env?: Record<string, string>
  startTimeoutMs?: number
}

/** Node 1 of `dirs` creates a mesh; every other gets a token (before any daemon starts). */
export async function admitDirs(
  dirs: string[],
  caps: ('submit' | 'render' | 'admin')[] = ['submit', 'render'],
): Promise<void> {
  await initMesh(dirs[0])
  const owner = await loadMeshOwner(dirs[0])
  const now = Math.floor(Date.now() / 1000)
  for (const d of dirs.slice(1)) {
    await mkdir(d, { recursive: true, mode: 0o700 })
    const peerId = peerIdOf(await loadOrCreateNodeKey(d))
    const token = await issueToken({
      issuer: owner.privateKey,
      ownerPublicKey: owner.ownerPublicKey,
      audience: peerId,
      caps,
      nbf: now - 60,
      exp: now + 7 * 86_400,
    })
    await writeNodeToken(d, formatToken(token))
  }
}

export interface SpawnOptions {
  dir: string
  index?: number
  bootstrap?: string[]
  listen?: string[]
  mdns?: boolean
  logLevel?: string
  name?: string
  extraArgs?: string[]
  env?: Record<string, string>
  startTimeoutMs?: number
  /** Run under another command (e.g. ['ip', 'netns', 'exec', ns]). */
  wrapper?: string[]
  /** Wait until the control socket answers (default true). */
  wait?: boolean
}

/**
 * V8 flags of the daemon's process. A young generation of 2 MiB semi-spaces instead of
 * V8's 16: the daemon's garbage is many small, short-lived objects (messages, entries),
 * and the default's 48 MiB of young space was a third of its resident memory (153 → 117 MiB
 * at rest, with no measurable change in CPU per chunk; bench/RESULTS.md, issue 17).
 * bin/rmesh.js carries the same flags on its `#!` line for `rmesh daemon` run from PATH;
 * a test checks that the two agree.
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2']

/**
 * Environment of the daemon's process (unless the caller's environment sets it). glibc
 * gives each thread that allocates its own malloc arena (up to 8 per core), and the
 * daemon's threads (libuv's pool, V8's workers, LevelDB's compactions) each kept freed
 * memory in theirs: 2 arenas hold a daemon at rest ~8 MiB smaller (117 → 109 MiB
 * resident, one daemon). bin/rmesh.js sets the same on its `#!` line; a test checks it.
 */
export const DAEMON_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' }

/** Start one `rmesh daemon` child process and wait until its control socket answers. */
export async function spawnDaemon(o: SpawnOptions): Promise<LocalNode> {
  const bin = join(packageRoot(), 'bin', 'rmesh.js')
  const args = [
    ...DAEMON_NODE_FLAGS,
    bin,
    'daemon',
    '--dir',
    o.dir,
    '--log-level',
    o.logLevel ?? 'warn',
  ]
  for (const l of o.listen ?? ['/ip4/127.0.0.1/tcp/0']) args.push('--listen', l)
  if (!o.mdns) args.push('--no-mdns')
  if (o.name) args.push('--name', o.name)
  for (const b of o.bootstrap ?? []) args.push('--bootstrap', b)
  args.push(...(o.extraArgs ?? []))
  const [cmd, ...pre] = o.wrapper?.length ? [...o.wrapper, process.execPath] : [process.execPath]
  const proc = spawn(cmd, [...pre, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...DAEMON_ENV, ...process.env, ...o.env },
  })
  const node: LocalNode = {
    index: o.index ?? 0,
    dir: o.dir,
    socketPath: join(o.dir, SOCKET_FILE),
    peerId: '',
    proc,
    stderrTail: [],
    addresses: [],
  }
  proc.stderr?.on('data', (c) => {
    node.stderrTail.push(String(c))
    if (node.stderrTail.length > 50) node.stderrTail.shift()
  })
  if (o.wait === false) return node
  try {
    const info = await waitForDaemon(node, o.startTimeoutMs ?? 30_000, o.name)
    node.peerId = info.peerId
    node.addresses = info.addresses
  } catch (err) {
    await stopChild(proc, 1_000)
    throw err
  }
  return node
}

export async function startLocalMesh(options: LocalMeshOptions): Promise<LocalMesh> {
  const nodes: LocalNode[] = []
  const dirs = Array.from({ length: options.count }, (_, i) =>
    join(options.baseDir, `node${i + 1}`),
  )
  for (const d of dirs) await mkdir(d, { recursive: true, mode: 0o700 })
  await admitDirs(dirs)
  const mesh: LocalMesh = {
    nodes,
    async stop() {
      await Promise.all(nodes.map((n) => stopChild(n.proc)))
    },
  }
  try {
    let bootstrap: string[] = []
    for (let i = 0; i < dirs.length; i++) {
      const node = await spawnDaemon({
        dir: dirs[i],
        index: i,
        bootstrap,
        logLevel: options.logLevel,
        name: `node${i + 1}`,
        extraArgs: options.extraArgs,
        env: options.env,
        startTimeoutMs: options.startTimeoutMs,
      })
      nodes.push(node)
      if (i === 0) bootstrap = node.addresses.filter((a) => a.includes('/ip4/127.0.0.1/'))
    }
  } catch (err) {
    await mesh.stop()
    throw err
  }
  return mesh
}

/** `label` names the daemon in errors (its --name), else its position in the mesh. */
async function waitForDaemon(node: LocalNode, timeoutMs: number, label?: string) {
  const who = label ?? `daemon ${node.index + 1}`
  const client = createApiClient({ socketPath: node.socketPath, timeoutMs: 2_000 })
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (node.proc.exitCode !== null) {
      throw new RmeshError(
        'ERR_DAEMON_START',
        `${who} exited (code ${node.proc.exitCode}): ${node.stderrTail.join('').slice(-2000)}`,
      )
    }
    if (existsSync(node.socketPath)) {
      try {
        return await client.node()
      } catch {}
    }
    if (Date.now() > deadline)
      throw new RmeshError('ERR_DAEMON_START', `${who} did not answer within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

export async function stopChild(proc: ChildProcess, graceMs = 10_000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const exited = new Promise<void>((r) => proc.once('exit', () => r()))
  proc.kill('SIGTERM')
  const t = setTimeout(() => proc.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(t)
}
