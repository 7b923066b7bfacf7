/**
 * Admission across real daemons: a revocation written on the admin node cuts the revoked
 * machine off on every node; a daemon without a token starts, is served nothing and is
 * not listed as a peer; it joins with an invite without a restart.
 */
import { afterAll, describe, expect, it } from 'vitest'
import {
  apiCall,
  type DaemonProc,
  removeDir,
  startDaemonProc,
  startMesh,
  stopDaemonProc,
  waitFor,
} from '../../helpers/daemons.js'

interface Peer {
  peerId: string
  state: string
  connected: boolean
  admitted: boolean
}

const peersOf = async (d: DaemonProc) => (await apiCall<Peer[]>(d.socket, 'GET', '/v1/peers')).body
const admittedPeerIds = async (d: DaemonProc) =>
  new Set((await peersOf(d)).filter((p) => p.connected && p.admitted).map((p) => p.peerId))

describe('admission between real daemons', () => {
  const procs: DaemonProc[] = []
  afterAll(async () => {
    await Promise.all(procs.map((p) => stopDaemonProc(p, 'SIGKILL')))
    await Promise.all(procs.map((p) => removeDir(p.dir)))
  })

  it('a daemon with no token is served nothing, then joins with an invite', async () => {
    const mesh = await startMesh(2)
    procs.push(...mesh)
    const boot = mesh[0].addresses.filter((a) => a.includes('/ip4/127.0.0.1/'))
    const outsider = await startDaemonProc({ bootstrap: boot })
    procs.push(outsider)
    const info = (
      await apiCall<{ admitted: boolean; peerId: string }>(outsider.socket, 'GET', '/v1/node')
    ).body
    expect(info.admitted).toBe(false)
    // Give it time to try: it is never listed as an admitted peer and learns nothing.
    await new Promise((r) => setTimeout(r, 1_500))
    expect((await admittedPeerIds(mesh[0])).has(info.peerId)).toBe(false)
    expect((await apiCall<unknown[]>(outsider.socket, 'GET', '/v1/jobs')).body).toEqual([])

    const invite = await apiCall<{ invite: string }>(mesh[0].socket, 'POST', '/v1/tokens/invite', {
      caps: ['render'],
    })
    expect(invite.status).toBe(200)
    const joined = await apiCall<{ kind: string }>(outsider.socket, 'POST', '/v1/join', {
      code: invite.body.invite,
    })
    expect(joined.status).toBe(200)
    expect(joined.body.kind).toBe('invite')
    await waitFor(
      async () => (await admittedPeerIds(mesh[0])).has(info.peerId),
      15_000,
      'the invited node to be admitted',
    )
    // A used invite fails the second time.
    const again = await apiCall<{ error: { code: string } }>(mesh[1].socket, 'POST', '/v1/join', {
      code: invite.body.invite,
    })
    expect(again.status).toBeGreaterThanOrEqual(400)
  })

  it('a revoked machine is cut off by every node', async () => {
    const [admin, other, victim] = procs
    const victimId = (await apiCall<{ peerId: string }>(victim.socket, 'GET', '/v1/node')).body
      .peerId
    await waitFor(
      async () => (await admittedPeerIds(other)).has(victimId),
      15_000,
      'the victim to be admitted on the other node',
    )
    const revoked = await apiCall(admin.socket, 'POST', `/v1/tokens/${victimId}/revoke`, {})
    expect(revoked.status).toBe(200)
    await waitFor(
      async () => !(await admittedPeerIds(admin)).has(victimId),
      10_000,
      'the admin to cut the victim off',
    )
    await waitFor(
      async () => !(await admittedPeerIds(other)).has(victimId),
      15_000,
      'the other node to learn the revocation and cut the victim off',
    )
    // Everyone is still up.
    for (const p of procs) expect((await apiCall(p.socket, 'GET', '/v1/node')).status).toBe(200)
  })
})
