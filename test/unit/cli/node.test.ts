import { describe, expect, it } from 'vitest'
import { nodeRuleConfig } from '../../../cli/commands/node.js'
import { groupByTag } from '../../../cli/commands/peers.js'
import { createFakeClient, peer, PEER_A, PEER_B } from '../ui/fake-client.js'
import { run } from './helpers.js'

describe('rmesh node', () => {
  it('pause --now / --drain / resume call the API and print the state', async () => {
    const client = createFakeClient()
    const now = await run(['node', 'pause', '--now'], { client })
    expect(now.code).toBe(0)
    expect(now.out).toMatch(/state:\s+paused/)
    const drain = await run(['node', 'pause', '--json'], { client })
    expect(JSON.parse(drain.out)).toMatchObject({ state: 'draining', pause: 'drain' })
    expect((await run(['node', 'resume'], { client })).out).toMatch(/state:\s+active/)
    expect(client.calls.map((c) => [c.method, ...c.args])).toEqual([
      ['pauseNode', 'now'],
      ['pauseNode', 'drain'],
      ['resumeNode'],
    ])
  })

  it('schedule set / clear / show, idle, limits', async () => {
    const client = createFakeClient()
    const set = await run(['node', 'schedule', 'set', 'Mon-Fri 19:00-08:00, sat-sun all'], {
      client,
    })
    expect(set.code).toBe(0)
    expect(set.out).toMatch(/schedule:\s+Mon-Fri/)
    expect((await run(['node', 'schedule', 'clear'], { client })).out).toMatch(/schedule:\s+none/)
    expect((await run(['node', 'schedule', 'show', '--json'], { client })).code).toBe(0)
    expect((await run(['node', 'idle', '10', '--load', '40'], { client })).code).toBe(0)
    expect((await run(['node', 'idle', 'off'], { client })).code).toBe(0)
    const lim = await run(['node', 'limits', '--threads', '4', '--memory', 'none'], { client })
    expect(lim.code).toBe(0)
    expect(client.calls.map((c) => [c.method, ...c.args])).toEqual([
      ['setSchedule', 'Mon-Fri 19:00-08:00, sat-sun all'],
      ['setSchedule', null],
      ['nodeRules'],
      ['setIdle', 10, 40],
      ['setIdle', null],
      ['setLimits', { threads: 4, memoryMiB: null }],
    ])
  })

  it('garbage flags: exit 2 with what is wrong, the daemon is never asked', async () => {
    const client = createFakeClient()
    for (const argv of [
      ['node', 'pause', '--now', '--drain'],
      ['node', 'schedule', 'set', 'someday'],
      ['node', 'schedule', 'set', 'mon 10:00-10:00'],
      ['node', 'idle', '0'],
      ['node', 'idle', 'soon'],
      ['node', 'idle', 'off', '--load', '5'],
      ['node', 'limits', '--nice', '20'],
      ['node', 'limits', '--threads', 'many'],
    ]) {
      const r = await run(argv, { client })
      expect(r.code, argv.join(' ')).toBe(2)
      expect(r.err, argv.join(' ')).toMatch(/^rmesh: /)
    }
    expect(client.calls).toEqual([])
    expect(() => nodeRuleConfig({ schedule: 'nope' })).toThrow(/--schedule/)
    expect(() => nodeRuleConfig({ idleOnly: '0' })).toThrow(/--idle-only/)
    expect(() => nodeRuleConfig({ tags: 'a b!' })).toThrow(/--tags/)
    expect(
      nodeRuleConfig({ threads: '4', nice: '10', maxRenderMemory: '4096', tags: 'gpu,a' }),
    ).toEqual({
      renderThreads: 4,
      renderNice: 10,
      renderMemoryMiB: 4096,
      tags: ['gpu', 'a'],
    })
  })

  it('--help documents every subcommand', async () => {
    for (const argv of [
      ['node', '--help'],
      ['node', 'pause', '--help'],
      ['node', 'schedule', 'set', '--help'],
      ['node', 'idle', '--help'],
      ['node', 'limits', '--help'],
    ]) {
      const r = await run(argv)
      expect(r.code).toBe(0)
      expect(r.out).toMatch(/Examples:/)
    }
    expect((await run(['daemon', '--help'])).out).toMatch(/--schedule.*\n?.*|--idle-only/)
  })
})

describe('rmesh peers --by-tag', () => {
  it('groups peers under each of their tags, untagged last', async () => {
    const a = peer({ peerId: PEER_A, name: 'a', tags: ['gpu', 'studio-a'] })
    const b = peer({ peerId: PEER_B, name: 'b', tags: [] })
    const groups = groupByTag([a, b])
    expect([...groups.keys()]).toEqual(['gpu', 'studio-a', ''])
    const client = createFakeClient({ peers: [a, b] })
    const r = await run(['peers', '--by-tag'], { client })
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/tag gpu: 1 node/)
    expect(r.out).toMatch(/no tag: 1 node/)
    const j = await run(['peers', '--by-tag', '--json'], { client })
    expect(Object.keys(JSON.parse(j.out))).toEqual(['gpu', 'studio-a', ''])
  })
})

describe('rmesh submit --tags (pools)', () => {
  it('a list of tags, [] for none, garbage refused', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const { buildSubmitRequest } = await import('../../../cli/validate.js')
    const dir = mkdtempSync(join(tmpdir(), 'rmesh-tags-'))
    writeFileSync(join(dir, 's.blend'), 'BLENDER')
    expect(
      (await buildSubmitRequest({ scene: 's.blend', tags: 'gpu, studio-a' }, dir)).tags,
    ).toEqual(['gpu', 'studio-a'])
    expect((await buildSubmitRequest({ scene: 's.blend', tags: '' }, dir)).tags).toEqual([])
    expect((await buildSubmitRequest({ scene: 's.blend' }, dir)).tags).toBeUndefined()
    await expect(buildSubmitRequest({ scene: 's.blend', tags: 'no/slash' }, dir)).rejects.toThrow(
      /--tags/,
    )
  })
})
