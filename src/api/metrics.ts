/**
 * Prometheus exposition of the daemon's figures (GET /metrics). Read-only: it gathers
 * counters the parts already keep; it never changes state. The one exception is for the
 * soak: GET /metrics?gc=1 on a daemon started with node --expose-gc first runs a full
 * garbage collection, so the heap gauge is the live heap (elsewhere the flag is ignored).
 */
import { getHeapStatistics } from 'node:v8'
import type { DaemonView } from './daemon-view.js'
import { JOB_STATES } from './types.js'

const BUCKETS = [0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600]

export async function renderMetrics(d: DaemonView, opts: { gc?: boolean } = {}): Promise<string> {
  const gc = (globalThis as { gc?: () => void }).gc
  if (opts.gc && typeof gc === 'function') gc()
  // Read before anything below allocates (or awaits, letting other work allocate).
  const mem = process.memoryUsage()
  const lines: string[] = []
  const metric = (name: string, type: string, help: string, values: [string, number][]) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
    for (const [labels, v] of values) lines.push(`${name}${labels} ${Number.isFinite(v) ? v : 0}`)
  }
  const jobs = d.leases.jobs()
  const byState = new Map<string, number>()
  const frames = new Map<string, number>()
  let conflicts = 0
  for (const j of jobs) {
    if (j.deleted) continue
    byState.set(j.state, (byState.get(j.state) ?? 0) + 1)
    conflicts += j.duplicates
    for (const ch of j.chunks)
      if (ch.kind === 'frames') frames.set(ch.state, (frames.get(ch.state) ?? 0) + ch.frames.length)
  }
  metric('rmesh_peers_connected', 'gauge', 'Admitted peers connected now.', [
    ['', d.admission.admittedPeers().length],
  ])
  metric(
    'rmesh_jobs',
    'gauge',
    'Jobs by state.',
    JOB_STATES.map((s) => [`{state="${s}"}`, byState.get(s) ?? 0]),
  )
  metric(
    'rmesh_frames',
    'gauge',
    'Frames by state, over all jobs.',
    ['open', 'claimed', 'done', 'failed', 'waiting'].map((s) => [
      `{state="${s}"}`,
      frames.get(s) ?? 0,
    ]),
  )
  metric(
    'rmesh_gossip_messages_total',
    'counter',
    'Gossip messages delivered to this node (first copies that passed validation), by topic.',
    [...d.counters.gossipByTopic].map(([topic, n]) => [`{topic="${topic}"}`, n]),
  )
  metric(
    'rmesh_gossip_duplicates_total',
    'counter',
    'Copies of gossip messages this node received after the first (each costs a decryption and a decode), by topic.',
    [...d.counters.gossipDuplicatesByTopic].map(([topic, n]) => [`{topic="${topic}"}`, n]),
  )
  metric(
    'rmesh_log_entries_total',
    'counter',
    'Log entries that entered this node, by kind and origin (append: written here; join: from a peer).',
    [...d.counters.entriesByKind].map(([key, n]) => {
      const [kind, origin] = key.split('|')
      return [`{kind="${kind}",origin="${origin}"}`, n]
    }),
  )
  metric('rmesh_frames_rendered_total', 'counter', 'Frames this node rendered.', [
    ['', d.counters.framesRendered],
  ])
  const secs = d.counters.renderSeconds
  lines.push(
    '# HELP rmesh_chunk_render_seconds Time to render a chunk on this node.',
    '# TYPE rmesh_chunk_render_seconds histogram',
  )
  for (const b of BUCKETS)
    lines.push(`rmesh_chunk_render_seconds_bucket{le="${b}"} ${secs.filter((s) => s <= b).length}`)
  lines.push(
    `rmesh_chunk_render_seconds_bucket{le="+Inf"} ${secs.length}`,
    `rmesh_chunk_render_seconds_sum ${secs.reduce((a, b) => a + b, 0)}`,
    `rmesh_chunk_render_seconds_count ${secs.length}`,
  )
  metric('rmesh_slots_busy', 'gauge', 'Render slots in use on this node.', [['', d.activity.size]])
  const ex = d.exchange.stats()
  metric('rmesh_bytes_moved_total', 'counter', 'Block bytes moved by this node.', [
    ['{direction="in"}', ex.fetchedBytes],
    ['{direction="out"}', ex.servedBytes],
  ])
  metric('rmesh_bad_blocks_total', 'counter', 'Blocks from peers that failed their hash check.', [
    ['', ex.badBlocks],
  ])
  const st = await d.blocks.stats()
  metric('rmesh_blocks_bytes', 'gauge', 'Bytes held in the block store.', [['', st.blockBytes]])
  const ls = d.leases.stats()
  metric('rmesh_lease_conflicts_total', 'counter', 'Claims this node lost to another node.', [
    ['', ls.lostClaims],
  ])
  metric(
    'rmesh_lease_claims_total',
    'counter',
    "Claims this node wrote: in a lease pass, or right after its complete of a chunk (one gossip message for both; another job's log may take a message of its own).",
    [
      ['{after="pass"}', ls.claims - ls.claimsWithComplete],
      ['{after="complete"}', ls.claimsWithComplete - ls.claimsWithCompleteApart],
      ['{after="complete-other-job"}', ls.claimsWithCompleteApart],
    ],
  )
  metric(
    'rmesh_lease_reclaims_total',
    'counter',
    'Claims this node made on leases it judged dead (their holder silent or too slow).',
    [['', ls.reclaims]],
  )
  metric(
    'rmesh_loop_stalls_total',
    'counter',
    "Stalls of this daemon's own loop of half a lease timeout or more (stopped, suspended, blocked).",
    [['', ls.stalls]],
  )
  metric(
    'rmesh_loop_stalled_seconds_total',
    'counter',
    "Total length of those stalls: time not counted against peers' silence.",
    [['', ls.stalledMs / 1000]],
  )
  metric(
    'rmesh_duplicate_renders',
    'gauge',
    'Completes beyond the first for a chunk, over all jobs.',
    [['', conflicts]],
  )
  const rejectedOutputs = d.jobs.stats().outputsRejected
  metric(
    'rmesh_outputs_rejected_total',
    'counter',
    'Done chunks this submitter rejected (outputs unobtainable) for re-rendering.',
    [
      ['{cause="hash"}', rejectedOutputs.hash],
      ['{cause="unavailable"}', rejectedOutputs.unavailable],
    ],
  )
  metric('rmesh_rejected_messages_total', 'counter', 'Peer messages and connections refused.', [
    ['', d.counters.rejectedMessages + d.presence.stats().rejected],
  ])
  const links = d.presence.stats()
  metric(
    'rmesh_peer_links_total',
    'counter',
    'Peers introduced by gossip (then dialed), and links replaced because gossip fell silent.',
    [
      ['{event="introduced"}', links.introduced],
      ['{event="silent"}', links.silent],
    ],
  )
  metric('rmesh_process_rss_bytes', 'gauge', 'Resident memory of the daemon process.', [
    ['', mem.rss],
  ])
  metric('rmesh_process_heap_used_bytes', 'gauge', 'V8 heap in use (live and not yet collected).', [
    ['', mem.heapUsed],
  ])
  metric('rmesh_process_heap_total_bytes', 'gauge', 'V8 heap reserved.', [['', mem.heapTotal]])
  metric(
    'rmesh_process_external_bytes',
    'gauge',
    'Memory of buffers and other objects outside the V8 heap.',
    [['', mem.external]],
  )
  metric('rmesh_process_heap_limit_bytes', 'gauge', 'V8 heap size limit.', [
    ['', getHeapStatistics().heap_size_limit],
  ])
  metric(
    'rmesh_state_entries',
    'gauge',
    'Entries of internal per-job maps (they must stay bounded).',
    Object.entries(d.leases.sizes()).map(([k, v]) => [`{map="${k}"}`, v]),
  )
  const caches = d.log.caches()
  metric(
    'rmesh_cache_entries',
    'gauge',
    'Entries of bounded in-memory caches (memory rises while they fill, then stays).',
    caches.map((c) => [`{cache="${c.name}"}`, c.size]),
  )
  metric(
    'rmesh_cache_capacity',
    'gauge',
    'The bound of each cache in rmesh_cache_entries.',
    caches.map((c) => [`{cache="${c.name}"}`, c.capacity]),
  )
  return `${lines.join('\n')}\n`
}
