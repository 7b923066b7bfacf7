/**
 * The libp2p host: TCP + noise + yamux, identify, ping, gossipsub, kad-dht under the
 * rmesh prefix, mDNS (optional) and bootstrap (optional).
 *
 * Invariants:
 *  - the host never decides admission itself: a `ConnectionGater` is injected (auth/);
 *  - kad-dht keeps LAN addresses (passthrough mapper) because a studio mesh is a LAN;
 *  - gossipsub signs every message (StrictSign), so `from` is the authenticated origin,
 *    and may publish with no known subscriber (the log's anti-entropy covers misses);
 *    a copy of a message already accepted is recognised by a hash of all its fields
 *    before its signature is checked again (fastMsgId);
 *  - peers are not scored down for sharing an IP address (GOSSIP_SCORE_PARAMS);
 *  - gossip degree and control traffic are sized so that a node's cost per message does
 *    not grow with the mesh (GOSSIP_PARAMS): own messages go to the mesh peers only, not
 *    flooded to every peer, and IDONTWANT is kept for large messages;
 *  - nothing here dials what discovery finds: the dialer (net/dialer.ts) owns that policy;
 *  - beyond the LAN (see net/reachability.ts): every node can dial and accept relayed
 *    connections (circuit relay v2) and upgrade them with DCUtR; only a node that may be a
 *    relay (--relay-service, or auto with a public address) runs the relay server, whose
 *    relayed connections carry no data or duration limit (whom it serves is the gater's
 *    decision: members only); AutoNAT v2 verifies public addresses; UPnP only when asked;
 *  - the in-memory datastore (DHT provider records, peer records) keeps its own copy of
 *    every value, never a view into a larger buffer (see CopyingMemoryDatastore).
 */
