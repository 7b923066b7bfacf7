/**
 * The video and scheduling options of a submit request, checked into announce fields: the
 * codec and its encode settings (jobs/video-options.ts decides what is valid), the frame
 * rate (the request's, else the scene's exact `fps / fps_base`), and required tags.
 *
 * Invariants: throws InvalidInputError naming the request field; what it returns passes
 * the announce schema, so a submit is refused here rather than ignored by every node.
 *
 * Also the Blender options: the device a job asks for, and the default version requirement
 * ("the submitter's version": the major.minor of the Blender that read the scene here, as
 * `>=X.Y <X.Y+1`, unless the request requires versions itself or says `anyBlender`).
 */
import type * as Api from '../api/types.js'
import { DEVICE_REQUESTS, type DeviceRequest, isDeviceRequest } from '../jobs/devices.js'
import { parseVersion } from '../jobs/version.js'
import type { SceneInfo } from '../engines/types.js'
import { LIMITS, type OutputFormat } from '../jobs/entries.js'
import {
  checkVideoOutput,
  FPS_RANGE,
  frameRateOf,
  parseFrameRate,
  type VideoOutput,
} from '../jobs/video-options.js'
import { InvalidInputError, isRmeshError } from '../util/errors.js'

export function checkVideoRequest(
  req: Api.SubmitRequest,
  format: OutputFormat,
  info: SceneInfo | undefined,
): VideoOutput {
  let frameRate = req.frameRate
  if (frameRate === undefined && info) {
    frameRate = frameRateOf(info.fpsInt ?? info.fps, info.fpsBase ?? 1)
  }
  const parsed = parseFrameRate(frameRate)
  const rate = parsed ? parsed.num / parsed.den : (info?.fps ?? 24)
  const fps = Math.min(FPS_RANGE.max, Math.max(FPS_RANGE.min, Math.round(rate)))
  const raw: Record<string, unknown> = {
    video: req.video,
    fps,
    // Only when the integer `fps` does not say it already (older nodes read `fps`).
    frameRate:
      parsed && parsed.num / parsed.den === fps && req.frameRate === undefined
        ? undefined
        : frameRate,
    crf: req.crf,
    bitrateKbps: req.bitrateKbps,
    passes: req.passes,
    // HLG is 10-bit; asking for it is enough.
    bitDepth: req.bitDepth ?? (req.hdr !== undefined ? 10 : undefined),
    hdr: req.hdr,
  }
  return checkVideoOutput(raw, format, (why) => {
    const field = /^output\.(\w+)/.exec(why)?.[1] ?? 'video'
    throw new InvalidInputError(why.replace(/^output\./, ''), { field })
  })
}

export function checkTags(tags: unknown): string[] | undefined {
  if (tags === undefined) return undefined
  if (
    !Array.isArray(tags) ||
    tags.length > LIMITS.maxTags ||
    !tags.every((t) => typeof t === 'string' && /^[A-Za-z0-9._-]{1,64}$/.test(t))
  ) {
    throw new InvalidInputError(
      `tags must be at most ${LIMITS.maxTags} names of 1..64 letters, digits, . _ -`,
      { field: 'tags' },
    )
  }
  return tags.length ? [...new Set(tags as string[])] : undefined
}

/** `device`: only for Blender jobs; undefined when not asked. */
export function checkDevice(device: unknown, engineName: string): DeviceRequest | undefined {
  if (device === undefined) return undefined
  if (!isDeviceRequest(device))
    throw new InvalidInputError(`device must be one of ${DEVICE_REQUESTS.join(', ')}`, {
      field: 'device',
    })
  if (engineName !== 'blender')
    throw new InvalidInputError(`device is for Blender jobs; engine ${engineName} has none`, {
      field: 'device',
    })
  return device
}

/**
 * The job's version requirement: the request's own, else (Blender, not `anyBlender`) the
 * submitter's Blender's major.minor (`3.4.1` → `>=3.4 <3.5`), else none.
 */
export function blenderRequirement(
  requested: string | undefined,
  anyBlender: unknown,
  engineName: string,
  submitterVersion: string | undefined,
): string | undefined {
  if (anyBlender !== undefined && typeof anyBlender !== 'boolean')
    throw new InvalidInputError('anyBlender must be true or false', { field: 'anyBlender' })
  if (anyBlender && requested !== undefined)
    throw new InvalidInputError(
      'anyBlender and require contradict each other: give one (require pins versions, anyBlender takes any)',
      { field: 'anyBlender' },
    )
  if (requested !== undefined || anyBlender || engineName !== 'blender') return requested
  const v = submitterVersion === undefined ? undefined : parseVersion(submitterVersion)
  return v ? `>=${v[0]}.${v[1]} <${v[0]}.${v[1] + 1}` : undefined
}

/**
 * `after`: the jobs (ids or unique prefixes) this one waits for, resolved to full ids on
 * this node's replica. A job unknown here, or already failed or canceled, is refused now:
 * the job would only fail once announced.
 */
export function checkAfter(
  after: unknown,
  resolveId: (idOrPrefix: string) => string,
  stateOf: (jobId: string) => string | undefined,
): string[] | undefined {
  if (after === undefined) return undefined
  if (
    !Array.isArray(after) ||
    after.length === 0 ||
    after.length > LIMITS.maxAfter ||
    !after.every((a) => typeof a === 'string')
  )
    throw new InvalidInputError(`after must list 1..${LIMITS.maxAfter} job ids`, {
      field: 'after',
    })
  const ids: string[] = []
  for (const a of after as string[]) {
    let id: string
    try {
      id = resolveId(a)
    } catch (err) {
      if (!isRmeshError(err)) throw err
      throw new InvalidInputError(
        err.code === 'ERR_NOT_FOUND'
          ? `after: job ${a} is not known on this mesh (rmesh jobs lists the jobs)`
          : `after: ${err.message}`,
        { field: 'after', cause: err.code },
      )
    }
    const state = stateOf(id)
    if (state === 'failed' || state === 'canceled')
      throw new InvalidInputError(
        `after: job ${id} has ${state === 'failed' ? 'failed' : 'been canceled'}, so this job could never start; retry it first (rmesh retry ${id}) or leave it out`,
        { field: 'after' },
      )
    if (!ids.includes(id)) ids.push(id)
  }
  return ids
}
