/**
 * Reachability beyond one LAN: is this node public, which relays hold a reservation for
 * it, and how each connection was made (direct, relayed, hole-punched). A libp2p service,
 * so that it sees the transport and address managers the public API does not expose.
 *
 * Invariants:
 *  - a node reserves on relays only while it is not known to be public (AutoNAT has not
 *    verified a public address) and it does not serve as a relay itself; it asks for at
 *    most `reservations` relays, one listen address (`/p2p-circuit`) per relay;
 *  - it starts looking only once a peer that speaks the relay HOP protocol has identified
 *    (libp2p's relay discovery walks the DHT without end while it lacks relays, a cost a
 *    LAN-only mesh never pays this way);
 *  - whether this node serves reservations is decided here (`servesRelay`), whom it serves
 *    by admission (auth/gater.ts): a relay serves members only;
 *  - a direct connection that opens while a relayed one to the same peer is open was made
 *    by DCUtR (a hole punch, or a direct dial to an address learnt over the relay): it is
 *    'hole-punched', unless the peer's address is on one of this machine's own subnets (a
 *    LAN-mate's upgrade dial, below, arrives inbound while the relayed connection is still
 *    open: it crossed no NAT, so it is 'direct'); kinds are remembered only for open
 *    connections;
 *  - DCUtR ignores private addresses, so two machines of one site that met through a relay
 *    would stay relayed: a relayed connection to a peer that announces private addresses is
 *    replaced by a direct one when one of them answers (once per connection, bounded).
 */
import { networkInterfaces } from 'node:os'
import type { Connection, PeerId } from '@libp2p/interface'
import { RELAY_V2_HOP_CODEC } from '@libp2p/circuit-relay-v2'
import { isPrivate } from '@libp2p/utils'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import type { PeerVia, ReachabilityInfo } from '../api/types.js'

/** How a connection reaches its peer; `rmesh peers` shows it as `via`. */
export type ConnectionKind = PeerVia
/** The same shape the control API reports (`rmesh status`): one definition serves both. */
export type ReachabilityState = ReachabilityInfo
export type Reachability = ReachabilityInfo['reachability']
export type RelayServiceMode = 'on' | 'off' | 'auto'

export interface Reachable {
  state(): ReachabilityState
  kindOf(connection: Connection): ConnectionKind
  servesRelay(): boolean
}

export interface ReachabilityOptions {
  relayService: RelayServiceMode
  /** How many relays to keep a reservation on while private (0: none). */
  reservations: number
  /** Reservations served as a relay (the relay server's limit, for status). */
  servedReservations?: () => number
}

interface AddressWithMetadata {
  multiaddr: Multiaddr
  verified: boolean
  type: string
}

/** The parts of libp2p's internal components this service uses. */
export interface ReachabilityComponents {
  peerId: PeerId
  addressManager: {
    getAddressesWithMetadata(): AddressWithMetadata[]
    getAddresses(): Multiaddr[]
  }
  transportManager: { listen(addrs: Multiaddr[]): Promise<void>; getAddrs(): Multiaddr[] }
  connectionManager: {
    getConnections(peerId?: PeerId): Connection[]
    openConnection(
      target: Multiaddr | Multiaddr[],
      options?: { signal?: AbortSignal; force?: boolean },
    ): Promise<Connection>
  }
  peerStore: { get(peerId: PeerId): Promise<{ addresses: { multiaddr: Multiaddr }[] }> }
  events: EventTarget
}

export const isCircuit = (ma: Multiaddr): boolean =>
  ma.getComponents().some((c) => c.name === 'p2p-circuit')
/** How long after a relayed connection opens its peer's LAN addresses are tried, and for how long. */
const LAN_UPGRADE_DELAY_MS = 1_000
const LAN_DIAL_MS = 3_000

const isPublicIp = (ma: Multiaddr) => !isCircuit(ma) && !isPrivate(ma)

const ipv4ToInt = (ip: string): number | undefined => {
  const parts = ip.split('.').map(Number)
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255))
    return undefined
  return ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0
}

