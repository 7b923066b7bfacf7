/**
 * The deny list behind the libp2p connection gater. It exists before libp2p does (the
 * gater is a constructor argument of the host) and is filled by admission.
 *
 * Invariants:
 *  - a revoked peer (grow-only set in the token store) is refused in both directions, forever;
 *  - a peer that presented a bad token is refused in both directions for a while;
 *  - a peer that presented no token is only not dialed by us for a while: it is still let
 *    in, because a new machine redeeming an invite arrives exactly that way; admission
 *    serves it nothing and hangs up after a short grace;
 *  - as a relay, this node serves reservations and relayed connections to admitted peers
 *    only, and only while it serves as a relay at all (`RelayGate`): an unadmitted peer
 *    may reach this node directly (to redeem an invite) but never anyone through it.
 */
import type { ConnectionGater, PeerId } from '@libp2p/interface'
import type { Clock } from '../util/clock.js'
import type { TokenStore } from './token-store.js'

export type DenyReason = 'bad-token' | 'expired' | 'no-token'

export interface AdmissionStateOptions {
  /** How long a peer with a forged / wrong-mesh / wrong-audience token is refused. */
  badTokenDenyMs?: number
  /** How long a peer with an expired or not-yet-valid token is refused (it may renew). */
  expiredDenyMs?: number
  /** How long we do not dial a peer that had no token. */
  noTokenDenyMs?: number
}

export interface AdmissionState {
  readonly tokens: TokenStore
  deny(peerId: string, reason: DenyReason): void
  /** Forget a non-revocation denial (the peer was admitted after all). */
  allow(peerId: string): void
  denial(peerId: string): DenyReason | 'revoked' | undefined
  deniesInbound(peerId: string): boolean
  deniesOutbound(peerId: string): boolean
}

export function createAdmissionState(
  components: { tokens: TokenStore; clock: Clock },
  options: AdmissionStateOptions = {},
): AdmissionState {
  const { tokens, clock } = components
  const durations: Record<DenyReason, number> = {
    'bad-token': options.badTokenDenyMs ?? 10 * 60_000,
    expired: options.expiredDenyMs ?? 30_000,
    'no-token': options.noTokenDenyMs ?? 30_000,
  }
  const denied = new Map<string, { reason: DenyReason; until: number }>()
  const denial = (peerId: string): DenyReason | 'revoked' | undefined => {
    if (tokens.isRevoked(peerId)) return 'revoked'
    const d = denied.get(peerId)
    if (!d) return undefined
    if (clock.monotonic() >= d.until) {
      denied.delete(peerId)
      return undefined
    }
    return d.reason
  }
  return {
    tokens,
    deny(peerId, reason) {
      denied.set(peerId, { reason, until: clock.monotonic() + durations[reason] })
    },
    allow(peerId) {
      denied.delete(peerId)
    },
    denial,
    deniesInbound(peerId) {
      const d = denial(peerId)
      return d !== undefined && d !== 'no-token'
    },
    deniesOutbound(peerId) {
      return denial(peerId) !== undefined
    },
  }
}

/**
 * What the relay side of the gater asks, bound after libp2p and admission exist. Until
 * then it refuses everything.
 */
export interface RelayGate {
  /** Whether this node serves as a relay now (net/reachability.ts). */
  serving: () => boolean
  /** Resolves true once the peer is admitted (it may wait briefly for its handshake). */
  admitted: (peerId: string) => Promise<boolean>
}

export function createRelayGate(): RelayGate {
  return { serving: () => false, admitted: async () => false }
}

/** The gater to pass to createHost({ connectionGater }). */
export function createConnectionGater(state: AdmissionState, relay?: RelayGate): ConnectionGater {
  const outbound = (peerId: PeerId) => state.deniesOutbound(peerId.toString())
  const admitted = async (peer: PeerId) => (relay ? relay.admitted(peer.toString()) : false)
  const refuseRelaying = async (peer: PeerId) => !relay?.serving() || !(await admitted(peer))
  return {
    denyDialPeer: outbound,
    denyOutboundEncryptedConnection: outbound,
    denyInboundEncryptedConnection: (peerId: PeerId) => state.deniesInbound(peerId.toString()),
    denyInboundRelayReservation: refuseRelaying,
    denyOutboundRelayedConnection: async (source: PeerId, destination: PeerId) =>
      (await refuseRelaying(source)) || !(await admitted(destination)),
    denyInboundRelayedConnection: (_relay: PeerId, remote: PeerId) =>
      state.deniesInbound(remote.toString()),
  }
}
