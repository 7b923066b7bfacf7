/**
 * What the network-namespace WAN tests share: the peers and node views of a daemon, a
 * timed phase log, and the teardown of their daemons, lab and folders (registered with
 * afterAll, so a failing test leaves no namespace or process behind).
 */
import { afterAll } from 'vitest'
import type { NodeInfo, PeerInfo } from '../../src/api/types.js'
import { apiCall, type DaemonProc, removeDir, stopDaemonProc } from './daemons.js'
import type { WanLab } from './netns.js'

export const peersOf = async (d: DaemonProc) =>
  (await apiCall<PeerInfo[]>(d.socket, 'GET', '/v1/peers')).body
export const nodeOf = async (d: DaemonProc) =>
  (await apiCall<NodeInfo>(d.socket, 'GET', '/v1/node')).body

export interface WanRun {
  lab?: WanLab
  procs: DaemonProc[]
  /** Folders to remove besides the daemons' own. */
  folders: string[]
  /** Logs `label: what at N s` (since the run was made). */
  phase(what: string): void
}

/** Call inside a describe block. */
export function wanRun(label: string): WanRun {
  const t0 = Date.now()
  const run: WanRun = {
    procs: [],
    folders: [],
    phase: (what) => console.log(`${label}: ${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`),
  }
  afterAll(async () => {
    await Promise.all(run.procs.map((p) => stopDaemonProc(p, 'SIGKILL')))
    run.lab?.destroy()
    await Promise.all([...run.procs.map((p) => p.dir), ...run.folders].map(removeDir))
  }, 30_000)
  return run
}
