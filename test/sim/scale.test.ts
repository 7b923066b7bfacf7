/**
 * The scale scenario of issue 17 (test/sim/scale.ts): heavy-tailed frames, 1 % loss, a
 * partition of 30 % of the mesh for 60 s, kills and restarts.
 *  - In `npm test`: 30 nodes, 1,000 frames, 3 kills (about 10 s).
 *  - With `npm run sim:scale` (RMESH_SIM_SCALE=1): 100 nodes, 10,000 frames, 10 kills; its
 *    figures are written to bench/RESULTS.md (section "Scale: 100 nodes in the simulator").
 *
 * The 30-node job gives each node ~33 frames of up to 120 s, so the last frames' tail is a
 * larger share of its makespan than at 100 nodes × 100 frames: its efficiency bound is
 * 0.9, the 100-node one the issue's 0.95.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { JOB, runScale, type ScaleOutcome } from './scale.js'

function expectSound(o: ScaleOutcome): void {
  // Every frame done exactly once in the end state, on every replica alike.
  const frames = o.final.chunks.filter((c) => c.kind === 'frames')
  expect(frames).toHaveLength(o.frames)
  for (const c of frames) expect(c.state).toBe('done')
  const done = new Set(frames.flatMap((c) => c.frames))
  expect(done.size).toBe(o.frames)
  expect(o.mesh.converged(JOB)).toBe(true)
  expect(o.duplicateRate).toBeLessThan(0.01)
}

describe('scale', () => {
  it('30 nodes, 1,000 heavy-tailed frames, loss, a partition, 3 kills: each frame once, efficient', async () => {
    const o = await runScale({ seed: 1, nodes: 30, frames: 1000, kills: 3 })
    expectSound(o)
    expect(o.efficiency).toBeGreaterThanOrEqual(0.9)
  }, 120_000)

  it.runIf(process.env.RMESH_SIM_SCALE === '1')(
    '100 nodes, 10,000 frames, 10 kills (npm run sim:scale)',
    async () => {
      const small = await runScale({ seed: 1, nodes: 30, frames: 1000, kills: 3 })
      const o = await runScale({ seed: 1, nodes: 100, frames: 10_000, kills: 10 })
      await writeResults([small, o])
      expectSound(o)
      expect(o.efficiency).toBeGreaterThanOrEqual(0.95)
    },
    1_800_000,
  )
})

const HEADING = '## Scale: 100 nodes in the simulator (issue 17)'

async function writeResults(runs: ScaleOutcome[]): Promise<void> {
  const rows: string[] = []
  const r = (x: number, d = 3) => Number(x.toFixed(d))
  for (const o of runs) {
    const k = `scale.sim.${o.nodes}n`
    const per = Object.entries(o.messagesPerChunk)
      .map(([t, v]) => `${t} ${r(v, 1)}`)
      .join(', ')
    rows.push(
      `| ${k}.efficiency | ${r(o.efficiency)} | x | ideal ÷ makespan (${o.nodes} nodes, ${o.frames} frames, ${o.kills} kills) |`,
      `| ${k}.duplicates | ${r(100 * o.duplicateRate, 2)} | % | renders completed beyond the first per chunk: ${o.duplicateRenders} of ${o.frames} |`,
      `| ${k}.makespan | ${r(o.makespanMs / 1000, 1)} | s | submit → every replica has the job done |`,
      `| ${k}.ideal | ${r(o.idealMs / 1000, 1)} | s | max((work ${r(o.workMs / 1000, 0)} s + downtime ${r(o.downtimeMs / 1000, 0)} s) ÷ ${o.nodes}, longest frame ${o.longestFrameMs / 1000} s) |`,
      `| ${k}.claims-per-chunk | ${r(o.leasePerChunk.claims)} | entries | lost races ${r(o.leasePerChunk.lostClaims)}, reclaims ${r(o.leasePerChunk.reclaims)}, releases ${r(o.leasePerChunk.releases)} per chunk |`,
      `| ${k}.messages-per-chunk | ${r(
        Object.values(o.messagesPerChunk).reduce((a, b) => a + b, 0),
        1,
      )} | sends | by type: ${per} (simulated sends, each to one peer) |`,
      `| ${k}.wall | ${r(o.wallMs / 1000, 1)} | s | time the simulation took on this machine |`,
    )
  }
  const section = [
    HEADING,
    '',
    `Command: \`npm run sim:scale\` (test/sim/scale.test.ts, seed 1), ${new Date().toISOString()}. Simulated mesh (test/sim): the real reducer and lease manager on a fake clock; heavy-tailed frame times (log-normal, median 22 s, clipped to 10–120 s), 1 % message loss, 1–20 ms latency, 30 % of the nodes partitioned for 60 s at 40 % of the job, kills of 30–180 s each then a restart. Ideal = max((work + downtime) ÷ nodes, longest frame); efficiency = ideal ÷ makespan.`,
    '',
    '| figure | value | unit | note |',
    '| --- | ---: | --- | --- |',
    ...rows,
    '',
  ].join('\n')
  const path = join(process.cwd(), 'bench', 'RESULTS.md')
  const text = await readFile(path, 'utf8')
  const start = text.indexOf(HEADING)
  let next: string
  if (start >= 0) {
    const after = text.indexOf('\n## ', start + HEADING.length)
    // The section ends with one newline: keep a blank line before the next heading.
    next = text.slice(0, start) + section + (after >= 0 ? `\n${text.slice(after + 1)}` : '')
  } else {
    const first = text.indexOf('\n## ')
    next = `${text.slice(0, first + 1)}${section}\n${text.slice(first + 1)}`
  }
  await writeFile(path, next)
}
