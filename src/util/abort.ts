/**
 * Every network call takes an AbortSignal with a default timeout.
 *
 * Invariants:
 * - `withDeadline` / `deadline` are the way to bound an operation: the timer and the
 *   listeners on the parent signals are released as soon as the operation ends, so a
 *   long deadline on a short request holds nothing once the request is over. Neither
 *   `AbortSignal.timeout` nor `AbortSignal.any` can be released early: Node keeps such a
 *   signal alive while anything listens on it, until it fires, so a 10-minute deadline
 *   kept each request's state for 10 minutes, and a link to the daemon's lifetime signal
 *   that a library left a listener on was kept for good (about 1 KB each, Node 24).
 * - Only `new AbortController()` signals are created here: they are collected like any
 *   object once unreachable.
 * - A deadline that fires aborts with a DOMException named `TimeoutError`, like
 *   `AbortSignal.timeout`, so `throwIfAborted` maps it to `TimeoutError`.
 */
import { AbortedError, TimeoutError } from './errors.js'

export const DEFAULT_TIMEOUTS = {
  dial: 5_000,
  request: 10_000,
  handshake: 5_000,
  blockRequest: 30_000,
} as const

type Parents = AbortSignal | undefined | ReadonlyArray<AbortSignal | undefined>

/**
 * A signal that aborts after `ms` (none if infinite) or when a parent does, until
 * `clear()` releases it.
 */
export interface Deadline {
  readonly signal: AbortSignal
  /** Stop the timer and detach from the parents; the signal stays as it is. */
  clear(): void
}

export function deadline(ms: number, parents?: Parents): Deadline {
  const ctl = new AbortController()
  const list = (Array.isArray(parents) ? parents : [parents]).filter(
    (p): p is AbortSignal => p !== undefined,
  )
  const fromParent = (p: AbortSignal) => () => ctl.abort(p.reason)
  const attached: [AbortSignal, () => void][] = []
  let timer: NodeJS.Timeout | undefined
  const clear = () => {
    if (timer) clearTimeout(timer)
    timer = undefined
    for (const [p, fn] of attached.splice(0)) p.removeEventListener('abort', fn)
  }
  for (const p of list) {
    if (p.aborted) {
      ctl.abort(p.reason)
      clear()
      return { signal: ctl.signal, clear }
    }
    const fn = fromParent(p)
    p.addEventListener('abort', fn, { once: true })
    attached.push([p, fn])
  }
  ctl.signal.addEventListener('abort', clear, { once: true })
  if (Number.isFinite(ms)) {
    timer = setTimeout(
      () => ctl.abort(new DOMException(`timed out after ${ms} ms`, 'TimeoutError')),
      ms,
    )
    // Like AbortSignal.timeout: a pending deadline never keeps the process alive.
    timer.unref()
  }
  return { signal: ctl.signal, clear }
}

/**
 * A signal that aborts when any parent does, until `clear()` detaches it. Unlike
 * `AbortSignal.any`, whose result stays reachable from a long-lived parent for as long as
 * anything listens on it, a cleared link holds nothing.
 */
export function linkSignals(parents: Parents): Deadline {
  return deadline(Number.POSITIVE_INFINITY, parents)
}

/** Run `fn` under a deadline of `ms` (and the parents); release it when `fn` settles. */
export async function withDeadline<T>(
  ms: number,
  parents: Parents,
  fn: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const d = deadline(ms, parents)
  try {
    return await fn(d.signal)
  } finally {
    d.clear()
  }
}

/** Throw a typed error if the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, what = 'operation'): void {
  if (!signal?.aborted) return
  const reason = signal.reason
  if (reason instanceof DOMException && reason.name === 'TimeoutError')
    throw new TimeoutError(what, 0)
  throw new AbortedError(what)
}

/** Race a promise against a signal; the loser is ignored (the promise keeps running). */
export async function raceSignal<T>(
  promise: Promise<T>,
  signal: AbortSignal,
  what = 'operation',
): Promise<T> {
  throwIfAborted(signal, what)
  let onAbort: (() => void) | undefined
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => {
      try {
        throwIfAborted(signal, what)
      } catch (err) {
        reject(err)
      }
    }
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    return await Promise.race([promise, aborted])
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort)
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortedError('sleep'))
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(t)
      reject(new AbortedError('sleep'))
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
