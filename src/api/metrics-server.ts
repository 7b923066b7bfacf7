/**
 * The Prometheus endpoint (`--metrics-port`): GET /metrics on 127.0.0.1 only (a scraper on
 * the same machine, or an SSH tunnel, reads it); every other path is 404, a failed render
 * of the metrics 500. Never bound beyond loopback.
 */
import type { DaemonView } from './daemon-view.js'
import { createServer } from '../util/node-http.js'
import { renderMetrics } from './metrics.js'

export async function startMetricsServer(
  daemon: DaemonView,
  port: number,
): Promise<{ close(): Promise<void> }> {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end()
      return
    }
    renderMetrics(daemon).then(
      (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(text),
      () => res.writeHead(500).end(),
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve())
  })
  return { close: () => new Promise<void>((r) => server.close(() => r())) }
}
