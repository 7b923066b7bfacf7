/**
 * A peer never chooses a path on this machine. Manifest names are display-only; when a
 * local caller wants a file name derived from one, `safeFileName` reduces it to a single
 * harmless path component.
 *
 * Invariants: the result is non-empty, contains no path separator, no control or
 * bidirectional-override character, is not '.', '..' or a Windows device name, does not
 * start with '.' (no hidden or relative names) and is at most `maxBytes` UTF-8 bytes.
 */

const WINDOWS_RESERVED = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i
// C0/C1 controls, DEL, and bidi overrides that can disguise an extension.
const UNSAFE_CHARS = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g

export function safeFileName(name: unknown, fallback = 'file', maxBytes = 200): string {
  let s = typeof name === 'string' ? name.slice(-4096) : ''
  s = s.normalize('NFC').replace(UNSAFE_CHARS, '')
  // Keep only the last path component, whatever the separator convention.
  const parts = s.split(/[/\\]/)
  s = parts[parts.length - 1] ?? ''
  s = s.replace(/[<>:"|?*]/g, '_').trim()
  s = s.replace(/^\.+/, '').replace(/[. ]+$/, '')
  if (WINDOWS_RESERVED.test(s)) s = `_${s}`
  s = truncateUtf8(s, maxBytes)
  return s.length > 0 ? s : fallback
}

function truncateUtf8(s: string, maxBytes: number): string {
  if (Buffer.byteLength(s) <= maxBytes) return s
  // Keep the extension when there is a short one: it tells the user what the file is.
  const dot = s.lastIndexOf('.')
  const ext = dot > 0 && s.length - dot <= 16 ? s.slice(dot) : ''
  let base = ext ? s.slice(0, dot) : s
  const budget = maxBytes - Buffer.byteLength(ext)
  // Slice by code points so we never split a surrogate pair.
  const chars = Array.from(base)
  while (chars.length > 0 && Buffer.byteLength(chars.join('')) > budget) chars.pop()
  base = chars.join('')
  return base + ext
}

/** A file extension taken from a peer-supplied name, lower-cased, or `fallback` if odd. */
export function safeExtension(name: unknown, fallback = '.png'): string {
  if (typeof name !== 'string') return fallback
  const dot = name.lastIndexOf('.')
  const ext = dot < 0 ? '' : name.slice(dot).toLowerCase()
  return /^\.[a-z0-9]{1,5}$/.test(ext) ? ext : fallback
}
