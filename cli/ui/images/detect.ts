/**
 * Which image protocol the dashboard's terminal speaks, from its environment (Ink owns
 * stdin, so the terminal is not queried). An explicit choice (`--images`, RMESH_IMAGES)
 * wins; a multiplexer (tmux, screen) means none unless chosen, since it would swallow or
 * misplace the sequences; an unknown terminal means none: text only, never garbage.
 */
import { InvalidInputError } from '../../../src/util/errors.js'
import { type CellPx, IMAGE_MODES, type ImageMode, type ImageProtocol } from './protocols.js'

export interface ImageChoice {
  protocol: ImageProtocol | 'off'
  /** Why, for `--help`-level diagnostics and the tests. */
  reason: string
}

export function parseImageMode(value: string, from: string): ImageMode {
  const v = value.trim().toLowerCase()
  if ((IMAGE_MODES as readonly string[]).includes(v)) return v as ImageMode
  throw new InvalidInputError(
    `${from} must be one of ${IMAGE_MODES.join(', ')} (got ${JSON.stringify(value)})`,
    { field: from },
  )
}

type Env = Record<string, string | undefined>

const SIXEL_TERMS = ['foot', 'foot-extra', 'mlterm', 'yaft-256color', 'contour']

export function detectImages(env: Env, flag?: string): ImageChoice {
  const chosen = flag ?? env.RMESH_IMAGES
  const from = flag !== undefined ? '--images' : 'RMESH_IMAGES'
  const mode = chosen === undefined || chosen === '' ? 'auto' : parseImageMode(chosen, from)
  if (mode !== 'auto') return { protocol: mode, reason: `${from}=${mode}` }
  const term = env.TERM ?? ''
  const program = env.TERM_PROGRAM ?? ''
  if (env.TMUX || program === 'tmux' || /^(screen|tmux)/.test(term))
    return { protocol: 'off', reason: 'inside tmux/screen (set RMESH_IMAGES to force a protocol)' }
  if (term === 'dumb' || term === '') return { protocol: 'off', reason: `TERM=${term || 'unset'}` }
  if (
    env.KITTY_WINDOW_ID ||
    term === 'xterm-kitty' ||
    program === 'ghostty' ||
    term === 'xterm-ghostty'
  )
    return { protocol: 'kitty', reason: 'kitty graphics (kitty, Ghostty)' }
  if (program === 'iTerm.app' || env.LC_TERMINAL === 'iTerm2' || program === 'WezTerm')
    return { protocol: 'iterm', reason: 'iTerm2 inline images (iTerm2, WezTerm)' }
  if (
    SIXEL_TERMS.includes(term) ||
    term.includes('sixel') ||
    program === 'mlterm' ||
    Number(env.KONSOLE_VERSION ?? 0) >= 220400
  )
    return { protocol: 'sixel', reason: `sixel (${term || program || 'Konsole'})` }
  return { protocol: 'off', reason: `no image protocol known for TERM=${term}` }
}

/** RMESH_IMAGE_CELL=WxH: the terminal's cell size in pixels, for sizing sixel images. */
export function cellPxFrom(env: Env): CellPx | undefined {
  const m = /^(\d{1,3})x(\d{1,3})$/.exec(env.RMESH_IMAGE_CELL ?? '')
  if (!m) return undefined
  const width = Number(m[1])
  const height = Number(m[2])
  return width >= 2 && height >= 2 ? { width, height } : undefined
}
