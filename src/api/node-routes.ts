/**
 * The control API's routes for this node's own rules (`rmesh node …`): pause, resume,
 * schedule, idle-only, render limits; and `detect` (find the Blenders and devices again). Each validates its body here (shape) and in
 * src/node/rules.ts (values); a refused request changes nothing.
 */
import type { DaemonView } from './daemon-view.js'
import { InvalidInputError } from '../util/errors.js'
import type { ApiHttpServer } from './http.js'
import type * as Api from './types.js'

const body = (b: unknown): Record<string, unknown> => {
  if (b === undefined || b === null) return {}
  if (typeof b !== 'object' || Array.isArray(b))
    throw new InvalidInputError('the request body must be a JSON object')
  return b as Record<string, unknown>
}

const only = (b: Record<string, unknown>, keys: string[]) => {
  for (const k of Object.keys(b))
    if (!keys.includes(k))
      throw new InvalidInputError(
        `unknown field ${JSON.stringify(k).slice(0, 40)}; expected ${keys.join(', ') || 'none'}`,
        { field: k.slice(0, 40) },
      )
}

export function registerNodeRoutes(api: ApiHttpServer, d: DaemonView): void {
  const view = (v = d.rules.view()): Api.NodeRulesView => v
  api.route('GET', '/v1/node/rules', () => view())
  // Look for Blenders and their devices again (a new release unpacked, a driver installed).
  api.route('POST', '/v1/node/detect', async (req) => {
    only(body(req.body), [])
    await d.engines.refresh()
    await d.engines.devicesDetected()
    return { engines: d.engines.describe(), blenders: d.engines.blenders() }
  })
  api.route('POST', '/v1/node/pause', async (req) => {
    const b = body(req.body)
    only(b, ['mode'])
    const mode = b.mode ?? 'drain'
    if (mode !== 'drain' && mode !== 'now')
      throw new InvalidInputError('mode must be drain or now', { field: 'mode' })
    return view(await d.rules.pause(mode))
  })
  api.route('POST', '/v1/node/resume', async (req) => {
    only(body(req.body), [])
    return view(await d.rules.resume())
  })
  api.route('POST', '/v1/node/schedule', async (req) => {
    const b = body(req.body)
    only(b, ['schedule'])
    if (b.schedule !== null && typeof b.schedule !== 'string')
      throw new InvalidInputError('schedule must be text like "mon-fri 19:00-08:00", or null', {
        field: 'schedule',
      })
    return view(await d.rules.setSchedule(b.schedule))
  })
  api.route('POST', '/v1/node/idle', async (req) => {
    const b = body(req.body)
    only(b, ['minutes', 'loadPercent'])
    if (b.minutes === null) return view(await d.rules.setIdle(null))
    return view(
      await d.rules.setIdle({
        minutes: b.minutes as number,
        loadPercent: (b.loadPercent ?? 25) as number,
      }),
    )
  })
  api.route('POST', '/v1/node/limits', async (req) => {
    const b = body(req.body)
    only(b, ['threads', 'nice', 'memoryMiB'])
    return view(await d.rules.setLimits(b))
  })
}
