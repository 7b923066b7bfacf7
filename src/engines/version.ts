/**
 * Version strings and requirements (`blender>=3.4`), compared numerically component by
 * component; missing components count as 0 (`3.4` == `3.4.0`). Pre-release suffixes
 * (`3.4.1-rc`) are ignored: engines report plain dotted numbers.
 */
import { EngineError } from './types.js'

export type VersionOp = '>=' | '<=' | '>' | '<' | '=' | '==' | '^' | '~'

export interface Requirement {
  name: string
  op?: VersionOp
  version?: string
}

function parts(v: string): number[] {
  const m = /^\d+(?:\.\d+)*/.exec(v.trim())
  return m ? m[0].split('.').map(Number) : []
}

export function isVersion(v: string): boolean {
  return /^\d+(?:\.\d+){0,3}$/.test(v)
}

/** Negative when a < b, 0 when equal, positive when a > b. */
export function compareVersions(a: string, b: string): number {
  const pa = parts(a)
  const pb = parts(b)
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0)
    if (d !== 0) return d
  }
  return 0
}

/** `blender`, `blender>=3.4`, `blender=3.4.1`, `blender^3.4`, `ffmpeg~5.1`. */
export function parseRequirement(req: string): Requirement {
  const m =
    /^\s*([a-z][a-z0-9_-]{0,63})\s*(?:(>=|<=|==|=|>|<|\^|~)\s*(\d+(?:\.\d+){0,3}))?\s*$/i.exec(req)
  if (!m) {
    throw new EngineError(
      'ERR_ENGINE_PARAMS',
      `engine requirement "${req}" is not NAME or NAME<op>VERSION (for example blender>=3.4)`,
    )
  }
  return m[2] ? { name: m[1], op: m[2] as VersionOp, version: m[3] } : { name: m[1] }
}

export function versionSatisfies(
  version: string,
  op: VersionOp | undefined,
  wanted: string | undefined,
): boolean {
  if (op === undefined || wanted === undefined) return true
  const c = compareVersions(version, wanted)
  const w = parts(wanted)
  const v = parts(version)
  switch (op) {
    case '>=':
      return c >= 0
    case '<=':
      return c <= 0
    case '>':
      return c > 0
    case '<':
      return c < 0
    case '=':
    case '==':
      // `=3.4` accepts any 3.4.x: the requirement names only the components it cares about.
      return w.every((n, i) => (v[i] ?? 0) === n)
    case '^':
      return c >= 0 && (v[0] ?? 0) === w[0]
    case '~':
      return c >= 0 && (v[0] ?? 0) === w[0] && (v[1] ?? 0) === (w[1] ?? 0)
  }
}

/** True when one of `installed` ({name, version}) meets `req`. */
export function meetsRequirement(
  installed: { name: string; version: string }[],
  req: string | Requirement,
): boolean {
  const r = typeof req === 'string' ? parseRequirement(req) : req
  return installed.some((e) => e.name === r.name && versionSatisfies(e.version, r.op, r.version))
}
