/** Start a daemon inside a network namespace (mDNS on unless told), reachable through its socket. */
import { spawnDaemon } from '../../cli/local-mesh.js'
import type { DaemonProc } from './daemons.js'

export async function spawnInNetns(
  ns: string,
  dir: string,
  listen: string[],
  extraArgs: string[] = [],
  more: { mdns?: boolean; bootstrap?: string[]; name?: string; logLevel?: string } = {},
): Promise<DaemonProc> {
  const options = {
    dir,
    listen,
    mdns: more.mdns ?? true,
    bootstrap: more.bootstrap,
    name: more.name,
    logLevel: more.logLevel,
    extraArgs,
    wrapper: ['ip', 'netns', 'exec', ns],
    startTimeoutMs: 60_000,
  }
  const node = await spawnDaemon(options)
  return {
    dir,
    socket: node.socketPath,
    proc: node.proc,
    stderr: node.stderrTail,
    options,
    peerId: node.peerId,
    addresses: node.addresses,
  }
}
