/**
 * One socket write per encrypted frame instead of two.
 *
 * Noise hands the transport each frame as a list of two buffers, its 2-byte length and its
 * ciphertext, and the TCP connection writes the buffers of a list one by one: with
 * TCP_NODELAY (libp2p's default) that is two syscalls and two segments for every gossip
 * RPC, yamux window update and ping. Socket writes were the largest single share of a
 * daemon's CPU at rest in a 10-daemon mesh (bench/prof-summary.ts; issue 17), and a peer
 * pays a wake-up for each segment too. The connection given to the encrypter sends a
 * small list as one buffer.
 *
 * Invariants:
 *  - bytes, order and back-pressure are unchanged: the same `send` runs with the same
 *    bytes, joined; its result is returned as is;
 *  - only small lists are joined (≤ MAX_COALESCED_BYTES): a bulk block transfer keeps its
 *    buffers as they are rather than copying 64 KiB per frame;
 *  - the encrypter is otherwise the one given: its protocol, capabilities and handshake.
 */
import type { ConnectionEncrypter, MessageStream, SecureConnectionOptions } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'

/** Lists up to this many bytes are sent as one buffer (a gossip RPC, a control frame). */
export const MAX_COALESCED_BYTES = 16 * 1024

type Sendable = Uint8Array | Uint8ArrayList

/** `data` as one buffer when it is a small list of several; otherwise `data` itself. */
export function joinSmall(data: Sendable): Sendable {
  if (data instanceof Uint8Array || data.byteLength > MAX_COALESCED_BYTES) return data
  let parts = 0
  for (const _ of data) if (++parts > 1) return data.subarray()
  return data
}

/** The same connection, whose send writes a small list as one buffer. */
export function coalesceSends<T extends MessageStream>(connection: T): T {
  const send = connection.send.bind(connection)
  // An own property: the transport's class and its other methods stay untouched.
  Object.defineProperty(connection, 'send', {
    value: (data: Sendable) => send(joinSmall(data)),
    configurable: true,
    writable: true,
  })
  return connection
}

/** Wraps an encrypter factory (e.g. noise()) so its transport connection sends coalesced. */
export function withCoalescedWrites<C>(
  factory: (components: C) => ConnectionEncrypter,
): (components: C) => ConnectionEncrypter {
  return (components) => {
    const inner = factory(components)
    // Inherit protocol, Symbol.toStringTag and serviceCapabilities from the real encrypter.
    const outer = Object.create(inner) as ConnectionEncrypter
    outer.secureInbound = (connection: MessageStream, options?: SecureConnectionOptions) =>
      inner.secureInbound(coalesceSends(connection), options)
    outer.secureOutbound = (connection: MessageStream, options?: SecureConnectionOptions) =>
      inner.secureOutbound(coalesceSends(connection), options)
    return outer
  }
}
