/**
 * A node's own rules: paused by its owner (drain or now), a schedule of local hours, idle-only
 * mode, and the resource limits of its renders. Set on this node (control API, config file),
 * kept in `<dataDir>/node-rules.json`, and told to the mesh through presence.
 *
 * Invariants:
 *  - one state at a time, by precedence: paused/draining (the owner said so) > off-schedule >
 *    idle-wait > active; only `active` takes new work (the daemon offers 0 slots otherwise);
 *  - leaving `active` hands leases back at once through `handBack`, never by letting them
 *    time out: `pause --now` and the user coming back (idle-only) hand back running renders
 *    too; `pause --drain` and a closing schedule window let the running render finish and
 *    hand back only what is claimed but not started;
 *  - what the owner set here wins over the config file, field by field; `clear` stores an
 *    explicit "none" so the config's value does not come back; the file is written whole
 *    (temp file + rename), so a crash leaves the old or the new rules, never half;
 *  - time enters through the injected clock and local-time function, user activity through
 *    the injected IdleProbe: tests drive both.
 */
import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Clock, TimerHandle } from '../util/clock.js'
import { describeError, InvalidInputError } from '../util/errors.js'
import type { Logger } from '../util/logger.js'
import type { RenderLimits } from '../engines/limits.js'
import type { IdleProbe } from './idle.js'
import type { NodeState, PresenceRules } from './presence-rules.js'
import {
  isOpen,
  type LocalTime,
  nextChange,
  parseSchedule,
  type Schedule,
  systemLocalTime,
} from './schedule.js'

export type { RenderLimits } from '../engines/limits.js'
export { NODE_STATES, type NodeState, type PresenceRules } from './presence-rules.js'
export const RULES_FILE = 'node-rules.json'
/** How often the schedule and the user's activity are looked at. */
export const RULES_TICK_MS = 1_000

export type PauseMode = 'drain' | 'now'

export interface IdleRule {
  /** Render only after the user has been idle this many minutes. */
  minutes: number
  /** Without a session's idle time: CPU share of other processes (percent) that counts as use. */
  loadPercent: number
}

export const LIMIT_BOUNDS = {
  threads: [1, 1024],
  nice: [0, 19],
  memoryMiB: [256, 16 * 1024 * 1024],
  idleMinutes: [1, 1440],
  loadPercent: [1, 100],
} as const

/** What the config file and flags say (the defaults of the rules). */
export interface RulesDefaults {
  schedule?: string
  idleOnlyMinutes?: number
  idleLoadPercent?: number
  limits: RenderLimits
}

/** The owner's settings on this node (node-rules.json); null = cleared here. */
interface StoredRules {
  v: 1
  pause?: PauseMode
  schedule?: string | null
  idle?: IdleRule | null
  limits?: { [K in keyof RenderLimits]?: number | null }
}

export interface NodeRulesView {
  state: NodeState
  /** Why it takes no new work, when it does not. */
  reason?: string
  pause?: PauseMode
  schedule?: { text: string; open: boolean; source: 'node' | 'config'; nextChange?: number }
  idle?: IdleRule & { source: 'node' | 'config'; userIdleMs?: number }
  limits: RenderLimits
}

export interface NodeRulesComponents {
  dataDir: string
  clock: Clock
  logger: Logger
  idle: IdleProbe
  localTime?: LocalTime
  /** Wall time for the schedule (default clock.wall). */
  wall?: () => number
  /** This node holds leases (rendering or claimed). */
  busy(): boolean
  /** Hand leases back now: all of them, or only those not rendering yet. */
  handBack(opts: { running: boolean; reason: string }): Promise<void>
  /** The state or a setting changed: tell the mesh. */
  onChange(): void
}

export interface NodeRules {
  start(): Promise<void>
  stop(): void
  state(): NodeState
  /** Why this node takes no new work now (undefined while active). */
  reason(): string | undefined
  view(): NodeRulesView
  presence(): PresenceRules | undefined
  limits(): RenderLimits
  pause(mode: PauseMode): Promise<NodeRulesView>
  resume(): Promise<NodeRulesView>
  setSchedule(text: string | null): Promise<NodeRulesView>
  setIdle(rule: IdleRule | null): Promise<NodeRulesView>
  setLimits(limits: { [K in keyof RenderLimits]?: number | null }): Promise<NodeRulesView>
  /** Look at the schedule and the user now (the tick does this every second). */
  evaluate(): Promise<void>
}

const int = (v: unknown, field: string, [min, max]: readonly [number, number]): number => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new InvalidInputError(`${field} must be a whole number from ${min} to ${max}`, { field })
  return v
}

