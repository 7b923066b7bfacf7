/** The presence and live-logs messages match their vectors in protocols/vectors/. */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { MAX_PRESENCE_BYTES, validatePresence } from '../../../src/net/presence.js'
import { validateLiveLogRequest } from '../../../src/service/live-logs.js'
import { decodeBounded, encode } from '../../../src/util/cbor.js'
import { packageRoot } from '../../../src/version.js'

const vector = (path: string) =>
  JSON.parse(readFileSync(join(packageRoot(), 'protocols', 'vectors', path), 'utf8'))

describe('wire vectors', () => {
  it('presence heartbeat', () => {
    const v = vector('presence/heartbeat.json')
    expect(Buffer.from(encode(v.value)).toString('hex')).toBe(v.hex)
    const decoded = validatePresence(decodeBounded(Buffer.from(v.hex, 'hex'), MAX_PRESENCE_BYTES))
    expect(decoded).toEqual(v.value)
  })

  it('presence heartbeat of a paused node (optional `paused` reason)', () => {
    const v = vector('presence/heartbeat-paused.json')
    expect(Buffer.from(encode(v.value)).toString('hex')).toBe(v.hex)
    const decoded = validatePresence(decodeBounded(Buffer.from(v.hex, 'hex'), MAX_PRESENCE_BYTES))
    expect(decoded).toEqual(v.value)
    expect(decoded.paused).toMatch(/data disk/)
  })

  it('presence heartbeat of a node at rest (optional `every`)', () => {
    const v = vector('presence/heartbeat-rest.json')
    expect(Buffer.from(encode(v.value)).toString('hex')).toBe(v.hex)
    const decoded = validatePresence(decodeBounded(Buffer.from(v.hex, 'hex'), MAX_PRESENCE_BYTES))
    expect(decoded).toEqual(v.value)
    expect(decoded.every).toBe(10_000)
  })

  it('presence heartbeat of a busy node paced for its chunks (`every` above the busy interval)', () => {
    const v = vector('presence/heartbeat-busy-paced.json')
    expect(Buffer.from(encode(v.value)).toString('hex')).toBe(v.hex)
    const decoded = validatePresence(decodeBounded(Buffer.from(v.hex, 'hex'), MAX_PRESENCE_BYTES))
    expect(decoded).toEqual(v.value)
    expect(decoded.every).toBe(6_000)
    expect(decoded.leases).toHaveLength(1)
  })

  it('presence heartbeat of a node with ffmpeg (optional `video` features)', () => {
    const v = vector('presence/heartbeat-video.json')
    expect(Buffer.from(encode(v.value)).toString('hex')).toBe(v.hex)
    const decoded = validatePresence(decodeBounded(Buffer.from(v.hex, 'hex'), MAX_PRESENCE_BYTES))
    expect(decoded).toEqual(v.value)
    expect(decoded.video).toContain('h265:10bit')
  })

  it('presence heartbeat of a node held back by its own rules (optional `rules`)', () => {
    const v = vector('presence/heartbeat-rules.json')
    expect(Buffer.from(encode(v.value)).toString('hex')).toBe(v.hex)
    const decoded = validatePresence(decodeBounded(Buffer.from(v.hex, 'hex'), MAX_PRESENCE_BYTES))
    expect(decoded).toEqual(v.value)
    expect(decoded.rules).toMatchObject({ state: 'off-schedule', idleMinutes: 10 })
  })

  it('presence heartbeat of a node with two Blenders and a GPU (optional `devices`)', () => {
    const v = vector('presence/heartbeat-devices.json')
    expect(Buffer.from(encode(v.value)).toString('hex')).toBe(v.hex)
    const decoded = validatePresence(decodeBounded(Buffer.from(v.hex, 'hex'), MAX_PRESENCE_BYTES))
    expect(decoded).toEqual(v.value)
    expect(decoded.devices?.[0]).toMatchObject({
      version: '4.2.3',
      kinds: ['cpu', 'cuda', 'optix'],
    })
    // The largest `devices` a node may announce still fits a heartbeat.
    const big = Array.from({ length: 8 }, (_, i) => ({
      engine: 'blender',
      version: `4.${i}.0`,
      kinds: ['cpu', 'cuda', 'optix', 'hip', 'oneapi', 'metal'],
      names: Array(8).fill('x'.repeat(64)),
    }))
    expect(encode({ ...v.value, devices: big }).length).toBeLessThan(MAX_PRESENCE_BYTES)
  })

  it('presence garbage is refused with a typed error', () => {
    const v = vector('presence/heartbeat.json')
    for (const bad of [
      null,
      [],
      { ...v.value, v: 2 },
      { ...v.value, leases: 'x' },
      { ...v.value, addrs: Array(17).fill('/ip4/1.1.1.1') },
      { ...v.value, name: 'x'.repeat(65) },
      { ...v.value, paused: 42 },
      { ...v.value, video: 'h264' },
      { ...v.value, video: [42] },
      { ...v.value, video: ['x'.repeat(33)] },
      { ...v.value, video: Array(33).fill('h264') },
      { ...v.value, paused: 'x'.repeat(257) },
      // A peer may not announce an interval that would keep it 'up' for hours, nor nonsense.
      { ...v.value, every: 86_400_000 },
      { ...v.value, every: 10 },
      { ...v.value, every: 1.5e3 + 0.5 },
      { ...v.value, every: '1000' },
      // A peer announcing nonsense rules or schedules is not heard.
      { ...v.value, rules: 'paused' },
      { ...v.value, rules: { state: 'sleeping' } },
      { ...v.value, rules: { state: 'off-schedule', schedule: 'when the moon is full' } },
      { ...v.value, rules: { state: 'off-schedule', schedule: 'mon 19:00-19:00' } },
      { ...v.value, rules: { state: 'off-schedule', schedule: `mon ${'9:00-10:00 '.repeat(40)}` } },
      { ...v.value, rules: { state: 'idle-wait', idleMinutes: 1e9 } },
      { ...v.value, rules: { state: 'paused', next: -1 } },
      { ...v.value, rules: { state: 'paused', cmd: 'rm -rf /' } },
      // A peer announcing nonsense devices is not heard.
      { ...v.value, devices: 'optix' },
      { ...v.value, devices: [null] },
      { ...v.value, devices: [{ engine: 'blender', version: '4.2', kinds: ['tpu'] }] },
      { ...v.value, devices: [{ engine: 'blender', version: '4.2', kinds: ['OPTIX'] }] },
      { ...v.value, devices: [{ engine: 'blender', version: '4.2', kinds: [] }] },
      { ...v.value, devices: [{ engine: 'blender', version: '4.2', kinds: ['cpu', 'cpu'] }] },
      { ...v.value, devices: [{ engine: 'blender', version: '', kinds: ['cpu'] }] },
      { ...v.value, devices: [{ engine: 'Blender!', version: '4.2', kinds: ['cpu'] }] },
      { ...v.value, devices: [{ engine: 'blender', version: 4.2, kinds: ['cpu'] }] },
      {
        ...v.value,
        devices: [{ engine: 'blender', version: '4.2', kinds: ['cpu'], names: 'RTX' }],
      },
      {
        ...v.value,
        devices: [{ engine: 'blender', version: '4.2', kinds: ['cpu'], names: ['x'.repeat(65)] }],
      },
      { ...v.value, devices: [{ engine: 'blender', version: '4.2', kinds: ['cpu'], vram: 24 }] },
      {
        ...v.value,
        devices: Array(9).fill({ engine: 'blender', version: '4.2', kinds: ['cpu'] }),
      },
    ]) {
      expect(() => validatePresence(bad)).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_INPUT' }),
      )
    }
    expect(() => decodeBounded(new Uint8Array(MAX_PRESENCE_BYTES + 1), MAX_PRESENCE_BYTES)).toThrow(
      expect.objectContaining({ code: 'ERR_TOO_LARGE' }),
    )
    expect(() => decodeBounded(Uint8Array.from([0xff, 0x00, 0x13]), MAX_PRESENCE_BYTES)).toThrow(
      expect.objectContaining({ code: 'ERR_DECODE' }),
    )
  })

  it('live-logs request and line', () => {
    const v = vector('live-logs/request.json')
    expect(Buffer.from(encode(v.value)).toString('hex')).toBe(v.hex)
    expect(validateLiveLogRequest(decodeBounded(Buffer.from(v.hex, 'hex'), 1024))).toEqual(v.value)
    expect(Buffer.from(encode(v.line.value)).toString('hex')).toBe(v.line.hex)
    for (const bad of [
      {},
      { v: 1, job: '../../x' },
      { v: 1, job: 'abcdefgh', frame: 1.5 },
      { v: 2, job: 'abcdefgh' },
    ]) {
      expect(() => validateLiveLogRequest(bad)).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_INPUT' }),
      )
    }
  })
})