/**
 * Whether `ma`'s IPv4 address lies on a subnet of one of this machine's interfaces (so a
 * connection to it crossed no router). Interfaces are read per call: addresses change.
 */
export function isOnOwnSubnet(
  ma: Multiaddr,
  interfaces: ReturnType<typeof networkInterfaces> = networkInterfaces(),
): boolean {
  const ip = ma.getComponents().find((c) => c.name === 'ip4')?.value
  const remote = ip === undefined ? undefined : ipv4ToInt(ip)
  if (remote === undefined) return false
  for (const list of Object.values(interfaces))
    for (const i of list ?? []) {
      if (i.family !== 'IPv4' || i.internal) continue
      const own = ipv4ToInt(i.address)
      const mask = ipv4ToInt(i.netmask)
      if (own !== undefined && mask !== undefined && ((own ^ remote) & mask) >>> 0 === 0)
        return true
    }
  return false
}

/**
 * Whether any of these listen or announce addresses is a public IP (0.0.0.0 stands for the
 * machine's interfaces): such a node may serve as a relay once AutoNAT confirms it.
 */
export function hasPublicAddress(addrs: string[]): boolean {
  const ips: string[] = []
  for (const a of addrs) {
    try {
      const ip4 = multiaddr(a)
        .getComponents()
        .find((c) => c.name === 'ip4')?.value
      if (ip4 === '0.0.0.0') {
        for (const list of Object.values(networkInterfaces()))
          for (const i of list ?? []) if (i.family === 'IPv4') ips.push(i.address)
      } else if (ip4) ips.push(ip4)
    } catch {
      // Validated by config; an odd one is simply not public.
    }
  }
  return ips.some((ip) => !isPrivate(multiaddr(`/ip4/${ip}/tcp/1`)))
}

