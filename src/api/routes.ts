/**
 * The control API's routes: each validates its request and calls into the daemon.
 * Request shapes are in src/api/types.ts; every handler either returns a JSON-able value
 * or throws a typed error that the HTTP layer turns into `{error}`.
 */
import type { Daemon } from '../daemon.js'
import { ApiStream, type ApiHttpServer } from './http.js'
import { EVENT_PING_INTERVAL_MS } from './types.js'
import { nodeInfoOf, peersOf } from './views.js'

export function registerRoutes(api: ApiHttpServer, d: Daemon): void {
  api.route('GET', '/v1/node', () => nodeInfoOf(d))
  api.route('GET', '/v1/peers', () => peersOf(d))
  api.route(
    'GET',
    '/v1/events',
    () =>
      new ApiStream(async (write, signal) => {
        const sub = d.events.subscribe()
        write(JSON.stringify({ type: 'node', seq: 0, time: d.clock.wall(), node: nodeInfoOf(d) }))
        const ping = setInterval(() => write(JSON.stringify({ type: 'ping', seq: 0, time: d.clock.wall() })), EVENT_PING_INTERVAL_MS)
        signal.addEventListener('abort', () => sub.close(), { once: true })
        try {
          for await (const e of sub) write(JSON.stringify(e))
        } finally {
          clearInterval(ping)
        }
      }),
  )
}
