/**
 * The `rules` field of a presence heartbeat (protocols/presence.md): what a node's own rules
 * make it do now, as the mesh sees it. Validation of a peer's field lives here, beside the
 * shape, so presence.ts only calls it.
 *
 * Invariants: a field that fails any check throws InvalidInputError (the whole heartbeat is
 * dropped and counted, like any other bad field); a schedule a peer announces must parse
 * with the same parser this node uses, so nonsense never reaches a screen.
 */
import { InvalidInputError } from '../util/errors.js'
import { parseSchedule } from './schedule.js'

export const NODE_STATES = ['active', 'paused', 'draining', 'off-schedule', 'idle-wait'] as const
export type NodeState = (typeof NODE_STATES)[number]

export interface PresenceRules {
  state: NodeState
  /** Its schedule, normalised (schedule.ts syntax). */
  schedule?: string
  /** Idle-only: it renders once its user has been idle this many minutes. */
  idleMinutes?: number
  /** Wall ms (the node's clock) of its schedule's next change; informational only. */
  next?: number
}

const KEYS = new Set(['state', 'schedule', 'idleMinutes', 'next'])

export function validatePresenceRules(value: unknown): PresenceRules {
  const bad = (why: string) => new InvalidInputError(`presence rules: ${why}`)
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw bad('not an object')
  const r = value as Record<string, unknown>
  for (const k of Object.keys(r)) if (!KEYS.has(k)) throw bad('unknown field')
  if (!NODE_STATES.includes(r.state as NodeState)) throw bad('unknown state')
  if (r.schedule !== undefined) {
    try {
      parseSchedule(r.schedule)
    } catch {
      throw bad('schedule does not parse')
    }
  }
  if (
    r.idleMinutes !== undefined &&
    (!Number.isInteger(r.idleMinutes) ||
      (r.idleMinutes as number) < 1 ||
      (r.idleMinutes as number) > 1440)
  )
    throw bad('idleMinutes must be an integer from 1 to 1440')
  if (r.next !== undefined && (!Number.isSafeInteger(r.next) || (r.next as number) < 0))
    throw bad('next must be an integer of ms ≥ 0')
  return r as unknown as PresenceRules
}
