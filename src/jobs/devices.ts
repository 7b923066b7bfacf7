/**
 * Render devices (Cycles' CPU, CUDA, OptiX, HIP, oneAPI, Metal): the vocabulary a node's
 * presence (`devices`) and a job's announce (`requirements.device`) share, the check of a
 * peer's `devices` field, and the one rule that says whether a node can run a job's chunk on
 * the device it asks for. Pure.
 *
 * Invariants:
 *  - devices are per engine version (each installed Blender sees its own: an old Blender may
 *    lack OptiX or oneAPI); a node runs a chunk with the newest installed version that meets
 *    the job's version requirement AND has the device (`pickRunnable`), and eligibility and
 *    the lease manager use the same function, so a node that claims a chunk finds one;
 *  - no device requirement asks nothing of devices (an older node, or one whose detection has
 *    not finished, is eligible); a device requirement is met only by a version whose detected
 *    kinds include it (`gpu`: any GPU kind), never by an unknown one;
 *  - `validateDevices` throws InvalidInputError on anything else than the documented shape
 *    (protocols/presence.md `devices`): the whole heartbeat is dropped, like any bad field.
 */
import { InvalidInputError } from '../util/errors.js'
import { pickVersion } from './version.js'

export const DEVICE_KINDS = ['cpu', 'cuda', 'optix', 'hip', 'oneapi', 'metal'] as const
export type DeviceKind = (typeof DEVICE_KINDS)[number]
export const GPU_KINDS: readonly DeviceKind[] = ['optix', 'cuda', 'hip', 'oneapi', 'metal']
/** What a job may ask for: one kind, or `gpu` (any GPU kind). */
export const DEVICE_REQUESTS = [...DEVICE_KINDS, 'gpu'] as const
export type DeviceRequest = (typeof DEVICE_REQUESTS)[number]

/** Bounds of the presence field. */
export const DEVICES_LIMITS = { entries: 8, names: 8, name: 64, version: 64 } as const

/** What one installed engine version sees (presence `devices` entry). */
export interface EngineDevices {
  engine: string
  version: string
  /** The kinds it can render with, `cpu` always among them, in DEVICE_KINDS order. */
  kinds: DeviceKind[]
  /** Display names of its GPUs (`NVIDIA GeForce RTX 4090`), for people only. */
  names?: string[]
}

const LABEL: Record<DeviceRequest, string> = {
  cpu: 'a CPU device',
  cuda: 'a CUDA device',
  optix: 'an OptiX device',
  hip: 'a HIP device',
  oneapi: 'a oneAPI device',
  metal: 'a Metal device',
  gpu: 'a GPU (CUDA, OptiX, HIP, oneAPI or Metal)',
}

export function isDeviceRequest(x: unknown): x is DeviceRequest {
  return typeof x === 'string' && (DEVICE_REQUESTS as readonly string[]).includes(x)
}

/** `an OptiX device`, for "waiting: no node has an OptiX device". */
export function deviceLabel(request: DeviceRequest): string {
  return LABEL[request]
}

/** Do these kinds meet the request? Undefined request: yes. */
export function kindsMeet(kinds: readonly string[], request: DeviceRequest | undefined): boolean {
  if (request === undefined) return true
  if (request === 'gpu') return kinds.some((k) => (GPU_KINDS as readonly string[]).includes(k))
  return kinds.includes(request)
}

/**
 * The version of `engine` a node runs a chunk with: the newest installed that meets the
 * version `requirement` and, when the job asks for a device, has it. Undefined: none does.
 */
export function pickRunnable(
  installed: readonly { name: string; version: string }[],
  devices: readonly EngineDevices[] | undefined,
  engine: string,
  requirement: string | undefined,
  device: DeviceRequest | undefined,
): string | undefined {
  if (device === undefined) return pickVersion(installed, engine, requirement)
  const usable = installed.filter((e) =>
    (devices ?? []).some(
      (d) => d.engine === e.name && d.version === e.version && kindsMeet(d.kinds, device),
    ),
  )
  return pickVersion(usable, engine, requirement)
}

/** A peer's presence `devices` field, checked (throws InvalidInputError). */
export function validateDevices(value: unknown): EngineDevices[] {
  const bad = (why: string) => new InvalidInputError(`presence devices: ${why}`)
  if (!Array.isArray(value) || value.length > DEVICES_LIMITS.entries)
    throw bad(`must be a list of at most ${DEVICES_LIMITS.entries} entries`)
  for (const x of value) {
    if (!x || typeof x !== 'object' || Array.isArray(x)) throw bad('entry is not a map')
    const e = x as Record<string, unknown>
    for (const k of Object.keys(e))
      if (!['engine', 'version', 'kinds', 'names'].includes(k)) throw bad(`unknown field ${k}`)
    if (typeof e.engine !== 'string' || !/^[a-z][a-z0-9_-]{0,31}$/.test(e.engine))
      throw bad('engine must be an engine name')
    if (
      typeof e.version !== 'string' ||
      e.version.length === 0 ||
      e.version.length > DEVICES_LIMITS.version
    )
      throw bad(`version must be a string of 1..${DEVICES_LIMITS.version}`)
    if (
      !Array.isArray(e.kinds) ||
      e.kinds.length === 0 ||
      e.kinds.length > DEVICE_KINDS.length ||
      !e.kinds.every((k) => (DEVICE_KINDS as readonly unknown[]).includes(k)) ||
      new Set(e.kinds).size !== e.kinds.length
    )
      throw bad(`kinds must be distinct names among ${DEVICE_KINDS.join(', ')}`)
    if (
      e.names !== undefined &&
      (!Array.isArray(e.names) ||
        e.names.length > DEVICES_LIMITS.names ||
        !e.names.every((n) => typeof n === 'string' && n.length <= DEVICES_LIMITS.name))
    )
      throw bad(`names must be at most ${DEVICES_LIMITS.names} strings ≤ ${DEVICES_LIMITS.name}`)
  }
  return value as EngineDevices[]
}
