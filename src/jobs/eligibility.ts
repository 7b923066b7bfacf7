/**
 * Which nodes of the mesh could still take each unfinished chunk of a job, and whether the
 * job is stuck (no node at all could take some chunk): the input of the submitter's
 * "no eligible node remains" watchdog and of the waiting hint. Pure.
 *
 * Invariants:
 *  - the rules are the lease manager's and the reducer's, never new ones: a node may take a
 *    chunk when it has a render slot (or is only paused: its disk nearly full, it takes
 *    work again by itself, so the job waits for it rather than fail), every tag the job requires, the job's engine in a
 *    satisfying version that has the device the job asks for (jobs/devices.ts pickRunnable,
 *    which the renderer also uses to pick its version; ffmpeg for the encode chunk), and is not blocklisted in the job
 *    (the reducer ignores its claims). A node that failed a chunk is still eligible for
 *    it: the lease manager hands the chunk to others first but takes it again once every
 *    live peer has failed it, until the blocklist stops it;
 *  - only chunks that need a node count: open ones, and claimed ones whose holder is not
 *    among the live nodes (its lease will be reopened). A waiting encode chunk does not
 *    count yet (an ffmpeg node may appear while the frames render);
 *  - a job that is not queued or rendering (or is canceled or deleted) is never stuck.
 */
import type { PeerIdString } from '../log/types.js'
import { DEFAULT_MAX_FAILURES_PER_NODE } from './entries.js'
import { formatFrames } from './frame-spec.js'
import type { ChunkState, JobState } from './reducer.js'
import { deviceLabel, type EngineDevices, pickRunnable } from './devices.js'
import { versionSatisfies } from './version.js'
import { describeNeeds, nodeCanEncode } from './video-options.js'

/** A live node as presence reports it (this node included). */
export interface MeshNode {
  id: PeerIdString
  /** Human name for messages; the id's tail when absent. */
  name?: string
  engines: readonly { name: string; version: string }[]
  slots: number
  /** A passing reason it offers no slot now (presence `paused`): it counts as able. */
  paused?: string
  tags: readonly string[]
  /** What its ffmpeg can encode (presence `video`); absent from older nodes. */
  video?: readonly string[]
  /** The render devices each engine version sees (presence `devices`); absent from older nodes. */
  devices?: readonly EngineDevices[]
}

export interface ChunkEligibility {
  chunk: number
  /** The nodes that could take it now (ids, sorted). */
  nodes: PeerIdString[]
}

export type EligibilityVerdict =
  | { ok: true }
  | { ok: false; chunk: number; stuckChunks: number[]; why: string }

/** The node satisfies the job's requirements for a chunk of `kind`, blocklist aside. */
export function nodeMeetsRequirements(
  s: JobState,
  node: Pick<MeshNode, 'engines' | 'tags' | 'video' | 'devices'>,
  kind: ChunkState['kind'],
): boolean {
  const tags = s.job.requirements.tags ?? []
  if (!tags.every((t) => node.tags.includes(t))) return false
  return hasEngine(s, node, kind)
}

/** What the lease manager checks before claiming (slots aside: it counts those itself). */
export function nodeCanRun(
  s: JobState,
  node: Pick<MeshNode, 'id' | 'engines' | 'tags' | 'video' | 'devices'>,
  kind: ChunkState['kind'],
): boolean {
  return !s.blocklist.includes(node.id) && nodeMeetsRequirements(s, node, kind)
}

function hasEngine(
  s: JobState,
  node: Pick<MeshNode, 'engines' | 'video' | 'devices'>,
  kind: ChunkState['kind'],
) {
  if (kind === 'encode')
    return node.engines.some((e) => e.name === 'ffmpeg') && nodeCanEncode(s.job.output, node.video)
  const { name, version } = s.job.engine
  return (
    pickRunnable(node.engines, node.devices, name, version, s.job.requirements.device) !== undefined
  )
}

