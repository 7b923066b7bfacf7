/** Start a daemon inside a network namespace (mDNS on), reachable through its socket. */
import { spawnDaemon } from '../../cli/local-mesh.js'
import type { DaemonProc } from './daemons.js'

export async function spawnInNetns(
  ns: string,
  dir: string,
  listen: string[],
  extraArgs: string[] = [],
): Promise<DaemonProc> {
  const options = { dir, listen, mdns: true, extraArgs, wrapper: ['ip', 'netns', 'exec', ns] }
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
