import { describe, expect, it } from 'vitest'
import { defaultDataDir, extractGlobalFlags, resolveDataDir } from '../../../cli/paths.js'

describe('global flags', () => {
  it('takes --dir and --no-color from anywhere before --', () => {
    expect(extractGlobalFlags(['--dir', 'D', 'peers'])).toEqual({ dir: 'D', rest: ['peers'] })
    expect(extractGlobalFlags(['peers', '--dir', 'D', '--json'])).toEqual({
      dir: 'D',
      rest: ['peers', '--json'],
    })
    expect(extractGlobalFlags(['peers', '--dir=D'])).toEqual({ dir: 'D', rest: ['peers'] })
    expect(extractGlobalFlags(['jobs', '--no-color'])).toEqual({ color: false, rest: ['jobs'] })
    expect(extractGlobalFlags(['logs', '--', '--dir', 'x'])).toEqual({
      rest: ['logs', '--', '--dir', 'x'],
    })
  })
  it('refuses --dir without a value', () => {
    expect(() => extractGlobalFlags(['peers', '--dir'])).toThrow(/--dir needs a path/)
    expect(() => extractGlobalFlags(['--dir', '--json'])).toThrow(/--dir needs a path/)
    expect(() => extractGlobalFlags(['--dir='])).toThrow(/--dir needs a path/)
  })
  it('resolves the data dir: flag, RMESH_DIR, XDG, home', () => {
    const base = { env: {}, platform: 'linux' as const, home: '/home/u', cwd: '/w' }
    expect(resolveDataDir({ ...base, flag: 'rel' })).toBe('/w/rel')
    expect(resolveDataDir({ ...base, flag: '~/x' })).toBe('/home/u/x')
    expect(resolveDataDir({ ...base, env: { RMESH_DIR: '/e' } })).toBe('/e')
    expect(resolveDataDir({ ...base, flag: '/f', env: { RMESH_DIR: '/e' } })).toBe('/f')
    expect(resolveDataDir(base)).toBe('/home/u/.local/share/rmesh')
    expect(defaultDataDir({ XDG_DATA_HOME: '/xdg' }, 'linux', '/h')).toBe('/xdg/rmesh')
    expect(defaultDataDir({ XDG_DATA_HOME: 'relative' }, 'linux', '/h')).toBe(
      '/h/.local/share/rmesh',
    )
    expect(defaultDataDir({}, 'darwin', '/h')).toBe('/h/Library/Application Support/rmesh')
  })
})
