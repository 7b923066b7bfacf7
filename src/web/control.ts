/**
 * Starts the web UI for a daemon and adds its control-socket routes (only the local user
 * reaches those; the web server never exposes them):
 *   GET  /v1/web           → {url, loginRequired, passwordSet}
 *   POST /v1/web/password  {password} → {passwordSet: true}
 *   POST /v1/web/link      → {url, expires}   a one-time login link
 * The web server sees the daemon only through the control API's router.
 */
import type { ApiHttpServer } from '../api/http.js'
import { isRmeshError, RmeshError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'
import { DEFAULT_WEB, parseWebAddress } from './address.js'
import { createWebAuth } from './auth.js'
import { startWebServer, type WebServer } from './server.js'

export async function startWebFor(
  api: ApiHttpServer,
  options: { web: string; dataDir: string; logger: Logger },
): Promise<WebServer | undefined> {
  const address = parseWebAddress(options.web)
  const logger = options.logger
  const auth = createWebAuth(options.dataDir)
  let web: WebServer | undefined
  if (address) {
    try {
      web = await startWebServer({ router: api.router, auth, address, logger })
    } catch (err) {
      const inUse = (err as NodeJS.ErrnoException).code === 'EADDRINUSE'
      // Several daemons on one machine (tests, the demo): the default port goes to the first.
      if (!inUse || options.web !== DEFAULT_WEB)
        throw new RmeshError(
          'ERR_WEB_BIND',
          `cannot serve the web UI on ${options.web}: ${(err as Error).message}; choose another --web ADDR:PORT or --web off`,
        )
      web = await startWebServer({
        router: api.router,
        auth,
        address: { ...address, port: 0 },
        logger,
      })
      logger.warn('the default web port is taken; serving the web UI elsewhere', { url: web.url })
    }
    logger.info('web UI', { url: web.url, loginRequired: web.loginRequired })
  }
  const need = () => {
    if (!web)
      throw new RmeshError(
        'ERR_NOT_FOUND',
        'the web UI is off on this node (start the daemon with --web ADDR:PORT)',
      )
    return web
  }
  api.route('GET', '/v1/web', async () => ({
    url: need().url,
    loginRequired: need().loginRequired,
    passwordSet: await auth.hasPassword(),
  }))
  api.route('POST', '/v1/web/password', async (req) => {
    await auth.setPassword((req.body as { password?: string } | undefined)?.password as string)
    return { passwordSet: true }
  })
  api.route('POST', '/v1/web/link', () => {
    const w = need()
    if (!w.loginRequired) return { url: `${w.url}/`, expires: null }
    const { secret, expires } = auth.issueLink()
    return { url: `${w.url}/login?link=${secret}`, expires }
  })
  return web
}

export const isWebBindError = (err: unknown) => isRmeshError(err, 'ERR_WEB_BIND')
