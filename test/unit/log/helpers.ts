/** Shared fixtures for the log tests: fixed keys, signers and managers on a memory store. */
import { generateKeyPair, privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { signerFor } from '../../../src/auth/identity.js'
import { createLogManager, type LogManager, type LogManagerOptions } from '../../../src/log/log.js'
import { createMemoryLogStore, type LogStore } from '../../../src/log/store.js'
import type { LogEntry, Signer } from '../../../src/log/types.js'
import { FakeClock } from '../../../src/util/clock.js'
import { fromHex } from '../../../src/util/bytes.js'
import { silentLogger } from '../../../src/util/logger.js'

/** The fixed test key of protocols/vectors/log (Ed25519, libp2p protobuf form). */
export const VECTOR_KEY_HEX =
  '08011240' +
  '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60' +
  'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a'

export function vectorKey(): PrivateKey {
  return privateKeyFromProtobuf(fromHex(VECTOR_KEY_HEX))
}

export async function newSigner(): Promise<Signer> {
  return signerFor(await generateKeyPair('Ed25519'))
}

export interface TestNode {
  log: LogManager
  store: LogStore
  signer: Signer
  clock: FakeClock
}

export function newNode(
  signer: Signer,
  extra: { store?: LogStore; authorize?: (e: LogEntry) => Promise<void> } = {},
  options?: LogManagerOptions,
): TestNode {
  const store = extra.store ?? createMemoryLogStore()
  const clock = new FakeClock()
  const log = createLogManager(
    {
      store,
      signer,
      clock,
      logger: silentLogger,
      authorize: extra.authorize,
      tokenId: () => 'tok-test',
    },
    options,
  )
  return { log, store, signer, clock }
}

/** A listener that records the order entries were announced in. */
export function record(log: LogManager): LogEntry[] {
  const seen: LogEntry[] = []
  log.onEntry((e) => seen.push(e))
  return seen
}

/** Sign an arbitrary payload array as an envelope, bypassing createEntry's checks. */
export async function signRaw(signer: Signer, payload: unknown[]): Promise<Uint8Array> {
  const { encode } = await import('../../../src/util/cbor.js')
  const { SIGNING_DOMAIN } = await import('../../../src/log/entry.js')
  const p = encode(payload)
  const input = new Uint8Array(SIGNING_DOMAIN.byteLength + p.byteLength)
  input.set(SIGNING_DOMAIN)
  input.set(p, SIGNING_DOMAIN.byteLength)
  return encode([p, await signer.sign(input)])
}
