import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { IdleProbe } from '../../../src/node/idle.js'
import { validatePresenceRules } from '../../../src/node/presence-rules.js'
import { createNodeRules, RULES_FILE, type RulesDefaults } from '../../../src/node/rules.js'
import { localTimeIn } from '../../../src/node/schedule.js'
import { FakeClock } from '../../../src/util/clock.js'
import { silentLogger } from '../../../src/util/logger.js'

// Monday 2026-12-07 12:00 UTC.
const MONDAY_NOON = Date.parse('2026-12-07T12:00Z')

async function setup(defaults: Partial<RulesDefaults> = {}, dir?: string) {
  const dataDir = dir ?? (await mkdtemp(join(tmpdir(), 'rmesh-rules-')))
  const clock = new FakeClock(0, MONDAY_NOON)
  const user = { idleMs: undefined as number | undefined, load: undefined as number | undefined }
  const idle: IdleProbe = {
    userIdleMs: async () => user.idleMs,
    otherCpuLoad: async () => user.load,
  }
  const handed: { running: boolean; reason: string }[] = []
  let busy = false
  let changes = 0
  const rules = await createNodeRules(
    {
      dataDir,
      clock,
      logger: silentLogger,
      idle,
      localTime: localTimeIn('UTC'),
      busy: () => busy,
      handBack: async (o) => {
        handed.push(o)
      },
      onChange: () => changes++,
    },
    { limits: {}, ...defaults },
  )
  await rules.start()
  return {
    dataDir,
    clock,
    user,
    rules,
    handed,
    setBusy: (b: boolean) => {
      busy = b
    },
    changes: () => changes,
  }
}

