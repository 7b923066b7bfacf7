/**
 * Beyond one LAN, for real: two sites, each 2 daemons behind their own NAT router
 * (iptables MASQUERADE, no port forwarding), and an office daemon with a public address
 * that serves as relay, all in network namespaces this test creates (helpers/netns.ts).
 * mDNS off; three site nodes know only the office's address (--bootstrap), the fourth has
 * none: it joins with a token issued at the office, which carries the members' addresses. A job submitted at site A renders
 * on nodes of both sites: its scene reaches site B and its frames come back to A. The test
 * prints how each pair is connected (direct, relayed, hole-punched). Skipped with the
 * reason where namespaces or iptables cannot be had.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { admitDirs } from '../../../cli/local-mesh.js'
import type { JobDetail, SubmitResponse } from '../../../src/api/types.js'
import { apiCall, makeTempDir, waitFor } from '../../helpers/daemons.js'
import { createWanLab, wanUnavailableReason } from '../../helpers/netns.js'
import { spawnInNetns } from '../../helpers/spawn-netns.js'
import { nodeOf, peersOf, wanRun } from '../../helpers/wan-run.js'

const reason = wanUnavailableReason()
if (reason) console.warn(`two-site NAT test skipped: ${reason}`)

describe.skipIf(reason !== undefined)('two sites behind NAT and an office relay', () => {
  const run = wanRun('two-site NAT')
  const procs = run.procs

  it('a job from site A renders at both sites; frames come back through the relay', async () => {
    const phase = run.phase
    const lab = createWanLab(`rw${process.pid % 10000}`)
    run.lab = lab
    const dirs = await Promise.all(Array.from({ length: 5 }, () => makeTempDir()))
    const work = await makeTempDir('rmesh-wan-work-')
    run.folders.push(work)
    await admitDirs(dirs.slice(0, 4))
    const office = await spawnInNetns(
      lab.office.ns,
      dirs[0],
      [`/ip4/${lab.office.addr}/tcp/4777`],
      ['--relay-service', '--slots', '0', '--test-engine'],
      { mdns: false, name: 'office' },
    )
    procs.push(office)
    const boot = [`/ip4/${lab.office.addr}/tcp/4777/p2p/${office.peerId}`]
    const sites = lab.sites
    const nodes = await Promise.all(
      sites.flat().map((n, k) =>
        spawnInNetns(n.ns, dirs[k + 1], [`/ip4/${n.addr}/tcp/4777`], ['--test-engine'], {
          mdns: false,
          bootstrap: k < 3 ? boot : [],
          name: `site${Math.floor(k / 2) === 0 ? 'A' : 'B'}-${(k % 2) + 1}`,
        }),
      ),
    )
    procs.push(...nodes)
    const [a1, a2, b1, b2] = nodes
    // b2 has no token and no bootstrap address: the join code tells it where the mesh is.
    const issued = await apiCall<{ token: string }>(office.socket, 'POST', '/v1/tokens', {
      peer: b2.peerId,
      caps: ['render', 'submit'],
    })
    expect(issued.body.token).toContain('.')
    const joined = await apiCall(b2.socket, 'POST', '/v1/join', { code: issued.body.token })
    expect(joined.status).toBe(200)
    const name = new Map(procs.map((p) => [p.peerId, p.options.name ?? p.peerId]))

    // Every site node holds a reservation on the office and is connected to all others.
    await waitFor(
      async () => {
        for (const n of nodes) {
          const info = await nodeOf(n)
          if (!info.reachability?.relays.includes(office.peerId)) return false
          const up = new Set(
            (await peersOf(n))
              .filter((p) => p.connected && p.state !== 'gone')
              .map((p) => p.peerId),
          )
          if (!procs.every((p) => p === n || up.has(p.peerId))) return false
        }
        return true
      },
      25_000,
      'reservations on the office relay and a full mesh through it',
    )
    phase('daemons up, reservations held, full mesh')
    const st = await nodeOf(a1)
    expect(st.reachability?.reachability).toBe('private')
    expect(st.reachability?.relayedAddrs.some((a) => a.includes('/p2p-circuit'))).toBe(true)
    const of = await nodeOf(office)
    expect(of.reachability?.relayService).toBe(true)
    expect(of.reachability?.servedReservations).toBeGreaterThanOrEqual(4)

    const scene = join(work, 'shot.blend')
    await writeFile(scene, Buffer.alloc(300_000, 7))
    const sub = await apiCall<SubmitResponse>(a1.socket, 'POST', '/v1/jobs', {
      scenePath: scene,
      engine: 'test',
      params: { frameMs: 300 },
      frames: '1-8',
      name: 'wan',
      outDir: join(work, 'out'),
    })
    expect(sub.status).toBeLessThan(300)
    const jobId = sub.body.jobId
    const job = await waitFor(
      async () => {
        const d = (await apiCall<JobDetail>(a1.socket, 'GET', `/v1/jobs/${jobId}`)).body
        return d.state === 'done' && d.frames.every((f) => (f.outputs?.length ?? 0) > 0) && d
      },
      30_000,
      'the job to finish with every frame back at site A',
    )
    phase('job done, frames back at site A')
    const renderers = new Set(job.frames.map((f) => f.node))
    const siteA = new Set([a1.peerId, a2.peerId])
    const siteB = new Set([b1.peerId, b2.peerId])
    expect([...renderers].some((r) => r && siteA.has(r))).toBe(true)
    expect([...renderers].some((r) => r && siteB.has(r))).toBe(true)
    const fromB = job.frames.find((f) => f.node && siteB.has(f.node))
    expect((await readFile(fromB!.outputs![0])).byteLength).toBeGreaterThan(0)

    // How each pair is connected, as `rmesh peers` shows it.
    const report: string[] = []
    for (const n of nodes) {
      for (const p of await peersOf(n))
        if (p.connected && n.peerId < p.peerId)
          report.push(`${name.get(n.peerId)} ↔ ${name.get(p.peerId)}: ${p.via}`)
    }
    const count = (k: string) => report.filter((l) => l.endsWith(`: ${k}`)).length
    console.log(
      `two-site NAT connections (${count('hole-punched')} hole-punched, ${count('relayed')} relayed, ${count('direct')} direct):\n  ${report.sort().join('\n  ')}`,
    )
    const across = (await peersOf(a1)).find((p) => p.peerId === b1.peerId)
    expect(['relayed', 'hole-punched']).toContain(across?.via)
    expect((await peersOf(a1)).find((p) => p.peerId === a2.peerId)?.via).toBe('direct')
  }, 90_000)
})