/** Validate an idle rule from any source (API body, file, config). */
export function validateIdleRule(v: unknown): IdleRule {
  if (!v || typeof v !== 'object' || Array.isArray(v))
    throw new InvalidInputError('idle must be {minutes, loadPercent?}', { field: 'idle' })
  const o = v as Record<string, unknown>
  return {
    minutes: int(o.minutes, 'minutes', LIMIT_BOUNDS.idleMinutes),
    loadPercent:
      o.loadPercent === undefined
        ? 25
        : int(o.loadPercent, 'loadPercent', LIMIT_BOUNDS.loadPercent),
  }
}

/** Validate limits (null clears one); unknown keys are refused. */
export function validateLimits(v: unknown): { [K in keyof RenderLimits]?: number | null } {
  if (!v || typeof v !== 'object' || Array.isArray(v))
    throw new InvalidInputError('limits must be {threads?, nice?, memoryMiB?}', { field: 'limits' })
  const out: { [K in keyof RenderLimits]?: number | null } = {}
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    if (k !== 'threads' && k !== 'nice' && k !== 'memoryMiB')
      throw new InvalidInputError(
        `unknown limit ${JSON.stringify(k).slice(0, 40)}: use threads, nice or memoryMiB`,
        {
          field: 'limits',
        },
      )
    out[k] = val === null ? null : int(val, k, LIMIT_BOUNDS[k])
  }
  return out
}

function validateStored(v: unknown, file: string): StoredRules {
  const bad = (why: string) =>
    new InvalidInputError(`${file}: ${why}; fix it, or remove it to fall back to config.json`)
  if (!v || typeof v !== 'object' || Array.isArray(v) || (v as { v?: unknown }).v !== 1)
    throw bad('not node rules of version 1')
  const o = v as Record<string, unknown>
  try {
    const out: StoredRules = { v: 1 }
    if (o.pause !== undefined) {
      if (o.pause !== 'drain' && o.pause !== 'now') throw bad('pause must be drain or now')
      out.pause = o.pause
    }
    if (o.schedule !== undefined)
      out.schedule = o.schedule === null ? null : parseSchedule(o.schedule).text
    if (o.idle !== undefined) out.idle = o.idle === null ? null : validateIdleRule(o.idle)
    if (o.limits !== undefined) out.limits = validateLimits(o.limits)
    return out
  } catch (err) {
    if (err instanceof InvalidInputError && err.message.startsWith(file)) throw err
    throw bad(describeError(err))
  }
}