export function reachabilityService(options: ReachabilityOptions): (
  components: ReachabilityComponents,
) => Reachable & {
  start(): void
  stop(): void
} {
  return (components) => {
    const kinds = new Map<string, ConnectionKind>()
    let circuitListens = 0
    const pendingRelays = new Set<string>()

    const relayedListenAddrs = () =>
      components.transportManager.getAddrs().filter((a) => isCircuit(a))

    const publicAddrs = (): string[] => {
      const out: string[] = []
      for (const a of components.addressManager.getAddressesWithMetadata()) {
        if (!isPublicIp(a.multiaddr)) continue
        // A relay started with --relay-service says it is public: its operator opened the port.
        if (a.verified || (options.relayService === 'on' && a.type === 'transport'))
          out.push(a.multiaddr.toString())
      }
      return out
    }

    const state = (): ReachabilityState => {
      const pub = publicAddrs()
      const relayed = relayedListenAddrs().map((a) => a.toString())
      const relays = [
        ...new Set(
          relayed
            .map((a) => a.split('/p2p-circuit')[0].split('/p2p/')[1])
            .filter((p): p is string => !!p),
        ),
      ]
      const all = components.addressManager.getAddresses().filter((a) => !isCircuit(a))
      const anyPublicIp = all.some(isPublicIp)
      const reachability: Reachability =
        pub.length > 0 ? 'public' : anyPublicIp ? 'unknown' : 'private'
      const serving = servesRelay()
      const st: ReachabilityState = {
        reachability,
        publicAddrs: pub,
        relayedAddrs: components.addressManager
          .getAddresses()
          .filter(isCircuit)
          .map((a) => a.toString()),
        relays,
        relayService: serving,
        servedReservations: serving ? (options.servedReservations?.() ?? 0) : 0,
      }
      if (reachability !== 'public' && relays.length === 0) {
        const connected = components.connectionManager.getConnections().length > 0
        st.warning = !connected
          ? 'nobody can reach this node: no peer is connected, it has no public address and no relay reservation; join with a token or invite that carries member addresses, or pass --bootstrap'
          : options.reservations === 0
            ? 'no public address and relay reservations are off (--relays 0): only machines on this LAN can reach this node'
            : 'no public address and no relay reservation: only machines on this LAN can reach this node; start a member with a public address with --relay-service, or open TCP 4777 to this machine'
      }
      return st
    }

    const servesRelay = () =>
      options.relayService === 'on' || (options.relayService === 'auto' && publicAddrs().length > 0)

    const wantsReservations = () =>
      options.reservations > 0 && options.relayService !== 'on' && publicAddrs().length === 0

    const onIdentify = (evt: Event) => {
      const detail = (evt as CustomEvent<{ peerId: PeerId; protocols: string[] }>).detail
      if (!detail.protocols.includes(RELAY_V2_HOP_CODEC)) return
      const peer = detail.peerId.toString()
      if (pendingRelays.has(peer) || !wantsReservations()) return
      if (circuitListens >= options.reservations) return
      pendingRelays.add(peer)
      circuitListens++
      // One `/p2p-circuit` listen address is one reservation; libp2p picks the relay among
      // the HOP peers it knows (this one first: it just identified).
      components.transportManager.listen([multiaddr('/p2p-circuit')]).catch(() => {
        circuitListens--
        pendingRelays.delete(peer)
      })
    }

    const upgrading = new Set<string>()
    /** Replace a relayed connection by a direct one to the peer's private (LAN) addresses. */
    const tryLan = async (relayed: Connection) => {
      const peer = relayed.remotePeer
      let addrs: Multiaddr[]
      try {
        addrs = (await components.peerStore.get(peer)).addresses
          .map((a) => a.multiaddr)
          .filter((a) => !isCircuit(a) && isPrivate(a) && !a.toString().includes('/127.'))
      } catch {
        return
      }
      if (addrs.length === 0 || relayed.status !== 'open') return
      const ctl = new AbortController()
      const timer = setTimeout(() => ctl.abort(), LAN_DIAL_MS)
      upgrading.add(peer.toString())
      try {
        const direct = await components.connectionManager.openConnection(
          addrs.map((a) => (a.toString().includes('/p2p/') ? a : a.encapsulate(`/p2p/${peer}`))),
          { signal: ctl.signal, force: true },
        )
        kinds.set(direct.id, 'direct')
        if (!isCircuit(direct.remoteAddr))
          await relayed
            .close()
            .catch(() => relayed.abort(new Error('replaced by a direct connection')))
      } catch {
        // Not on our LAN after all: the relayed connection stays (DCUtR may still upgrade it).
      } finally {
        clearTimeout(timer)
        upgrading.delete(peer.toString())
      }
    }

    const onOpen = (evt: Event) => {
      const conn = (evt as CustomEvent<Connection>).detail
      if (isCircuit(conn.remoteAddr)) {
        kinds.set(conn.id, 'relayed')
        // After identify has told us the peer's addresses.
        setTimeout(() => void tryLan(conn), LAN_UPGRADE_DELAY_MS).unref?.()
        return
      }
      if (upgrading.has(conn.remotePeer.toString())) {
        kinds.set(conn.id, 'direct')
        return
      }
      const viaRelay = components.connectionManager
        .getConnections(conn.remotePeer)
        .some((c) => c.id !== conn.id && c.status === 'open' && isCircuit(c.remoteAddr))
      kinds.set(conn.id, viaRelay && !isOnOwnSubnet(conn.remoteAddr) ? 'hole-punched' : 'direct')
    }
    const onClose = (evt: Event) => {
      kinds.delete((evt as CustomEvent<Connection>).detail.id)
    }

    return {
      state,
      servesRelay,
      kindOf(connection) {
        return kinds.get(connection.id) ?? (isCircuit(connection.remoteAddr) ? 'relayed' : 'direct')
      },
      start() {
        components.events.addEventListener('peer:identify', onIdentify)
        components.events.addEventListener('connection:open', onOpen)
        components.events.addEventListener('connection:close', onClose)
      },
      stop() {
        components.events.removeEventListener('peer:identify', onIdentify)
        components.events.removeEventListener('connection:open', onOpen)
        components.events.removeEventListener('connection:close', onClose)
        kinds.clear()
      },
    }
  }
}
