/**
 * The scale scenario of issue 17 on the simulated mesh: N nodes render one job of F
 * frames with heavy-tailed frame times (log-normal, clipped to 10–120 s), 1 % message
 * loss, a partition of 30 % of the mesh for 60 s, and K kills each followed by a restart.
 * Shared by test/sim/scale.test.ts (30 nodes in `npm test`, 100 with `npm run sim:scale`).
 *
 * Definitions (also in bench/RESULTS.md):
 *  - work W: the sum of every frame's base render time (one render each);
 *  - downtime D: node-time the kills took out of the mesh (kill → restart) before the end;
 *  - ideal = max((W + D) / N, longest frame): the makespan of a perfect scheduler on the
 *    node-time that was there (N·T − D = W), never shorter than the longest frame;
 *  - efficiency = ideal ÷ makespan (submit → every live replica has the job done);
 *  - duplicate renders: renders that ran to completion beyond the first of their chunk,
 *    as a fraction of chunks (an aborted render is not one: it never finished).
 *
 * Invariants: everything random comes from the seed (frame times from a PRNG of their
 * own, so the same frames come whatever the network does); the schedule of faults is
 * fixed before the run from the frame times alone.
 */
import type { LeaseStats } from '../../src/jobs/lease-manager.js'
import type { JobState } from '../../src/jobs/reducer.js'
import { jobLogId } from '../../src/log/types.js'
import { mulberry32 } from './clock.js'
import { SimMesh } from './mesh.js'

export interface ScaleOptions {
  seed: number
  nodes: number
  frames: number
  kills: number
  loss?: number
  /** Share of the nodes cut off together, and for how long. */
  partitionShare?: number
  partitionMs?: number
  /** SimOptions.pacedHeartbeats (default true, as the daemon does). */
  pacedHeartbeats?: boolean
  /** SimOptions.logPulse (default true, as the daemon does). */
  logPulse?: boolean
}

export interface ScaleOutcome {
  seed: number
  nodes: number
  frames: number
  kills: number
  makespanMs: number
  idealMs: number
  workMs: number
  downtimeMs: number
  longestFrameMs: number
  /** The longest frame bounds the ideal (rather than work ÷ nodes). */
  longestBounds: boolean
  efficiency: number
  duplicateRenders: number
  duplicateRate: number
  /** Log entries per chunk, by kind (the final log). */
  entriesPerChunk: Record<string, number>
  /** Messages sent per chunk, by type (each send to one peer counts once). */
  messagesPerChunk: Record<string, number>
  /** Lease manager counters summed over every node (and every life of it), per chunk. */
  leasePerChunk: Pick<LeaseStats, 'claims' | 'lostClaims' | 'reclaims' | 'releases' | 'completes'>
  final: JobState
  /** Wall time the simulation took. */
  wallMs: number
  mesh: SimMesh
}

/** Heavy-tailed frame times: log-normal (median 22 s, σ 0.65), clipped to 10–120 s. */
export function frameTimes(seed: number, frames: number): number[] {
  const r = mulberry32(seed ^ 0x5eed5eed)
  const out: number[] = []
  for (let i = 0; i < frames; i++) {
    // Box–Muller from two uniforms in (0, 1].
    const z = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r())
    out.push(Math.round(Math.min(120_000, Math.max(10_000, 22_000 * Math.exp(0.65 * z)))))
  }
  return out
}

export const JOB = 'scalejob'

