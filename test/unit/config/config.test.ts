import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { configFromEnv, configFromFile, resolveConfig } from '../../../src/config.js'

describe('daemon configuration', () => {
  it('flags win over the environment, which wins over the file', () => {
    const c = resolveConfig(
      '/d',
      { slots: 3 },
      configFromEnv({ RMESH_SLOTS: '2', RMESH_NAME: 'env-name' }),
      { slots: 1, name: 'file-name', mdns: false },
    )
    expect(c.slots).toBe(3)
    expect(c.name).toBe('env-name')
    expect(c.mdns).toBe(false)
    expect(c.listen).toEqual(['/ip4/0.0.0.0/tcp/4777'])
  })

  it('rejects bad values with the field named', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ listen: ['not a multiaddr'] }, /listen/],
      [{ bootstrap: ['/ip4/1.2.3.4/tcp/1/p2p/notapeerid'] }, /bootstrap/],
      [{ slots: -1 }, /slots/],
      [{ slots: 1.5 }, /slots/],
      [{ logLevel: 'loud' }, /logLevel/],
      [{ name: '' }, /name/],
      [{ tags: ['ok', 'not ok!'] }, /tags/],
      [{ leaseTimeoutMs: 1 }, /leaseTimeoutMs/],
      [{ metricsPort: 70000 }, /metricsPort/],
      [{ mdns: 'yes' }, /mdns/],
      [{ noEligibleGraceMs: 10 }, /noEligibleGraceMs/],
      [{ previewEveryMs: 5 }, /previewEveryMs/],
      [{ previewEveryMs: 'often' }, /previewEveryMs/],
      [{ previewEveryFrames: 0 }, /previewEveryFrames/],
      [{ previewEveryFrames: 2.5 }, /previewEveryFrames/],
      [{ minFreeDiskMiB: -1 }, /minFreeDiskMiB/],
      [{ minFreeDiskMiB: 'lots' }, /minFreeDiskMiB/],
      // The rest pace is never faster than the busy one, nor beyond what peers accept.
      [{ presenceIntervalMs: 2_000, presenceRestIntervalMs: 1_000 }, /presenceRestIntervalMs/],
      [{ presenceRestIntervalMs: 600_000 }, /presenceRestIntervalMs/],
      [{ presenceRestIntervalMs: 'slow' }, /presenceRestIntervalMs/],
      [{ presenceIntervalMs: 3_000_000 }, /presenceIntervalMs/],
      [{ relayService: 'yes' }, /relayService/],
      [{ relays: 5 }, /relays/],
      [{ relays: -1 }, /relays/],
      [{ announce: ['not a multiaddr'] }, /announce/],
      [{ upnp: 'on' }, /upnp/],
      [{ relayedUploadMiBps: -1 }, /relayedUploadMiBps/],
      [{ relayedUploadMiBps: 'fast' }, /relayedUploadMiBps/],
      [{ blenderReleasesDir: 'relative/dir' }, /blenderReleasesDir/],
      [{ blenderReleasesDir: 42 }, /blenderReleasesDir/],
      [{ testBlenderDevices: '{not json' }, /testBlenderDevices/],
    ]
    for (const [layer, re] of bad) {
      expect(() => resolveConfig('/d', layer as never)).toThrow(re)
      try {
        resolveConfig('/d', layer as never)
      } catch (err) {
        expect((err as { code: string }).code).toBe('ERR_INVALID_INPUT')
      }
    }
  })

  it('beyond the LAN: relay service auto, 2 relays, 4 MiB/s over relays by default; RMESH_* set them', () => {
    const d = resolveConfig('/d')
    expect([d.relayService, d.relays, d.relayedUploadMiBps, d.upnp, d.announce]).toEqual([
      'auto',
      2,
      4,
      false,
      [],
    ])
    const e = resolveConfig(
      '/d',
      configFromEnv({
        RMESH_RELAY_SERVICE: 'on',
        RMESH_RELAYS: '0',
        RMESH_RELAYED_UPLOAD_MIBPS: '0',
        RMESH_UPNP: '1',
        RMESH_ANNOUNCE: '/ip4/11.77.0.10/tcp/4777',
      }),
    )
    expect([e.relayService, e.relays, e.relayedUploadMiBps, e.upnp, e.announce]).toEqual([
      'on',
      0,
      0,
      true,
      ['/ip4/11.77.0.10/tcp/4777'],
    ])
  })

  it('noEligibleGraceMs: 60 s by default, RMESH_NO_ELIGIBLE_GRACE_MS sets it', () => {
    expect(resolveConfig('/d').noEligibleGraceMs).toBe(60_000)
    const c = resolveConfig('/d', configFromEnv({ RMESH_NO_ELIGIBLE_GRACE_MS: '3000' }))
    expect(c.noEligibleGraceMs).toBe(3_000)
  })

  it('preview videos: every 10 frames or 20 s by default, 0 turns them off, env sets them', () => {
    const d = resolveConfig('/d')
    expect([d.previewEveryMs, d.previewEveryFrames]).toEqual([20_000, 10])
    const c = resolveConfig(
      '/d',
      configFromEnv({ RMESH_PREVIEW_EVERY_MS: '0', RMESH_PREVIEW_EVERY_FRAMES: '5' }),
    )
    expect([c.previewEveryMs, c.previewEveryFrames]).toEqual([0, 5])
  })

  it('minFreeDiskMiB: 256 MiB by default, RMESH_MIN_FREE_DISK_MIB sets it, 0 turns the check off', () => {
    expect(resolveConfig('/d').minFreeDiskMiB).toBe(256)
    expect(
      resolveConfig('/d', configFromEnv({ RMESH_MIN_FREE_DISK_MIB: '0' })).minFreeDiskMiB,
    ).toBe(0)
    expect(resolveConfig('/d', { minFreeDiskMiB: 4 }).minFreeDiskMiB).toBe(4)
  })

  it('blenderReleasesDir from RMESH_BLENDER_RELEASES_DIR; the device test hook from its env', () => {
    const c = resolveConfig(
      '/d',
      configFromEnv({
        RMESH_BLENDER_RELEASES_DIR: '/opt/blender-releases',
        RMESH_TEST_BLENDER_DEVICES: '{"devices":[]}',
      }),
    )
    expect(c.blenderReleasesDir).toBe('/opt/blender-releases')
    expect(c.testBlenderDevices).toBe('{"devices":[]}')
    expect(
      resolveConfig('/d', configFromEnv({ RMESH_TEST_BLENDER_DEVICES: '' })).testBlenderDevices,
    ).toBeUndefined()
  })

  it('reads config.json, and explains a broken one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rmesh-config-'))
    expect(await configFromFile(dir)).toEqual({})
    await writeFile(join(dir, 'config.json'), '{"slots": 2}')
    expect(await configFromFile(dir)).toEqual({ slots: 2 })
    await writeFile(join(dir, 'config.json'), '{"slots": 2,,}')
    await expect(configFromFile(dir)).rejects.toThrow(/not valid JSON/)
    await writeFile(join(dir, 'config.json'), '[1,2]')
    await expect(configFromFile(dir)).rejects.toThrow(/JSON object/)
  })
})
