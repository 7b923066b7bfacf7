/**
 * Devices: a detection report → the kinds a node advertises, the presence field's checks,
 * and the one rule (pickRunnable) that eligibility, the lease manager and the renderer share.
 * The GPU report is a fixture (see its `_about`: written in the script's exact shape, not
 * recorded: no GPU machine was at hand); the CPU one was recorded on this CPU-only machine.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CPU_ONLY, parseDeviceReport } from '../../../src/engines/blender-devices.js'
import {
  type EngineDevices,
  kindsMeet,
  pickRunnable,
  validateDevices,
} from '../../../src/jobs/devices.js'
import { eligibilityVerdict, type MeshNode, nodeCanRun } from '../../../src/jobs/eligibility.js'
import { validateBody } from '../../../src/jobs/entries.js'
import { reduceJob } from '../../../src/jobs/reducer.js'
import type { PeerIdString } from '../../../src/log/types.js'
import { blenderRequirement, checkDevice } from '../../../src/service/submit-options.js'
import { isRmeshError } from '../../../src/util/errors.js'
import { A, announceBody, B, entry, SUB } from './fixtures.js'

const fixture = (name: string) =>
  JSON.parse(
    readFileSync(
      join(import.meta.dirname, '../engines/fixtures', `blender-devices-${name}.json`),
      'utf8',
    ),
  )
const RTX = parseDeviceReport(fixture('rtx'))
const CPU = parseDeviceReport(fixture('cpu'))

const dev = (version: string, d = RTX): EngineDevices => ({
  engine: 'blender',
  version,
  kinds: d.kinds,
  ...(d.names.length ? { names: d.names } : {}),
})
const node = (id: PeerIdString, over: Partial<MeshNode> = {}): MeshNode => ({
  id,
  name: id.replace('peer-', 'node-'),
  engines: [{ name: 'blender', version: '4.2.3' }],
  slots: 1,
  tags: [],
  ...over,
})
const job = (over = {}) =>
  reduceJob([entry('announce', announceBody({ engine: { name: 'blender' }, ...over }), 1, SUB)])!

describe('device reports', () => {
  it('the recorded CPU-only report gives the CPU alone', () => {
    expect(CPU).toEqual({ kinds: ['cpu'], names: [] })
  })

  it('a GPU report gives each kind once, in a fixed order, and the cards once', () => {
    expect(RTX.kinds).toEqual(['cpu', 'cuda', 'optix', 'hip'])
    expect(RTX.names).toEqual(['NVIDIA GeForce RTX 4090', 'AMD Radeon PRO W7900'])
  })

  it('garbage reports and unknown device types count as the CPU only', () => {
    for (const bad of [null, 42, 'x', {}, { devices: 'x' }, { devices: [null, 7, {}] }])
      expect(parseDeviceReport(bad)).toEqual(CPU_ONLY)
    const r = parseDeviceReport({ devices: [{ type: 'VULKAN', name: 'future' }] })
    expect(r).toEqual(CPU_ONLY)
    const long = parseDeviceReport({
      devices: Array.from({ length: 40 }, (_, i) => ({
        type: 'CUDA',
        name: `${i}${'x'.repeat(200)}`,
      })),
    })
    expect(() => validateDevices([{ engine: 'blender', version: '4.2', ...long }])).not.toThrow()
  })
})

describe('device requests', () => {
  it('gpu means any GPU kind; a kind means that kind; none means anything', () => {
    expect(kindsMeet(RTX.kinds, 'gpu')).toBe(true)
    expect(kindsMeet(RTX.kinds, 'optix')).toBe(true)
    expect(kindsMeet(RTX.kinds, 'metal')).toBe(false)
    expect(kindsMeet(CPU.kinds, 'gpu')).toBe(false)
    expect(kindsMeet(CPU.kinds, 'cpu')).toBe(true)
    expect(kindsMeet([], undefined)).toBe(true)
  })

  it('picks the newest version meeting the range that has the device', () => {
    const installed = [
      { name: 'blender', version: '4.3.0' },
      { name: 'blender', version: '4.2.3' },
      { name: 'blender', version: '3.4.1' },
    ]
    // 4.3 sees only the CPU here (say its drivers are too old for it); 4.2 sees the GPUs.
    const devices = [dev('4.3.0', CPU), dev('4.2.3'), dev('3.4.1', CPU)]
    expect(pickRunnable(installed, devices, 'blender', undefined, undefined)).toBe('4.3.0')
    expect(pickRunnable(installed, devices, 'blender', undefined, 'optix')).toBe('4.2.3')
    expect(pickRunnable(installed, devices, 'blender', '>=4.3', 'optix')).toBeUndefined()
    expect(pickRunnable(installed, devices, 'blender', '<4', 'cpu')).toBe('3.4.1')
    // Devices not known yet (older node, detection running): no device job.
    expect(pickRunnable(installed, undefined, 'blender', undefined, 'cpu')).toBeUndefined()
  })
})

describe('eligibility with devices', () => {
  const gpuNode = node(A, { devices: [dev('4.2.3')] })
  const cpuNode = node(B, { devices: [dev('4.2.3', CPU)] })

  it('a node without the device never takes the job; one with it does', () => {
    const s = job({ requirements: { device: 'optix' } })
    expect(nodeCanRun(s, gpuNode, 'frames')).toBe(true)
    expect(nodeCanRun(s, cpuNode, 'frames')).toBe(false)
    expect(nodeCanRun(s, node(B), 'frames')).toBe(false)
    expect(nodeCanRun(job(), cpuNode, 'frames')).toBe(true)
    expect(nodeCanRun(job(), node(B), 'frames')).toBe(true)
  })

  it('the job says why it waits: no node has the device', () => {
    const v = eligibilityVerdict(job({ requirements: { device: 'optix' } }), [cpuNode])
    expect(v.ok).toBe(false)
    if (!v.ok) expect(v.why).toMatch(/no node of the mesh has an OptiX device \(for blender\)/)
    const g = eligibilityVerdict(job({ requirements: { device: 'gpu' } }), [cpuNode])
    if (!g.ok) expect(g.why).toMatch(/no node of the mesh has a GPU/)
    expect(
      eligibilityVerdict(job({ requirements: { device: 'gpu' } }), [cpuNode, gpuNode]),
    ).toEqual({ ok: true })
  })

  it('without the engine version the reason names both', () => {
    const v = eligibilityVerdict(
      job({ engine: { name: 'blender', version: '>=5' }, requirements: { device: 'cuda' } }),
      [gpuNode],
    )
    if (!v.ok) expect(v.why).toMatch(/no node of the mesh has blender >=5 with a CUDA device/)
    else expect.unreachable()
  })
})

describe('the device in entries and requests', () => {
  it('an announce with a known device is valid; nonsense is refused', () => {
    const ok = validateBody('announce', announceBody({ requirements: { device: 'optix' } }))
    expect(ok.ok).toBe(true)
    for (const device of ['OPTIX', 'tpu', 42, ['gpu'], '']) {
      const r = validateBody(
        'announce',
        announceBody({ requirements: { device } as unknown as { device: 'gpu' } }),
      )
      expect(r.ok).toBe(false)
    }
  })

  it('checkDevice: a Blender job only, a known kind only', () => {
    expect(checkDevice(undefined, 'blender')).toBeUndefined()
    expect(checkDevice('hip', 'blender')).toBe('hip')
    for (const [d, e] of [
      ['tpu', 'blender'],
      ['gpu', 'test'],
    ] as const) {
      try {
        checkDevice(d, e)
        expect.unreachable()
      } catch (err) {
        expect(isRmeshError(err) && err.code).toBe('ERR_INVALID_INPUT')
      }
    }
  })

  it("the default requirement is the submitter's Blender's major.minor", () => {
    expect(blenderRequirement(undefined, undefined, 'blender', '3.4.1')).toBe('>=3.4 <3.5')
    expect(blenderRequirement(undefined, undefined, 'blender', '4.2.3 LTS')).toBe('>=4.2 <4.3')
    expect(blenderRequirement('>=4', undefined, 'blender', '3.4.1')).toBe('>=4')
    expect(blenderRequirement(undefined, true, 'blender', '3.4.1')).toBeUndefined()
    expect(blenderRequirement(undefined, undefined, 'test', '3.4.1')).toBeUndefined()
    expect(blenderRequirement(undefined, undefined, 'blender', undefined)).toBeUndefined()
    expect(() => blenderRequirement('>=4', true, 'blender', '3.4.1')).toThrow(/contradict/)
    expect(() => blenderRequirement(undefined, 'yes', 'blender', '3.4.1')).toThrow(/anyBlender/)
  })
})