/** The job's engine in a satisfying version, whatever devices it sees (for the reason). */
function hasEngineVersion(s: JobState, node: Pick<MeshNode, 'engines'>): boolean {
  return node.engines.some(
    (e) => e.name === s.job.engine.name && versionSatisfies(e.version, s.job.engine.version),
  )
}

function jobLive(s: JobState): boolean {
  return !s.canceled && !s.deleted && (s.state === 'queued' || s.state === 'rendering')
}

/** Chunks that need a node now, given the live nodes. */
function needy(s: JobState, live: ReadonlySet<string>): ChunkState[] {
  if (!jobLive(s)) return []
  return s.chunks.filter(
    (c) => c.state === 'open' || (c.state === 'claimed' && !live.has(c.holder as string)),
  )
}

/** For each chunk that needs a node, the live nodes that could take it. */
export function chunkEligibility(s: JobState, nodes: readonly MeshNode[]): ChunkEligibility[] {
  const live = new Set(nodes.map((n) => n.id as string))
  return needy(s, live).map((c) => ({
    chunk: c.index,
    nodes: nodes
      .filter((n) => (n.slots > 0 || n.paused !== undefined) && nodeCanRun(s, n, c.kind))
      .map((n) => n.id)
      .sort(),
  }))
}

/** ok, or the first chunk no live node can take, with why in words. */
export function eligibilityVerdict(s: JobState, nodes: readonly MeshNode[]): EligibilityVerdict {
  const stuck = chunkEligibility(s, nodes).filter((x) => x.nodes.length === 0)
  if (stuck.length === 0) return { ok: true }
  const c = s.chunks[stuck[0].chunk]
  const more = stuck.length > 1 ? ` (and ${stuck.length - 1} more chunk(s))` : ''
  return {
    ok: false,
    chunk: c.index,
    stuckChunks: stuck.map((x) => x.chunk),
    why: `${chunkName(c)}${more}: ${whyNobody(s, c, nodes)}`,
  }
}

function chunkName(c: ChunkState): string {
  return c.kind === 'encode'
    ? 'the video encode'
    : `chunk ${c.index} (frame${c.frames.length > 1 ? 's' : ''} ${formatFrames(c.frames)})`
}

function whyNobody(s: JobState, c: ChunkState, nodes: readonly MeshNode[]): string {
  const need =
    c.kind === 'encode'
      ? `${describeNeeds(s.job.output)} (needed to encode the video)`
      : `${s.job.engine.name}${s.job.engine.version ? ` ${s.job.engine.version}` : ''}`
  const device = c.kind === 'encode' ? undefined : s.job.requirements.device
  if (
    device &&
    nodes.some((n) => hasEngineVersion(s, n)) &&
    !nodes.some((n) => hasEngine(s, n, c.kind))
  )
    return `no node of the mesh has ${deviceLabel(device)} (for ${need})`
  const withEngine = nodes.filter((n) => hasEngine(s, n, c.kind))
  if (withEngine.length === 0)
    return `no node of the mesh has ${need}${device ? ` with ${deviceLabel(device)}` : ''}`
  const tags = s.job.requirements.tags ?? []
  const withTags = withEngine.filter((n) => nodeMeetsRequirements(s, n, c.kind))
  if (withTags.length === 0)
    return `no node of the mesh with ${need} has the tags ${tags.join(', ')}`
  const withSlots = withTags.filter((n) => n.slots > 0 || n.paused !== undefined)
  if (withSlots.length === 0) return `no node of the mesh with ${need} has a render slot`
  const n = s.job.limits.maxFailuresPerNode ?? DEFAULT_MAX_FAILURES_PER_NODE
  const names = withSlots.map((x) => x.name ?? x.id.slice(-8)).sort()
  return `every node that can run it failed ${n} chunk(s) of this job and is blocklisted: ${names.join(', ')}`
}
