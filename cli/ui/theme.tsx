/**
 * Colours for the dashboard, switchable off (--no-color): every state also has its own
 * glyph, so the screen stays readable without colour.
 */
import { createContext, useContext } from 'react'
import type { FrameState, JobState } from '../../src/api/types.js'

export interface Theme {
  color: (name: string) => string | undefined
}

export const ThemeContext = createContext<Theme>({ color: (n) => n })

export function useTheme(): Theme {
  return useContext(ThemeContext)
}

export function makeTheme(enabled: boolean): Theme {
  return { color: (n) => (enabled ? n : undefined) }
}

export const FRAME_GLYPH: Record<FrameState, string> = {
  open: '·',
  claimed: '○',
  rendering: '◐',
  done: '█',
  failed: '✗',
}
export const FRAME_COLOR: Record<FrameState, string> = {
  open: 'gray',
  claimed: 'yellow',
  rendering: 'cyan',
  done: 'green',
  failed: 'red',
}
export const JOB_COLOR: Record<JobState, string> = {
  queued: 'white',
  rendering: 'cyan',
  paused: 'yellow',
  waiting: 'magenta',
  done: 'green',
  failed: 'red',
  canceled: 'gray',
}
