/**
 * A relay serves members only: an unadmitted peer can take no reservation on a member
 * relay, and cannot reach a member (nor any rmesh protocol) through it. Real daemons on
 * 127.0.0.1 (a relay started with --relay-service and a member holding a reservation on
 * it), and an outsider libp2p host with no token.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, describe, expect, it } from 'vitest'
import { admitDirs } from '../../../cli/local-mesh.js'
import type { NodeInfo } from '../../../src/api/types.js'
import { AUTH_PROTOCOL } from '../../../src/auth/admission.js'
import { createHost, type RmeshLibp2p } from '../../../src/net/host.js'
import {
  apiCall,
  type DaemonProc,
  makeTempDir,
  removeDir,
  startDaemonProc,
  stopDaemonProc,
  waitFor,
} from '../../helpers/daemons.js'

const nodeOf = async (d: DaemonProc) => (await apiCall<NodeInfo>(d.socket, 'GET', '/v1/node')).body

describe('relay admission', () => {
  const procs: DaemonProc[] = []
  let outsider: RmeshLibp2p | undefined
  afterAll(async () => {
    await outsider?.stop()
    await Promise.all(procs.map((p) => stopDaemonProc(p, 'SIGKILL')))
    await Promise.all(procs.map((p) => removeDir(p.dir)))
  }, 20_000)

  it('an unadmitted peer takes no reservation and reaches nobody through the relay', async () => {
    const dirs = [await makeTempDir(), await makeTempDir()]
    await admitDirs(dirs)
    const relay = await startDaemonProc({
      dir: dirs[0],
      name: 'relay',
      extraArgs: ['--relay-service'],
    })
    procs.push(relay)
    const relayAddr = relay.addresses.find((a) => a.includes('/ip4/127.0.0.1/'))!
    const member = await startDaemonProc({ dir: dirs[1], name: 'member', bootstrap: [relayAddr] })
    procs.push(member)
    await waitFor(
      async () => (await nodeOf(member)).reachability?.relays.includes(relay.peerId),
      15_000,
      'the member to hold a reservation on the relay',
    )
    expect((await nodeOf(relay)).reachability?.servedReservations).toBe(1)

    // The outsider asks the relay for a reservation as it starts (a relay listen address):
    // the relay answers PERMISSION_DENIED (circuit relay v2's status for a gater refusal).
    const refused = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      listen: ['/ip4/127.0.0.1/tcp/0', `${relayAddr}/p2p-circuit`],
      mdns: false,
      relayReservations: 0,
    }).then(
      async (h) => {
        await h.stop()
        return undefined
      },
      (e: unknown) => e as Error,
    )
    expect(refused?.name).toBe('UnsupportedListenAddressesError')
    expect(String(refused?.message)).toContain('PERMISSION_DENIED')
    expect((await nodeOf(relay)).reachability?.servedReservations).toBe(1)

    outsider = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      mdns: false,
      relayReservations: 0,
    })
    // Nor may it reach the member through the relay: the relay refuses to connect them.
    const through = multiaddr(`${relayAddr}/p2p-circuit/p2p/${member.peerId}`)
    const err = await outsider
      .dialProtocol(through, AUTH_PROTOCOL, { signal: AbortSignal.timeout(8_000) })
      .then(
        () => undefined,
        (e: unknown) => e as Error,
      )
    expect(err).toBeInstanceOf(Error)
    expect(outsider.getConnections().some((c) => c.remotePeer.toString() === member.peerId)).toBe(
      false,
    )
    // A join code whose member addresses are garbage is refused with its code, nothing dialed.
    for (const code of ['rmesh-token-AAAA.%%%', `rmesh-token-AAAA.${'A'.repeat(5000)}`]) {
      const r = await apiCall<{ error: { code: string } }>(member.socket, 'POST', '/v1/join', {
        code,
      })
      expect(r.status).toBeGreaterThanOrEqual(400)
      expect(r.status).toBeLessThan(500)
      expect(r.body.error.code).toBe('ERR_TOKEN_MALFORMED')
    }
    // Both daemons are still up and serving their members.
    expect((await nodeOf(member)).reachability?.relays).toContain(relay.peerId)
  }, 40_000)
})
