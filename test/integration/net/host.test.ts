import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { afterEach, describe, expect, it } from 'vitest'
import { createHost, type RmeshLibp2p } from '../../../src/net/host.js'

describe('libp2p host', () => {
  const hosts: RmeshLibp2p[] = []
  afterEach(async () => {
    await Promise.all(hosts.splice(0).map((h) => h.stop()))
  })

  it('two hosts on loopback connect and exchange gossip', async () => {
    for (let i = 0; i < 2; i++) {
      hosts.push(
        await createHost({
          privateKey: await generateKeyPair('Ed25519'),
          listen: ['/ip4/127.0.0.1/tcp/0'],
        }),
      )
    }
    const [a, b] = hosts
    a.services.pubsub.subscribe('t')
    b.services.pubsub.subscribe('t')
    await b.dial(multiaddr(a.getMultiaddrs()[0].toString()))
    const got = new Promise<string>((resolve) => {
      a.services.pubsub.addEventListener('message', (evt) =>
        resolve(new TextDecoder().decode(evt.detail.data)),
      )
    })
    // gossipsub needs a heartbeat to graft the mesh; retry publish until it lands.
    for (let i = 0; i < 50; i++) {
      await b.services.pubsub.publish('t', new TextEncoder().encode('hello'))
      const r = await Promise.race([got, new Promise((r) => setTimeout(() => r(undefined), 100))])
      if (r) break
    }
    expect(await got).toBe('hello')
  })
})
