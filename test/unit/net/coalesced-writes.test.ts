import { Uint8ArrayList } from 'uint8arraylist'
import { describe, expect, it } from 'vitest'
import type { ConnectionEncrypter, MessageStream } from '@libp2p/interface'
import {
  coalesceSends,
  joinSmall,
  MAX_COALESCED_BYTES,
  withCoalescedWrites,
} from '../../../src/net/coalesced-writes.js'

const bytes = (n: number, fill = 1) => new Uint8Array(n).fill(fill)

/** A stand-in transport connection that records what each send was given. */
function recordingConnection(result = true) {
  const sent: (Uint8Array | Uint8ArrayList)[] = []
  const conn = {
    send(data: Uint8Array | Uint8ArrayList) {
      sent.push(data)
      return result
    },
  }
  return { conn: conn as unknown as MessageStream, sent }
}

describe('coalesced writes', () => {
  it("joins a small frame's length and ciphertext into one buffer, same bytes", () => {
    const list = new Uint8ArrayList(bytes(2, 7), bytes(500, 9))
    const joined = joinSmall(list)
    expect(joined).toBeInstanceOf(Uint8Array)
    expect([...(joined as Uint8Array)]).toEqual([...list.subarray()])
  })

  it('leaves single buffers, one-buffer lists and bulk frames as they are', () => {
    const single = bytes(10)
    expect(joinSmall(single)).toBe(single)
    const one = new Uint8ArrayList(bytes(10))
    expect(joinSmall(one)).toBe(one)
    const bulk = new Uint8ArrayList(bytes(2), bytes(MAX_COALESCED_BYTES))
    expect(joinSmall(bulk)).toBe(bulk)
  })

  it("sends through the connection's own send, passing its back-pressure through", () => {
    const { conn, sent } = recordingConnection(false)
    coalesceSends(conn)
    expect(conn.send(new Uint8ArrayList(bytes(2), bytes(100)))).toBe(false)
    expect(sent).toHaveLength(1)
    expect(sent[0]).toBeInstanceOf(Uint8Array)
    expect((sent[0] as Uint8Array).byteLength).toBe(102)
  })

  it('wraps an encrypter: same protocol and tag, the handshake gets the coalescing connection', async () => {
    const seen: MessageStream[] = []
    const inner = {
      protocol: '/noise',
      [Symbol.toStringTag]: 'test-encrypter',
      async secureInbound(c: MessageStream) {
        seen.push(c)
        return { connection: c, remotePeer: undefined as never }
      },
      async secureOutbound(c: MessageStream) {
        seen.push(c)
        return { connection: c, remotePeer: undefined as never }
      },
    } satisfies ConnectionEncrypter & { [Symbol.toStringTag]: string }
    const outer = withCoalescedWrites(() => inner)({})
    expect(outer.protocol).toBe('/noise')
    expect(Object.prototype.toString.call(outer)).toBe('[object test-encrypter]')
    const { conn, sent } = recordingConnection()
    await outer.secureOutbound(conn)
    await outer.secureInbound(recordingConnection().conn)
    expect(seen).toHaveLength(2)
    seen[0].send(new Uint8ArrayList(bytes(2), bytes(40)))
    expect(sent[0]).toBeInstanceOf(Uint8Array)
  })
})
