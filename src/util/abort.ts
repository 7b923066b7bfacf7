/**
 * Every network call takes an AbortSignal with a default timeout. `timeoutSignal`
 * combines the caller's signal (if any) with a deadline so a forgotten signal still
 * ends in bounded time.
 */
import { AbortedError, TimeoutError } from './errors.js'

export const DEFAULT_TIMEOUTS = {
  dial: 5_000,
  request: 10_000,
  handshake: 5_000,
  blockRequest: 30_000,
} as const

export function timeoutSignal(ms: number, signal?: AbortSignal): AbortSignal {
  const deadline = AbortSignal.timeout(ms)
  return signal ? AbortSignal.any([signal, deadline]) : deadline
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
