/**
 * The data directory and the global flags that work anywhere on the command line.
 *
 * `--dir PATH` (or `--dir=PATH`) and `--no-color`/`--color` are taken out of argv before
 * commander parses it, so they work before or after the command name. Everything after a
 * bare `--` is left alone. Precedence of the data directory: flag, RMESH_DIR, platform path.
 */
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { InvalidInputError } from '../src/util/errors.js'

export interface GlobalFlags {
  dir?: string
  color?: boolean
  rest: string[]
}

export function extractGlobalFlags(argv: readonly string[]): GlobalFlags {
  const rest: string[] = []
  const out: GlobalFlags = { rest }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--') {
      rest.push(...argv.slice(i))
      break
    }
    if (a === '--dir') {
      const v = argv[i + 1]
      if (v === undefined || v === '' || v.startsWith('-')) {
        throw new InvalidInputError('--dir needs a path, e.g. --dir ~/.local/share/rmesh')
      }
      out.dir = v
      i++
    } else if (a.startsWith('--dir=')) {
      const v = a.slice('--dir='.length)
      if (v === '')
        throw new InvalidInputError('--dir needs a path, e.g. --dir=~/.local/share/rmesh')
      out.dir = v
    } else if (a === '--no-color') out.color = false
    else if (a === '--color') out.color = true
    else rest.push(a)
  }
  return out
}

export interface DataDirInputs {
  flag?: string
  env: Record<string, string | undefined>
  platform: NodeJS.Platform
  home: string
  cwd: string
}

export function defaultDataDir(
  env: Record<string, string | undefined>,
  platform: NodeJS.Platform,
  home: string,
): string {
  if (platform === 'darwin') return join(home, 'Library', 'Application Support', 'rmesh')
  if (platform === 'win32') return join(env.LOCALAPPDATA ?? join(home, 'AppData', 'Local'), 'rmesh')
  const xdg = env.XDG_DATA_HOME
  // XDG says a relative XDG_DATA_HOME is invalid and must be ignored.
  return join(xdg?.startsWith('/') ? xdg : join(home, '.local', 'share'), 'rmesh')
}

export function resolveDataDir(i: DataDirInputs): string {
  const chosen = i.flag ?? (i.env.RMESH_DIR || undefined)
  if (chosen === undefined) return defaultDataDir(i.env, i.platform, i.home)
  const expanded =
    chosen === '~' || chosen.startsWith('~/') ? join(i.home, chosen.slice(1)) : chosen
  return resolve(i.cwd, expanded)
}

export function processDataDirInputs(flag?: string): DataDirInputs {
  return { flag, env: process.env, platform: process.platform, home: homedir(), cwd: process.cwd() }
}