import { createHash } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { autoNATv2 } from '@libp2p/autonat-v2'
import { bootstrap } from '@libp2p/bootstrap'
import {
  type CircuitRelayService,
  circuitRelayServer,
  circuitRelayTransport,
} from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { identify, type Identify } from '@libp2p/identify'
import type { AbortOptions, ConnectionGater, PrivateKey } from '@libp2p/interface'
import { kadDHT, passthroughMapper, type KadDHT } from '@libp2p/kad-dht'
import { mdns } from '@libp2p/mdns'
import { ping, type Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { MemoryDatastore } from 'datastore-core/memory'
import type { Key } from 'interface-datastore'
import { createLibp2p, type Libp2p } from 'libp2p'
import { withCoalescedWrites } from './coalesced-writes.js'
import {
  hasPublicAddress,
  type Reachable,
  type ReachabilityComponents,
  type RelayServiceMode,
  reachabilityService,
} from './reachability.js'

export const DHT_PROTOCOL = '/rmesh/kad/1.0.0'
export const DEFAULT_PORT = 4777
/** How long a DHT provider record lives on every node unless its provider renews it. */
export const DHT_PROVIDER_VALIDITY_MS = 6 * 60 * 60_000

export type RmeshServices = {
  identify: Identify
  ping: Ping
  pubsub: GossipSub
  dht: KadDHT
  reachability: Reachable
  /** Present only on a node that may serve as a relay. */
  relay?: CircuitRelayService
}

export type RmeshLibp2p = Libp2p<RmeshServices>

export interface HostOptions {
  privateKey: PrivateKey
  /** Multiaddrs to listen on, e.g. /ip4/127.0.0.1/tcp/0. */
  listen: string[]
  bootstrap?: string[]
  mdns?: boolean
  connectionGater?: ConnectionGater
  /** mDNS service tag; tests in namespaces may set their own. */
  mdnsServiceTag?: string
  /** Announce interval for mDNS in ms. */
  mdnsInterval?: number
  /** Relay server: 'on' (--relay-service), 'off', or 'auto' (when AutoNAT says public). */
  relayService?: RelayServiceMode
  /** Relays to keep a reservation on while this node is not public (default 2; 0: none). */
  relayReservations?: number
  /** Addresses to announce instead of the listen addresses (a public IP mapped to this node). */
  announce?: string[]
  /** Map the listen port on the router with UPnP / NAT-PMP. */
  upnp?: boolean
  /**
   * Start listening and dialing at once (default true). The daemon passes false so that
   * its auth handler is registered before the first peer can connect.
   */
  start?: boolean
}

/**
 * Gossipsub checks a message's signature before it looks for duplicates unless given a
 * fast id; in a full mesh each message arrives from several peers, and those repeated
 * checks were the daemon's largest CPU cost. Only messages that passed validation enter
 * the fast cache, and the id covers every field (length-prefixed), so a forged copy can
 * never shadow a genuine message.
 */
export function fastMsgId(msg: {
  from?: Uint8Array
  seqno?: Uint8Array
  data?: Uint8Array
  signature?: Uint8Array
  key?: Uint8Array
  topic: string
}): string {
  const h = createHash('sha256')
  const len = Buffer.alloc(4)
  const topic = Buffer.from(msg.topic)
  for (const part of [msg.from, msg.seqno, msg.data, msg.signature, msg.key, topic]) {
    len.writeUInt32BE(part?.byteLength ?? 0xffffffff)
    h.update(len)
    if (part) h.update(part)
  }
  return h.digest('base64')
}

/**
 * Gossipsub sized for a studio mesh of up to a few hundred nodes where every message is
 * small (a few log entries, a presence heartbeat) and anything missed is recovered by the
 * log's anti-entropy. A node's cost per message is about one inbound copy per mesh peer
 * and one outbound copy per mesh peer that has not sent it; both follow D, never N.
 *  - D 3 (Dlo 2, Dhi 4, Dout 1): a node receives a message once from each mesh peer that
 *    has it before this node forwards it, so the copies it decodes follow its mesh degree:
 *    measured on 10 daemons (net/gossip-copies.ts counts them), D 4/Dhi 8 gave 5.5 copies
 *    per message, 3/5 gave 3.5, 3/4 gave 2.9, and a bystander's CPU per chunk fell with
 *    them. A 100-node mesh is still crossed in ~5 hops (a millisecond each on a LAN); a
 *    message lost on the way is repaired by IHAVE gossip and by the log's anti-entropy, and
 *    presence and leases are judged on several heartbeats, never one.
 *  - floodPublish off: with it on (the default) a node sends each message it publishes to
 *    every peer it knows, 99 copies per publish in a 100-node mesh.
 *  - Dlazy 3, gossipFactor 0.1: IHAVE gossip each heartbeat to 3 peers outside the mesh
 *    (a tenth of them in a mesh of over 30, not gossipsub's quarter: 24 control messages
 *    per topic and heartbeat at 100 nodes), enough to repair a lost message; anti-entropy
 *    covers the rest.
 *  - IDONTWANT only for messages ≥ 16 KiB: on a LAN the IDONTWANT races the duplicate it
 *    means to stop, and for a 1 KiB message it costs a node about what the duplicate does.
 *  - heartbeat every 2 s instead of 1 s: it only maintains the mesh and sends IHAVE gossip
 *    (messages themselves go out at once), and each heartbeat wakes every daemon, busy or
 *    at rest; the IHAVE window (3 heartbeats) is then 6 s, the message cache 10 s.
 */
export const GOSSIP_PARAMS = {
  heartbeatInterval: 2_000,
  D: 3,
  Dlo: 2,
  Dhi: 4,
  Dout: 1,
  Dlazy: 3,
  gossipFactor: 0.1,
  floodPublish: false,
  idontwantMinDataSize: 16 * 1024,
} as const

/**
 * Peer scoring without the IP-colocation penalty. gossipsub scores each peer −5 × (n − 10)²
 * for n peers seen from one IP: a defence against Sybil peers that rmesh's admission
 * (signed tokens) already gives, and a penalty on the meshes a studio has: every daemon of
 * a test on 127.0.0.1, a site's machines behind one NAT address seen from another site. At
 * 14 peers on one address their score fell below the graylist (−80) and gossip between
 * them stopped: a 16-daemon mesh on one machine saw 1 heartbeat in 10. Everything else
 * (behaviour penalties for broken IWANT promises) keeps gossipsub's defaults per second.
 */
export const GOSSIP_SCORE_PARAMS = {
  IPColocationFactorWeight: 0,
  // Scores decay on a timer of their own: every 2 s with the same decay per second as
  // gossipsub's default (0.2 per 1 s), one wake-up a second less for a daemon at rest.
  decayInterval: 2_000,
  behaviourPenaltyDecay: 0.2 ** 2,
} as const

/**
 * libp2p's in-memory datastore keeps values as handed in. A DHT provider record's value
 * is a few bytes from Buffer.allocUnsafe, i.e. a view into Node's shared 64 KiB pool slab,
 * and each kept view pins its whole slab: the soak's daemons grew by ~1 MiB per job this
 * way (heap snapshots: hundreds of 64 KiB slabs held by the datastore's map). A copy costs
 * only its own bytes.
 */
export class CopyingMemoryDatastore extends MemoryDatastore {
  override put(key: Key, val: Uint8Array, options?: AbortOptions): Key {
    return super.put(
      key,
      val.byteLength === val.buffer.byteLength ? val : new Uint8Array(val),
      options,
    ) as Key
  }
}

/**
 * A relay's limits. Relayed connections get no per-connection data or duration limit:
 * libp2p's defaults (128 KiB, 2 min) end a render's connection within its first job, and
 * a limited connection runs only protocols that opt in. A relay serves members only, so
 * what bounds its cost is the reservation count and the block exchange's rate over relayed
 * connections (blobs/relay-rate.ts), not a cut-off.
 */
export const RELAY_SERVER_LIMITS = {
  maxReservations: 64,
  applyDefaultLimit: false,
  reservationTtl: 60 * 60_000,
} as const

export async function createHost(options: HostOptions): Promise<RmeshLibp2p> {
  const peerDiscovery = []
  if (options.mdns) {
    peerDiscovery.push(
      mdns({
        interval: options.mdnsInterval ?? 2_000,
        serviceTag: options.mdnsServiceTag ?? 'rmesh.local',
      }),
    )
  }
  if (options.bootstrap && options.bootstrap.length > 0) {
    peerDiscovery.push(bootstrap({ list: options.bootstrap, timeout: 0 }))
  }
  const relayService = options.relayService ?? 'auto'
  const mayRelay =
    relayService === 'on' ||
    (relayService === 'auto' && hasPublicAddress([...options.listen, ...(options.announce ?? [])]))
  let node: RmeshLibp2p | undefined
  const extra: Record<string, unknown> = {}
  if (mayRelay)
    extra.relay = circuitRelayServer({
      reservations: RELAY_SERVER_LIMITS,
      hopTimeout: 10_000,
    })
  // Loaded only when asked for: UPnP brings an SSDP client and an XML parser (~0.4 MB of
  // modules) that a daemon without --upnp would keep in memory for nothing.
  if (options.upnp) extra.upnp = (await import('@libp2p/upnp-nat')).uPnPNAT()
  node = (await createLibp2p({
    start: options.start ?? true,
    privateKey: options.privateKey,
    datastore: new CopyingMemoryDatastore(),
    addresses: {
      listen: options.listen,
      ...(options.announce?.length ? { announce: options.announce } : {}),
      // libp2p 3 announces a public listen address only once AutoNAT verified it; a relay
      // started with --relay-service says its port is open, so its address counts at once.
      ...(relayService === 'on' && !options.announce?.length
        ? {
            appendAnnounce: options.listen.filter(
              (a) => hasPublicAddress([a]) && !a.includes('/0.0.0.0/'),
            ),
          }
        : {}),
    },
    transports: [tcp(), circuitRelayTransport({ reservationCompletionTimeout: 10_000 })],
    // One socket write per Noise frame, not two (net/coalesced-writes.ts).
    connectionEncrypters: [withCoalescedWrites(noise())],
    streamMuxers: [yamux()],
    connectionGater: {
      // Loopback and LAN addresses are the point of a studio mesh; the default gater
      // refuses private addresses in some configurations.
      denyDialMultiaddr: () => false,
      ...options.connectionGater,
    },
    connectionManager: { maxConnections: 200, inboundConnectionThreshold: 100 },
    // Each ping opens a stream (negotiation, a peer-store update, a dozen frames each way):
    // at the default 10 s, per connection, that was a third of a node's writes at rest.
    // A dead peer is found by presence (gone) and leases long before; this only reaps
    // connections that died without a word (power cut, cable), within a minute or two.
    connectionMonitor: { pingInterval: 60_000 },
    peerDiscovery,
    services: {
      // Identify tells libp2p which protocols a peer speaks, and gossipsub opens its streams
      // only then: an identify that timed out left a connected peer mute on gossip for the
      // connection's life. At the default 5 s that happened to most links of 30 daemons
      // starting on 2 cores; a slow answer is still an answer.
      identify: identify({ timeout: 30_000 }),
      ping: ping(),
      dcutr: dcutr(),
      autonat: autoNATv2(),
      reachability: (components: ReachabilityComponents) => {
        const svc = reachabilityService({
          relayService: mayRelay ? relayService : 'off',
          reservations: options.relayReservations ?? 2,
          servedReservations: () => node?.services.relay?.reservations.size ?? 0,
        })(components)
        return svc
      },
      ...extra,
      pubsub: gossipsub({
        ...GOSSIP_PARAMS,
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        globalSignaturePolicy: 'StrictSign',
        fastMsgIdFn: fastMsgId,
        // rmesh messages are small; bound what one RPC may carry before decoding.
        maxInboundDataLength: 1 << 20,
        scoreParams: GOSSIP_SCORE_PARAMS,
      }),
      dht: kadDHT({
        protocol: DHT_PROTOCOL,
        peerInfoMapper: passthroughMapper,
        clientMode: false,
        // The reprovider is also the only cleanup of other nodes' provider records: at
        // its default validity (48 h) every node kept each deleted job's scene record in
        // memory for two days. A scene is provided only while its job needs it, and
        // withdrawn when deleted (blobs/providers.ts); 6 h, re-provided 3 h before expiry.
        reprovide: {
          validity: DHT_PROVIDER_VALIDITY_MS,
          threshold: DHT_PROVIDER_VALIDITY_MS / 2,
          interval: 30 * 60_000,
        },
      }),
    },
  })) as unknown as RmeshLibp2p
  return node
}
