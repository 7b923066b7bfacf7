/**
 * The Cycles devices an installed Blender sees: detected by Blender's own Python
 * (blender-scripts.ts `devicesScript`, Cycles' preferences `get_devices_for_type`), once per
 * executable at start and on re-detection, and turned into the kinds a node advertises
 * (presence `devices`, jobs/devices.ts).
 *
 * Invariants:
 *  - the CPU is always among the kinds: a Blender that cannot report (no Cycles, a crash,
 *    a timeout) is taken to render on the CPU only, never to have a GPU;
 *  - a report is checked before use (bounded names, known types); unknown device types are
 *    ignored, so a newer Blender's new backend never breaks an older rmesh;
 *  - `RMESH_TEST_BLENDER_DEVICES` (config `testBlenderDevices`) is a test hook: a recorded
 *    report used instead of running Blender, so tests can stand for a GPU machine and do not
 *    pay a Blender start per daemon. It never comes from a peer.
 */
import { DEVICE_KINDS, DEVICES_LIMITS, type DeviceKind } from '../jobs/devices.js'
import type { Logger } from '../util/logger.js'
import { parseMarker } from './blender-run.js'
import { devicesScript } from './blender-scripts.js'
import { startProcess } from './process.js'

/** What one Blender executable sees. */
export interface DetectedDevices {
  kinds: DeviceKind[]
  /** Display names of its GPUs, distinct. */
  names: string[]
}

export const CPU_ONLY: DetectedDevices = { kinds: ['cpu'], names: [] }
const DETECT_TIMEOUT_MS = 60_000

/**
 * A `RMESH_DEVICES` payload (`{blender, devices: [{name, type, id}], error?}`) → kinds and
 * GPU names. Garbage yields CPU only.
 */
export function parseDeviceReport(report: unknown): DetectedDevices {
  const list = (report as { devices?: unknown } | null)?.devices
  if (!Array.isArray(list)) return CPU_ONLY
  const kinds = new Set<DeviceKind>(['cpu'])
  const names = new Set<string>()
  for (const d of list.slice(0, 256)) {
    const type = typeof d?.type === 'string' ? d.type.toLowerCase() : ''
    if (type === 'cpu' || !(DEVICE_KINDS as readonly string[]).includes(type)) continue
    kinds.add(type as DeviceKind)
    if (typeof d.name === 'string' && d.name.length > 0 && names.size < DEVICES_LIMITS.names)
      names.add(d.name.slice(0, DEVICES_LIMITS.name))
  }
  return { kinds: DEVICE_KINDS.filter((k) => kinds.has(k)), names: [...names] }
}

/** Runs `blender -b --factory-startup` with the detection script; CPU only on any failure. */
export async function detectDevices(
  blender: string,
  options: { signal?: AbortSignal; timeoutMs?: number; logger?: Logger; recorded?: unknown } = {},
): Promise<DetectedDevices> {
  if (options.recorded !== undefined) return parseDeviceReport(options.recorded)
  let report: unknown
  const p = startProcess({
    file: blender,
    // Factory settings: which devices exist does not depend on the user's preferences, and
    // a broken preference file must not hide a GPU.
    args: ['-b', '--factory-startup', '--python-exit-code', '3', '--python-expr', devicesScript()],
    signal: options.signal,
    timeoutMs: options.timeoutMs ?? DETECT_TIMEOUT_MS,
    onLine: (line) => {
      const m = parseMarker(line)
      if (m?.tag === 'DEVICES') report = m.payload
    },
  })
  const outcome = await p.done
  if (report === undefined) {
    options.logger?.warn('Blender did not report its devices; taking it to render on the CPU', {
      blender,
      exitCode: outcome.exitCode,
      tail: outcome.tail.slice(-5),
    })
    return CPU_ONLY
  }
  return parseDeviceReport(report)
}
