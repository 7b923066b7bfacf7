/** Start a daemon inside a network namespace (mDNS on), reachable through its socket. */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { apiCall, type DaemonProc, RMESH_BIN, waitFor } from './daemons.js'

export async function spawnInNetns(ns: string, dir: string, listen: string[], extraArgs: string[] = []): Promise<DaemonProc> {
  const args = ['netns', 'exec', ns, process.execPath, RMESH_BIN, 'daemon', '--dir', dir, '--log-level', 'warn', ...listen.flatMap((l) => ['--listen', l]), ...extraArgs]
  const proc = spawn('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  const stderr: string[] = []
  proc.stderr?.on('data', (c) => stderr.push(String(c)))
  proc.stdout?.on('data', () => {})
  const d: DaemonProc = { dir, socket: join(dir, 'rmesh.sock'), proc, stderr, args, env: {} }
  await waitFor(
    async () => {
      if (proc.exitCode !== null) throw new Error(`daemon in ${ns} exited: ${stderr.join('')}`)
      return existsSync(d.socket) && (await apiCall(d.socket, 'GET', '/v1/node', undefined, 2_000)).status === 200
    },
    20_000,
    `daemon in ${ns}`,
  )
  return d
}
