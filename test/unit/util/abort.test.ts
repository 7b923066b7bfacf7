import { afterEach, describe, expect, it, vi } from 'vitest'
import { deadline, throwIfAborted, withDeadline } from '../../../src/util/abort.js'
import { TimeoutError } from '../../../src/util/errors.js'

describe('deadline', () => {
  afterEach(() => vi.useRealTimers())

  it('aborts with a TimeoutError reason once the time is up', async () => {
    vi.useFakeTimers()
    const d = deadline(1_000)
    vi.advanceTimersByTime(999)
    expect(d.signal.aborted).toBe(false)
    vi.advanceTimersByTime(1)
    expect(d.signal.aborted).toBe(true)
    expect((d.signal.reason as DOMException).name).toBe('TimeoutError')
    expect(() => throwIfAborted(d.signal, 'x')).toThrow(TimeoutError)
  })

  it('follows any parent, and takes an already-aborted parent at once', () => {
    const a = new AbortController()
    const b = new AbortController()
    const d = deadline(60_000, [a.signal, undefined, b.signal])
    b.abort(new Error('stop'))
    expect(d.signal.aborted).toBe(true)
    expect((d.signal.reason as Error).message).toBe('stop')
    const gone = new AbortController()
    gone.abort('before')
    expect(deadline(60_000, gone.signal).signal.reason).toBe('before')
  })

  it('clear() stops the timer and detaches from the parents', () => {
    vi.useFakeTimers()
    const parent = new AbortController()
    const added = vi.spyOn(parent.signal, 'addEventListener')
    const removed = vi.spyOn(parent.signal, 'removeEventListener')
    const d = deadline(1_000, parent.signal)
    d.clear()
    expect(removed).toHaveBeenCalledWith('abort', added.mock.calls[0][1])
    expect(vi.getTimerCount()).toBe(0)
    parent.abort()
    vi.advanceTimersByTime(2_000)
    expect(d.signal.aborted).toBe(false)
  })
})

describe('withDeadline', () => {
  it('releases the timer and the parent listener when the work settles', async () => {
    vi.useFakeTimers()
    try {
      const parent = new AbortController()
      const removed = vi.spyOn(parent.signal, 'removeEventListener')
      await expect(withDeadline(10 * 60_000, parent.signal, async () => 7)).resolves.toBe(7)
      await expect(
        withDeadline(10 * 60_000, parent.signal, async () => {
          throw new Error('boom')
        }),
      ).rejects.toThrow('boom')
      expect(vi.getTimerCount()).toBe(0)
      expect(removed).toHaveBeenCalledTimes(2)
    } finally {
      vi.useRealTimers()
    }
  })

  it('aborts the work when the deadline passes', async () => {
    const seen = await withDeadline(
      20,
      undefined,
      (signal) =>
        new Promise<string>((resolve) =>
          signal.addEventListener('abort', () => resolve((signal.reason as DOMException).name)),
        ),
    )
    expect(seen).toBe('TimeoutError')
  })
})

describe('the daemon code', () => {
  it('bounds operations with deadline/withDeadline, never AbortSignal.timeout or .any', async () => {
    const { readdir, readFile } = await import('node:fs/promises')
    const { join } = await import('node:path')
    const root = join(import.meta.dirname, '../../../src')
    const offenders: string[] = []
    for (const f of await readdir(root, { recursive: true })) {
      if (!f.endsWith('.ts') || f === join('util', 'abort.ts')) continue
      const text = await readFile(join(root, f), 'utf8')
      if (/AbortSignal\.(timeout|any)\(/.test(text)) offenders.push(f)
    }
    // Their signals cannot be released early (see src/util/abort.ts).
    expect(offenders).toEqual([])
  })
})
