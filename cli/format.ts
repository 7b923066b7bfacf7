import type { PeerInfo } from '../src/api/types.js'

/**
 * Human output: colours (off with --no-color, NO_COLOR or a non-TTY), tables, durations and
 * progress bars, with no extra packages. Pure functions of their inputs.
 */

export interface Colors {
  enabled: boolean
  bold(s: string): string
  dim(s: string): string
  red(s: string): string
  green(s: string): string
  yellow(s: string): string
  blue(s: string): string
  cyan(s: string): string
}

export function createColors(enabled: boolean): Colors {
  const wrap = (open: number, close: number) => (s: string) =>
    enabled ? `\x1b[${open}m${s}\x1b[${close}m` : s
  return {
    enabled,
    bold: wrap(1, 22),
    dim: wrap(2, 22),
    red: wrap(31, 39),
    green: wrap(32, 39),
    yellow: wrap(33, 39),
    blue: wrap(34, 39),
    cyan: wrap(36, 39),
  }
}

const ANSI = /\x1b\[[0-9;]*m/g

export function visibleLength(s: string): number {
  return s.replace(ANSI, '').length
}

export function pad(s: string, width: number, align: 'left' | 'right' = 'left'): string {
  const fill = ' '.repeat(Math.max(0, width - visibleLength(s)))
  return align === 'left' ? s + fill : fill + s
}

export function truncate(s: string, width: number): string {
  if (s.length <= width) return s
  if (width <= 1) return s.slice(0, width)
  return `${s.slice(0, width - 1)}…`
}

export interface Column<T> {
  header: string
  get: (row: T) => string
  align?: 'left' | 'right'
  max?: number
}

export function table<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const cells = rows.map((r) => columns.map((c) => (c.max ? truncate(c.get(r), c.max) : c.get(r))))
  const widths = columns.map((c, i) =>
    Math.max(c.header.length, ...cells.map((row) => visibleLength(row[i]))),
  )
  const line = (vals: string[]) =>
    vals
      .map((v, i) => pad(v, widths[i], columns[i].align))
      .join('  ')
      .trimEnd()
  return [line(columns.map((c) => c.header.toUpperCase())), ...cells.map(line)].join('\n')
}

export function formatDuration(ms: number | undefined | null): string {
  if (ms === undefined || ms === null || !Number.isFinite(ms) || ms < 0) return '-'
  const s = Math.round(ms / 1000)
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`
  const h = Math.floor(m / 60)
  if (h < 48) return `${h}h${String(m % 60).padStart(2, '0')}m`
  return `${Math.floor(h / 24)}d${h % 24}h`
}

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let u = 0
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024
    u++
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`
}

export function formatTime(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return 'never'
  return new Date(ms)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z')
}

/** `width` cells of block characters; fraction clamped to [0, 1]. */
export function progressBar(fraction: number, width: number): string {
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0
  const eighths = Math.round(f * width * 8)
  const full = Math.floor(eighths / 8)
  const partial = eighths % 8
  const partials = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉']
  const bar = '█'.repeat(full) + (full < width ? partials[partial] : '')
  return bar + ' '.repeat(Math.max(0, width - visibleLength(bar)))
}

export function shortId(id: string, n = 10): string {
  return id.length <= n ? id : id.slice(0, n)
}

/** Peer ids share a long common prefix (12D3KooW…): show their distinctive tail. */
export function shortPeer(peerId: string | null | undefined): string {
  if (!peerId) return '-'
  return peerId.length <= 12 ? peerId : `…${peerId.slice(-8)}`
}

/** What a peer is rendering now: `shot#12 43%, shot#13`. */
export function workText(p: PeerInfo): string {
  if (p.work.length === 0) return '-'
  return p.work
    .map(
      (w) =>
        `${w.jobName}#${w.frame ?? w.frames[0]}${w.progress !== undefined ? ` ${Math.round(w.progress * 100)}%` : ''}`,
    )
    .join(', ')
}
