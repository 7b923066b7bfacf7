/**
 * The web UI's bind address (`--web ADDR:PORT`, `RMESH_WEB`, config `web`): parsed and
 * judged once. Only 127.0.0.1 and ::1 count as "this machine only" and serve without a
 * login; any other address, other 127/8 aliases included, needs one (an alias is how a
 * port is usually forwarded or shared with containers, so it is not trusted).
 */
import { isIP } from 'node:net'
import { InvalidInputError } from '../util/errors.js'

export const DEFAULT_WEB = '127.0.0.1:4778'
export const WEB_OFF = 'off'

export interface WebAddress {
  host: string
  port: number
}

/** `127.0.0.1:4778`, `0.0.0.0:80`, `[::1]:4778`, or `off` (→ undefined). */
export function parseWebAddress(text: unknown): WebAddress | undefined {
  if (text === WEB_OFF || text === false) return undefined
  const bad = () =>
    new InvalidInputError(
      `web must be ADDR:PORT (e.g. 127.0.0.1:4778, 0.0.0.0:4778, [::1]:4778) or off, not ${JSON.stringify(text)}`,
      { field: 'web' },
    )
  if (typeof text !== 'string' || text.length > 64) throw bad()
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+|localhost)):(\d{1,5})$/.exec(text)
  if (!m) throw bad()
  const host = m[1] ?? (m[2] === 'localhost' ? '127.0.0.1' : m[2])
  const port = Number(m[3])
  if (!isIP(host) || (m[1] !== undefined && isIP(host) !== 6) || port > 65535) throw bad()
  return { host, port }
}

/** True when the web UI serves without a login on this address. */
export function servesWithoutLogin(a: WebAddress): boolean {
  return a.host === '127.0.0.1' || a.host === '::1'
}

/** The origin a browser uses for this address (the port is the bound one). */
export function originOf(host: string, port: number): string {
  return `http://${isIP(host) === 6 ? `[${host}]` : host}:${port}`
}