describe('node rules', () => {
  it('pause --now hands everything back; --drain only what has not started, then paused; resume', async () => {
    const t = await setup()
    expect(t.rules.state()).toBe('active')
    t.setBusy(true)
    await t.rules.pause('drain')
    expect(t.rules.state()).toBe('draining')
    expect(t.handed).toEqual([{ running: false, reason: expect.stringMatching(/draining/) }])
    t.setBusy(false)
    await t.rules.evaluate()
    expect(t.rules.state()).toBe('paused')
    await t.rules.resume()
    expect(t.rules.state()).toBe('active')
    t.setBusy(true)
    await t.rules.pause('now')
    expect(t.rules.state()).toBe('paused')
    expect(t.handed.at(-1)).toEqual({ running: true, reason: expect.stringMatching(/paused/) })
    expect(t.rules.reason()).toMatch(/rmesh node resume/)
    expect(t.rules.presence()).toEqual({ state: 'paused' })
    t.rules.stop()
  })

  it('now while draining hands the running render back too', async () => {
    const t = await setup()
    t.setBusy(true)
    await t.rules.pause('drain')
    await t.rules.pause('now')
    expect(t.handed.map((h) => h.running)).toEqual([false, true])
    t.rules.stop()
  })

  it('is persisted: a restart keeps the pause, the schedule and the limits', async () => {
    const t = await setup()
    await t.rules.pause('now')
    await t.rules.setSchedule('mon-fri 19:00-08:00')
    await t.rules.setLimits({ threads: 2, nice: 10 })
    t.rules.stop()
    const again = await setup({}, t.dataDir)
    expect(again.rules.view()).toMatchObject({
      state: 'paused',
      pause: 'now',
      schedule: { text: 'mon-fri 19:00-08:00', source: 'node', open: false },
      limits: { threads: 2, nice: 10 },
    })
    again.rules.stop()
  })

  it('off its schedule it takes nothing; the window opening makes it active (fake clock)', async () => {
    const t = await setup({ schedule: 'mon 12:00-13:00' })
    // 'mon 12:00-13:00' from the config: open at Monday noon.
    expect(t.rules.state()).toBe('active')
    expect(t.rules.view().schedule).toMatchObject({ source: 'config', open: true })
    t.clock.advance(60 * 60_000) // 13:00
    await t.rules.evaluate()
    expect(t.rules.state()).toBe('off-schedule')
    expect(t.handed.at(-1)).toMatchObject({ running: false })
    expect(t.rules.presence()).toMatchObject({ state: 'off-schedule', schedule: 'mon 12:00-13:00' })
    // Cleared on the node: no schedule although the config has one.
    await t.rules.setSchedule(null)
    expect(t.rules.state()).toBe('active')
    expect(t.rules.view().schedule).toBeUndefined()
    t.rules.stop()
  })

  it('idle-only: waits for the user to be idle, hands everything back when they return', async () => {
    const t = await setup()
    t.user.idleMs = 30_000
    await t.rules.setIdle({ minutes: 5, loadPercent: 25 })
    expect(t.rules.state()).toBe('idle-wait')
    t.user.idleMs = 5 * 60_000
    await t.rules.evaluate()
    expect(t.rules.state()).toBe('active')
    t.setBusy(true)
    t.user.idleMs = 200
    await t.rules.evaluate()
    expect(t.rules.state()).toBe('idle-wait')
    expect(t.handed.at(-1)).toMatchObject({ running: true })
    t.rules.stop()
  })

  it('idle-only without a session: CPU load of other processes counts as use', async () => {
    const t = await setup({ idleOnlyMinutes: 1, idleLoadPercent: 30 })
    t.user.load = 0.1
    t.clock.advance(61_000)
    await t.rules.evaluate()
    expect(t.rules.state()).toBe('active')
    t.user.load = 0.9
    await t.rules.evaluate()
    expect(t.rules.state()).toBe('idle-wait')
    t.user.load = 0.05
    t.clock.advance(30_000)
    await t.rules.evaluate()
    expect(t.rules.state()).toBe('idle-wait')
    t.clock.advance(31_000)
    await t.rules.evaluate()
    expect(t.rules.state()).toBe('active')
    t.rules.stop()
  })

  it('garbage: bad settings are refused with the field named, nothing changes', async () => {
    const t = await setup()
    await expect(t.rules.setSchedule('someday maybe')).rejects.toMatchObject({
      code: 'ERR_INVALID_INPUT',
    })
    await expect(t.rules.setIdle({ minutes: 0 } as never)).rejects.toMatchObject({
      details: { field: 'minutes' },
    })
    await expect(t.rules.setLimits({ nice: 99 })).rejects.toMatchObject({
      details: { field: 'nice' },
    })
    await expect(t.rules.setLimits({ cores: 1 } as never)).rejects.toMatchObject({
      code: 'ERR_INVALID_INPUT',
    })
    expect(t.rules.view()).toEqual({ state: 'active', limits: {} })
    t.rules.stop()
  })

  it('a corrupt rules file stops the start with what to do', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rmesh-rules-'))
    await writeFile(join(dir, RULES_FILE), '{"v":1,"schedule":"nope"}')
    await expect(setup({}, dir)).rejects.toThrow(/node-rules.json.*remove it/)
    await writeFile(join(dir, RULES_FILE), '{not json')
    await expect(setup({}, dir)).rejects.toThrow(/not valid JSON/)
    expect(await readFile(join(dir, RULES_FILE), 'utf8')).toBe('{not json')
  })

  it("a peer's rules field: nonsense is refused", () => {
    expect(
      validatePresenceRules({ state: 'paused', schedule: 'daily all', idleMinutes: 5 }),
    ).toBeTruthy()
    for (const bad of [
      null,
      'paused',
      { state: 'asleep' },
      { state: 'paused', schedule: 'whenever' },
      { state: 'paused', schedule: 42 },
      { state: 'paused', schedule: 'x'.repeat(10_000) },
      { state: 'paused', idleMinutes: -1 },
      { state: 'paused', idleMinutes: 1.5 },
      { state: 'paused', next: 'soon' },
      { state: 'paused', extra: true },
    ])
      expect(() => validatePresenceRules(bad), JSON.stringify(bad)).toThrow(/presence rules/)
  })
})

describe('idle probe: logind output', () => {
  it('reads IdleHint/IdleSinceHint of a local active user session only', async () => {
    const { idleFromLogind } = await import('../../../src/node/idle.js')
    const now = 1_800_000_000_000
    const session = (over: string) =>
      `Class=user\nRemote=no\nActive=yes\nIdleHint=yes\nIdleSinceHint=${(now - 90_000) * 1000}\n${over}`
    expect(idleFromLogind(session(''), now)).toBe(90_000)
    expect(idleFromLogind(session('IdleHint=no'), now)).toBe(0)
    expect(idleFromLogind(session('Remote=yes'), now)).toBeUndefined()
    expect(idleFromLogind(session('Active=no'), now)).toBeUndefined()
    expect(idleFromLogind(session('Class=greeter'), now)).toBeUndefined()
    expect(idleFromLogind(session('IdleSinceHint=garbage'), now)).toBeUndefined()
    expect(idleFromLogind('', now)).toBeUndefined()
  })
})