export async function runScale(o: ScaleOptions): Promise<ScaleOutcome> {
  const wall0 = performance.now()
  const times = frameTimes(o.seed, o.frames)
  const workMs = times.reduce((a, b) => a + b, 0)
  const longestFrameMs = Math.max(...times)
  const mesh = new SimMesh({
    seed: o.seed,
    nodes: o.nodes,
    loss: o.loss ?? 0.01,
    latencyMs: [1, 20],
    frameTime: (f) => times[f - 1],
    quantumMs: 5,
    pacedHeartbeats: o.pacedHeartbeats ?? true,
    logPulse: o.logPulse ?? true,
  })
  await mesh.start()
  const t0 = mesh.clock.monotonic()
  await mesh.submit(mesh.nodes[0], {
    jobId: JOB,
    frames: Array.from({ length: o.frames }, (_, i) => i + 1),
  })

  // The faults, placed on the estimated ideal: kills in its first three quarters (never
  // the submitter, whose node would also be fetching outputs), each down 30–180 s; the
  // partition at 40 % of it.
  const plan = mulberry32(o.seed ^ 0x0fa17)
  const estimate = workMs / o.nodes
  const downs: { from: number; to: number }[] = []
  for (let k = 0; k < o.kills; k++) {
    const at = t0 + estimate * (0.05 + 0.7 * plan())
    const downMs = 30_000 + 150_000 * plan()
    const pick = 1 + Math.floor(plan() * (o.nodes - 1))
    mesh.clock.setTimeout(() => {
      // A node already down is not killed twice: the next live one is.
      let victim = mesh.nodes[pick]
      for (let i = 0; !victim.alive && i < o.nodes; i++)
        victim = mesh.nodes[1 + ((pick + i) % (o.nodes - 1))]
      if (!victim.alive) return
      victim.kill()
      const down = { from: mesh.clock.monotonic(), to: Number.POSITIVE_INFINITY }
      downs.push(down)
      mesh.clock.setTimeout(() => {
        down.to = mesh.clock.monotonic()
        void victim.boot()
      }, downMs)
    }, at - t0)
  }
  const share = o.partitionShare ?? 0.3
  const cut = new Set<number>()
  while (cut.size < Math.round(share * o.nodes)) cut.add(Math.floor(plan() * o.nodes))
  mesh.clock.setTimeout(() => {
    mesh.groups = mesh.nodes.map((n) => (cut.has(n.index) ? 1 : 0))
    mesh.clock.setTimeout(() => {
      mesh.groups = mesh.groups.map(() => 0)
    }, o.partitionMs ?? 60_000)
  }, estimate * 0.4)

  const finished = await mesh.runUntil(() => mesh.allDone(JOB), estimate * 3)
  const end = mesh.clock.monotonic()
  const makespanMs = end - t0
  if (!finished) throw new Error(`seed ${o.seed}: the job did not finish in ${estimate * 3} ms`)
  // Let anti-entropy carry the last entries everywhere (restarts still pending included).
  const converged = await mesh.runUntil(
    () => mesh.nodes.every((n) => n.alive) && mesh.converged(JOB),
    240_000,
  )
  if (!converged) throw new Error(`seed ${o.seed}: replicas did not converge`)

  const downtimeMs = downs.reduce((a, d) => a + Math.max(0, Math.min(d.to, end) - d.from), 0)
  const idealMs = Math.max((workMs + downtimeMs) / o.nodes, longestFrameMs)
  const chunks = o.frames
  const per = (n: number) => n / chunks
  const entriesPerChunk: Record<string, number> = {}
  for (const e of mesh.nodes[0].replica.entries(jobLogId(JOB)))
    entriesPerChunk[e.kind] = (entriesPerChunk[e.kind] ?? 0) + 1
  for (const k of Object.keys(entriesPerChunk)) entriesPerChunk[k] = per(entriesPerChunk[k])
  const messagesPerChunk: Record<string, number> = {}
  for (const [k, v] of Object.entries(mesh.sent)) messagesPerChunk[k] = per(v)
  const stats = [...mesh.retiredStats, ...mesh.nodes.map((n) => n.manager.stats())]
  const sum = (k: keyof LeaseStats) => per(stats.reduce((a, s) => a + s[k], 0))
  const duplicateRenders = mesh.duplicateRenders()
  return {
    seed: o.seed,
    nodes: o.nodes,
    frames: o.frames,
    kills: o.kills,
    makespanMs,
    idealMs,
    workMs,
    downtimeMs,
    longestFrameMs,
    longestBounds: longestFrameMs >= (workMs + downtimeMs) / o.nodes,
    efficiency: idealMs / makespanMs,
    duplicateRenders,
    duplicateRate: duplicateRenders / chunks,
    entriesPerChunk,
    messagesPerChunk,
    leasePerChunk: {
      claims: sum('claims'),
      lostClaims: sum('lostClaims'),
      reclaims: sum('reclaims'),
      releases: sum('releases'),
      completes: sum('completes'),
    },
    final: mesh.state(mesh.nodes[0], JOB)!,
    wallMs: performance.now() - wall0,
    mesh,
  }
}
