/**
 * Engine version requirements: a space-separated list of comparators, all of which must
 * hold (`>=3.4`, `>=3.4 <4`, `3.6.2`, `^4.1`, `~3.4`). Versions are up to three numeric
 * parts; a missing part is 0. Pure and total: garbage never matches and never throws.
 */

const COMPARATOR_RE = /^(>=|<=|>|<|=|\^|~)?(\d{1,6})(?:\.(\d{1,6}))?(?:\.(\d{1,6}))?$/
const VERSION_RE = /^v?(\d{1,6})(?:\.(\d{1,6}))?(?:\.(\d{1,6}))?/

type Triple = [number, number, number]

function cmp(a: Triple, b: Triple): number {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return 0
}

export function parseVersion(text: string): Triple | undefined {
  const m = VERSION_RE.exec(text.trim())
  if (!m) return undefined
  return [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)]
}

export function isVersionRequirement(text: string): boolean {
  const parts = text.trim().split(/\s+/)
  return parts.length > 0 && parts.length <= 4 && parts.every((p) => COMPARATOR_RE.test(p))
}

/**
 * One `--require` value: `blender`, `blender>=3.4`, `blender>=4.2 <4.3` (spaces after an
 * operator are allowed, `==` is `=`) → the engine and its comparators (undefined: any
 * version). Undefined when it is not a requirement. The CLI and the daemon both check with it.
 */
export function parseEngineRange(text: string): { engine: string; range?: string } | undefined {
  const m = /^([a-z][a-z0-9_-]{0,31})\s*(.*)$/s.exec(text.trim())
  if (!m) return undefined
  const rest = m[2]
    .replace(/==/g, '=')
    .replace(/(>=|<=|>|<|=|\^|~)\s+(?=\d)/g, '$1')
    .trim()
  if (rest === '') return { engine: m[1] }
  return isVersionRequirement(rest) ? { engine: m[1], range: rest } : undefined
}

/** Does `version` (e.g. '3.4.1') satisfy `requirement` (e.g. '>=3.4')? Undefined requirement: yes. */
export function versionSatisfies(version: string, requirement: string | undefined): boolean {
  if (requirement === undefined) return true
  const v = parseVersion(version)
  if (!v || !isVersionRequirement(requirement)) return false
  return requirement
    .trim()
    .split(/\s+/)
    .every((part) => {
      const m = COMPARATOR_RE.exec(part)!
      const op = m[1] ?? '='
      const given = [m[3] !== undefined, m[4] !== undefined]
      const r: Triple = [Number(m[2]), Number(m[3] ?? 0), Number(m[4] ?? 0)]
      const c = cmp(v, r)
      switch (op) {
        case '>=':
          return c >= 0
        case '>':
          return c > 0
        case '<=':
          return c <= 0
        case '<':
          return c < 0
        case '^':
          return c >= 0 && v[0] === r[0]
        case '~':
          return c >= 0 && v[0] === r[0] && v[1] === r[1]
        default:
          // '=3.4' means any 3.4.x when the patch is not given.
          return v[0] === r[0] && (!given[0] || v[1] === r[1]) && (!given[1] || v[2] === r[2])
      }
    })
}

/**
 * The installed version of `engine` a chunk runs with: the newest that meets `requirement`
 * (undefined requirement: the newest installed). Undefined when none does; eligibility
 * (jobs/eligibility.ts) uses the same test, so a node that claimed a chunk finds one.
 */
export function pickVersion(
  installed: readonly { name: string; version: string }[],
  engine: string,
  requirement: string | undefined,
): string | undefined {
  let best: { triple: Triple; version: string } | undefined
  for (const e of installed) {
    if (e.name !== engine || !versionSatisfies(e.version, requirement)) continue
    const triple = parseVersion(e.version)
    if (triple && (!best || cmp(triple, best.triple) > 0)) best = { triple, version: e.version }
  }
  return best?.version
}