export async function createNodeRules(
  components: NodeRulesComponents,
  defaults: RulesDefaults,
): Promise<NodeRules> {
  const { clock, logger, idle } = components
  const file = join(components.dataDir, RULES_FILE)
  const local = components.localTime ?? systemLocalTime
  const wall = components.wall ?? (() => clock.wall())
  const configSchedule =
    defaults.schedule === undefined ? undefined : parseSchedule(defaults.schedule)
  const configIdle: IdleRule | undefined =
    defaults.idleOnlyMinutes === undefined
      ? undefined
      : validateIdleRule({
          minutes: defaults.idleOnlyMinutes,
          loadPercent: defaults.idleLoadPercent,
        })

  let stored: StoredRules = { v: 1 }
  try {
    stored = validateStored(JSON.parse(await readFile(file, 'utf8')), file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      if (err instanceof SyntaxError)
        throw new InvalidInputError(`${file} is not valid JSON; fix or remove it`)
      throw err
    }
  }

  const schedule = (): { s: Schedule; source: 'node' | 'config' } | undefined => {
    if (stored.schedule === null) return undefined
    if (stored.schedule !== undefined) return { s: parseSchedule(stored.schedule), source: 'node' }
    return configSchedule ? { s: configSchedule, source: 'config' } : undefined
  }
  const idleRule = (): { r: IdleRule; source: 'node' | 'config' } | undefined => {
    if (stored.idle === null) return undefined
    if (stored.idle !== undefined) return { r: stored.idle, source: 'node' }
    return configIdle ? { r: configIdle, source: 'config' } : undefined
  }
  const limits = (): RenderLimits => {
    const out: RenderLimits = {}
    for (const k of ['threads', 'nice', 'memoryMiB'] as const) {
      const v = stored.limits?.[k]
      const val = v === undefined ? defaults.limits[k] : v === null ? undefined : v
      if (val !== undefined) out[k] = val
    }
    return out
  }

  let state: NodeState = 'active'
  /** Monotonic ms of the user's last activity seen (CPU fallback), or of the start. */
  let lastActive = clock.monotonic()
  let userIdleMs: number | undefined
  let userBack = false
  let timer: TimerHandle | undefined
  let running = false
  let evaluating: Promise<void> | undefined

  const persist = async () => {
    const tmp = `${file}.tmp`
    await writeFile(tmp, `${JSON.stringify(stored, null, 2)}\n`, { mode: 0o600 })
    await rename(tmp, file)
  }

  /** Refresh what the user is doing (only while idle-only is on). */
  const observeUser = async (rule: IdleRule) => {
    let ms = await idle.userIdleMs()
    if (ms === undefined) {
      const load = await idle.otherCpuLoad()
      if (load !== undefined && load * 100 > rule.loadPercent) lastActive = clock.monotonic()
      ms = clock.monotonic() - lastActive
    }
    userIdleMs = ms
    userBack = ms < rule.minutes * 60_000
  }

  const compute = (): NodeState => {
    if (stored.pause === 'now') return 'paused'
    if (stored.pause === 'drain') return components.busy() ? 'draining' : 'paused'
    const sch = schedule()
    if (sch && !isOpen(sch.s, wall(), local)) return 'off-schedule'
    if (idleRule() && userBack) return 'idle-wait'
    return 'active'
  }

  // The state from the first moment (before start): a node paused before a restart claims
  // nothing in between, and idle-only assumes its user is there until the probe says not.
  userBack = idleRule() !== undefined
  state = compute()

  const apply = async () => {
    const next = compute()
    if (next === state) return
    const prev = state
    state = next
    logger.info('node state', { from: prev, to: next, reason: reasonOf(next) })
    components.onChange()
    // Leaving active, what it holds goes back at once (see the header for which); so does a
    // render still finishing (draining, off schedule) when the owner says now.
    const all = next === 'paused' || next === 'idle-wait'
    if (prev !== 'active' && !(all && components.busy())) return
    await components
      .handBack({ running: all, reason: reasonOf(next) ?? next })
      .catch((err) => logger.warn('could not hand leases back', { err: describeError(err) }))
  }

  const evaluate = async () => {
    const rule = idleRule()
    if (rule) await observeUser(rule.r).catch(() => {})
    else userBack = false
    await apply()
  }

  /** One evaluation at a time; API changes wait for the one running. */
  const serial = (): Promise<void> => {
    const run = (evaluating ?? Promise.resolve()).then(evaluate, evaluate)
    evaluating = run
    return run
  }

  const tick = () => {
    if (!running) return
    void serial().finally(() => {
      if (running) timer = clock.setTimeout(tick, RULES_TICK_MS)
    })
  }

  function reasonOf(s: NodeState): string | undefined {
    switch (s) {
      case 'active':
        return undefined
      case 'paused':
        return 'paused by its owner (rmesh node resume)'
      case 'draining':
        return 'draining: finishing its current chunk, then paused (rmesh node resume)'
      case 'off-schedule': {
        const sch = schedule()
        return `outside its schedule (${sch?.s.text ?? '?'})`
      }
      case 'idle-wait':
        return `idle-only: waiting until its user has been idle ${idleRule()?.r.minutes ?? '?'} min`
    }
  }

  const view = (): NodeRulesView => {
    const sch = schedule()
    const rule = idleRule()
    const now = wall()
    return {
      state,
      ...(reasonOf(state) ? { reason: reasonOf(state) } : {}),
      ...(stored.pause ? { pause: stored.pause } : {}),
      ...(sch
        ? {
            schedule: {
              text: sch.s.text,
              open: isOpen(sch.s, now, local),
              source: sch.source,
              ...(() => {
                const n = nextChange(sch.s, now, local)
                return n === undefined ? {} : { nextChange: n }
              })(),
            },
          }
        : {}),
      ...(rule
        ? {
            idle: {
              ...rule.r,
              source: rule.source,
              ...(userIdleMs !== undefined ? { userIdleMs: Math.round(userIdleMs) } : {}),
            },
          }
        : {}),
      limits: limits(),
    }
  }

  const change = async (mutate: () => void) => {
    mutate()
    await persist()
    await serial()
    components.onChange()
    return view()
  }

  return {
    async start() {
      running = true
      await serial()
      timer = clock.setTimeout(tick, RULES_TICK_MS)
    },
    stop() {
      running = false
      if (timer) clock.clearTimeout(timer)
    },
    state: () => state,
    reason: () => reasonOf(state),
    view,
    presence() {
      const sch = schedule()
      const rule = idleRule()
      if (state === 'active' && !sch && !rule) return undefined
      const next = sch ? nextChange(sch.s, wall(), local) : undefined
      return {
        state,
        ...(sch ? { schedule: sch.s.text } : {}),
        ...(rule ? { idleMinutes: rule.r.minutes } : {}),
        ...(next !== undefined ? { next } : {}),
      }
    },
    limits,
    pause: (mode) =>
      change(() => {
        // Draining while already stopped now would restart nothing: now stays now.
        stored.pause = mode
      }),
    resume: () =>
      change(() => {
        delete stored.pause
      }),
    setSchedule: (text) =>
      change(() => {
        stored.schedule = text === null ? null : parseSchedule(text).text
      }),
    setIdle: (rule) =>
      change(() => {
        stored.idle = rule === null ? null : validateIdleRule(rule)
        lastActive = clock.monotonic()
      }),
    setLimits: (l) =>
      change(() => {
        stored.limits = { ...stored.limits, ...validateLimits(l) }
      }),
    evaluate: serial,
  }
}
