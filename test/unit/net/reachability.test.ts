import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { isOnOwnSubnet } from '../../../src/net/reachability.js'

const nic = (address: string, netmask: string, internal = false) => ({
  address,
  netmask,
  family: 'IPv4' as const,
  mac: '00:00:00:00:00:00',
  internal,
  cidr: null,
})

// The interfaces of a site node in the two-site NAT test: its LAN behind the router.
const site = {
  lo: [nic('127.0.0.1', '255.0.0.0', true)],
  eth0: [nic('10.77.1.2', '255.255.255.0')],
}

describe('isOnOwnSubnet: a LAN-mate is reached directly, not hole-punched', () => {
  it('is true for a peer on the same subnet', () => {
    expect(isOnOwnSubnet(multiaddr('/ip4/10.77.1.3/tcp/4777'), site)).toBe(true)
  })
  it('is false across the router, for loopback interfaces, IPv6 and garbage', () => {
    expect(isOnOwnSubnet(multiaddr('/ip4/10.77.2.3/tcp/4777'), site)).toBe(false)
    expect(isOnOwnSubnet(multiaddr('/ip4/127.0.0.2/tcp/4777'), site)).toBe(false)
    expect(isOnOwnSubnet(multiaddr('/ip6/::1/tcp/4777'), site)).toBe(false)
    expect(isOnOwnSubnet(multiaddr('/ip4/10.77.1.3/tcp/4777'), {})).toBe(false)
  })
})
