/**
 * Is the machine's own user at it? The probe behind idle-only mode, best effort and small
 * enough to fake: tests inject their own IdleProbe.
 *
 * Invariants:
 *  - userIdleMs is the session's own word (X11 `xprintidle` where a display is set, else
 *    logind's IdleHint/IdleSinceHint of local, active user sessions via `loginctl`);
 *    undefined when no session says, and then the caller falls back to otherCpuLoad;
 *  - otherCpuLoad counts CPU used by everything but this daemon and the engine processes
 *    it started (their process groups), so a render never makes its own node look busy;
 *  - every external command runs with argv only and a 2-second timeout; a failure is
 *    "unknown", never an exception.
 */
import { readdir, readFile } from 'node:fs/promises'
import { liveProcessGroups, runCapture } from '../engines/process.js'

export interface IdleProbe {
  /** Milliseconds since the user last used keyboard or mouse; undefined when unknown. */
  userIdleMs(): Promise<number | undefined>
  /**
   * Share of the whole machine's CPU (0..1) used since the previous call by processes that
   * are not this node's (undefined on the first call or where /proc is absent).
   */
  otherCpuLoad(): Promise<number | undefined>
}

const PROBE_TIMEOUT_MS = 2_000

async function xprintidle(env: NodeJS.ProcessEnv): Promise<number | undefined> {
  if (!env.DISPLAY) return undefined
  const { stdout, outcome } = await runCapture('xprintidle', [], { timeoutMs: PROBE_TIMEOUT_MS })
  const ms = Number(stdout.trim())
  return outcome.exitCode === 0 && Number.isFinite(ms) && ms >= 0 ? ms : undefined
}

/** Parse `loginctl show-session` output (key=value lines) into idle ms, when it speaks. */
export function idleFromLogind(text: string, nowMs: number): number | undefined {
  const kv = new Map<string, string>()
  for (const line of text.split('\n')) {
    const i = line.indexOf('=')
    if (i > 0) kv.set(line.slice(0, i), line.slice(i + 1).trim())
  }
  if (kv.get('Class') !== 'user' || kv.get('Remote') === 'yes' || kv.get('Active') !== 'yes')
    return undefined
  if (kv.get('IdleHint') === 'no') return 0
  if (kv.get('IdleHint') !== 'yes') return undefined
  const sinceUs = Number(kv.get('IdleSinceHint'))
  if (!Number.isFinite(sinceUs) || sinceUs <= 0) return undefined
  return Math.max(0, nowMs - sinceUs / 1000)
}

async function logind(nowMs: number): Promise<number | undefined> {
  const list = await runCapture('loginctl', ['list-sessions', '--no-legend'], {
    timeoutMs: PROBE_TIMEOUT_MS,
  })
  if (list.outcome.exitCode !== 0) return undefined
  let least: number | undefined
  for (const line of list.stdout.split('\n').slice(0, 32)) {
    const id = line.trim().split(/\s+/)[0]
    if (!id || !/^[\w-]{1,32}$/.test(id)) continue
    const show = await runCapture(
      'loginctl',
      [
        'show-session',
        id,
        '-p',
        'Class',
        '-p',
        'Remote',
        '-p',
        'Active',
        '-p',
        'IdleHint',
        '-p',
        'IdleSinceHint',
      ],
      { timeoutMs: PROBE_TIMEOUT_MS },
    )
    if (show.outcome.exitCode !== 0) continue
    const idle = idleFromLogind(show.stdout, nowMs)
    if (idle !== undefined) least = least === undefined ? idle : Math.min(least, idle)
  }
  return least
}

interface CpuSample {
  total: number
  busy: number
  own: number
  /** The engine groups counted: a sample across a render's start or end is no measure. */
  groups: string
}

async function sampleCpu(): Promise<CpuSample | undefined> {
  let stat: string
  try {
    stat = await readFile('/proc/stat', 'utf8')
  } catch {
    return undefined
  }
  const f = stat.split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  const total = f.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0)
  const idle = (f[3] ?? 0) + (f[4] ?? 0)
  const groups = liveProcessGroups()
  let own = 0
  const pids = groups.size
    ? await readdir('/proc').catch(() => [] as string[])
    : [String(process.pid)]
  for (const pid of pids) {
    if (!/^\d+$/.test(pid)) continue
    const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
    // Fields after the command name (which may hold spaces), from field 3 on.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ')
    const pgrp = Number(rest[2])
    if (Number(pid) !== process.pid && !groups.has(pgrp)) continue
    // utime and stime (fields 14, 15): clock ticks, the unit of /proc/stat.
    own += Number(rest[11]) + Number(rest[12])
  }
  return { total, busy: total - idle, own, groups: [...groups].sort().join(',') }
}

export function createSystemIdleProbe(env: NodeJS.ProcessEnv = process.env): IdleProbe {
  let last: CpuSample | undefined
  return {
    async userIdleMs() {
      try {
        return (await xprintidle(env)) ?? (await logind(Date.now()))
      } catch {
        return undefined
      }
    },
    async otherCpuLoad() {
      const now = await sampleCpu()
      const prev = last
      last = now
      if (!now || !prev || now.total <= prev.total || now.groups !== prev.groups) return undefined
      const others = now.busy - prev.busy - Math.max(0, now.own - prev.own)
      return Math.min(1, Math.max(0, others / (now.total - prev.total)))
    },
  }
}

/**
 * Test only (RMESH_TEST_IDLE_FILE): the user's idle time is the number of ms written in a
 * file, so a real-daemon test can make the user come and go. Unreadable: unknown.
 */
export function createFileIdleProbe(path: string): IdleProbe {
  return {
    async userIdleMs() {
      const ms = Number((await readFile(path, 'utf8').catch(() => '')).trim())
      return Number.isFinite(ms) && ms >= 0 ? ms : undefined
    },
    otherCpuLoad: async () => undefined,
  }
}
