/**
 * mDNS discovery for real: three daemons, each in a network namespace this test creates
 * (on a bridge in a namespace of its own), mDNS on, no bootstrap. Multicast never leaves
 * the lab. Skipped with the reason where namespaces cannot be created.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { admitDirs } from '../../../cli/local-mesh.js'
import {
  apiCall,
  type DaemonProc,
  makeTempDir,
  removeDir,
  stopDaemonProc,
  waitFor,
} from '../../helpers/daemons.js'
import { createNetnsLab, type NetnsLab, netnsUnavailableReason } from '../../helpers/netns.js'
import { spawnInNetns } from '../../helpers/spawn-netns.js'

const reason = netnsUnavailableReason()
if (reason) console.warn(`mDNS namespace test skipped: ${reason}`)

describe.skipIf(reason !== undefined)('mDNS in network namespaces', () => {
  let lab: NetnsLab | undefined
  const procs: DaemonProc[] = []
  afterAll(async () => {
    await Promise.all(procs.map((p) => stopDaemonProc(p, 'SIGKILL')))
    lab?.destroy()
    await Promise.all(procs.map((p) => removeDir(p.dir)))
  })

  it('three daemons discover each other with no bootstrap', async () => {
    lab = createNetnsLab(`rm${process.pid % 10000}`, 3)
    const dirs = await Promise.all([makeTempDir(), makeTempDir(), makeTempDir()])
    await admitDirs(dirs)
    for (let i = 0; i < 3; i++)
      procs.push(await spawnInNetns(lab.names[i], dirs[i], [`/ip4/${lab.addrs[i]}/tcp/4777`]))
    const ids = await Promise.all(
      procs.map(
        async (p) => (await apiCall<{ peerId: string }>(p.socket, 'GET', '/v1/node')).body.peerId,
      ),
    )
    await waitFor(
      async () => {
        for (let i = 0; i < 3; i++) {
          const peers = (
            await apiCall<{ peerId: string; state: string }[]>(procs[i].socket, 'GET', '/v1/peers')
          ).body
          const up = new Set(peers.filter((p) => p.state !== 'gone').map((p) => p.peerId))
          if (!ids.every((id, j) => j === i || up.has(id))) return false
        }
        return true
      },
      20_000,
      'mDNS discovery among three namespaces',
    )
    expect(ids.length).toBe(3)
  })
})
