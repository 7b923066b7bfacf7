/**
 * An in-memory ApiClient for CLI and dashboard tests: fixed data, recorded calls, and an
 * event stream the test pushes into (`emit`), numbered like the daemon's.
 */
import type { ApiClient } from '../../../src/api/client.js'
import type {
  ApiEvent,
  EventInput,
  JobDetail,
  JobSummary,
  NodeInfo,
  PeerInfo,
} from '../../../src/api/types.js'
import { AbortedError, NotFoundError } from '../../../src/util/errors.js'

export const PEER_A = '12D3KooWA1111111111111111111111111111111111111111111'
export const PEER_B = '12D3KooWB2222222222222222222222222222222222222222222'

export function node(over: Partial<NodeInfo> = {}): NodeInfo {
  return {
    peerId: PEER_A,
    name: 'ws-01',
    version: '0.1.0',
    addresses: [`/ip4/127.0.0.1/tcp/4777/p2p/${PEER_A}`],
    meshId: 'mesh1',
    admitted: true,
    caps: ['admin', 'submit', 'render'],
    engines: [{ name: 'blender', version: '3.4.1' }],
    slots: { total: 1, busy: 0 },
    dataDir: '/tmp/x',
    uptimeMs: 5000,
    peerCount: 1,
    ...over,
  }
}

export function peer(over: Partial<PeerInfo> = {}): PeerInfo {
  return {
    peerId: PEER_B,
    name: 'render-02',
    addresses: [`/ip4/127.0.0.1/tcp/4778/p2p/${PEER_B}`],
    engines: [{ name: 'blender', version: '3.4.1' }],
    slots: { total: 2, busy: 1 },
    state: 'busy',
    connected: true,
    admitted: true,
    work: [
      {
        jobId: 'job111111',
        jobName: 'shot',
        chunk: 3,
        frames: [3],
        frame: 3,
        progress: 0.5,
        kind: 'render',
      },
    ],
    load: 0.7,
    freeDiskBytes: 1e10,
    lastSeenMs: 800,
    ...over,
  }
}

export function summary(over: Partial<JobSummary> = {}): JobSummary {
  return {
    jobId: 'job111111',
    name: 'shot',
    state: 'rendering',
    priority: 50,
    framesDone: 2,
    framesFailed: 0,
    framesRendering: 1,
    framesTotal: 4,
    nodesRendering: 1,
    submitter: PEER_A,
    mine: true,
    outDir: '/tmp/out',
    framesLocal: 2,
    localComplete: false,
    etaMs: 60_000,
    framesPerMinute: 2,
    createdAt: 1000,
    ...over,
  }
}

export function detail(over: Partial<JobDetail> = {}): JobDetail {
  const s = summary(over)
  return {
    ...s,
    scene: { path: '/tmp/shot.blend', name: 'shot.blend', sizeBytes: 100 },
    blocked: [],
    engine: 'blender',
    format: 'png',
    chunkSize: 1,
    require: [],
    params: {},
    frames: [
      { frame: 1, state: 'done', node: PEER_B, attempts: 1, renderMs: 1200 },
      { frame: 2, state: 'done', node: PEER_A, attempts: 1, renderMs: 1300 },
      { frame: 3, state: 'rendering', node: PEER_B, attempts: 1, progress: 0.5 },
      { frame: 4, state: 'failed', node: PEER_A, attempts: 2, error: 'boom', errorNode: PEER_A },
    ],
    chunks: [],
    blocklist: [],
    ...over,
  }
}

type Handler = (...args: unknown[]) => unknown

export interface FakeClient extends ApiClient {
  calls: { method: string; args: unknown[] }[]
  emit(e: EventInput): void
  /** Replace one method's behaviour. */
  on(method: keyof ApiClient, fn: Handler): void
  /** Number of open event streams. */
  streams(): number
}

export function createFakeClient(
  data: { node?: NodeInfo; peers?: PeerInfo[]; jobs?: JobDetail[] } = {},
): FakeClient {
  const calls: FakeClient['calls'] = []
  const overrides = new Map<string, Handler>()
  const jobs = new Map((data.jobs ?? [detail()]).map((j) => [j.jobId, j]))
  let seq = 0
  const listeners = new Set<(e: ApiEvent) => void>()
  const record =
    (method: string, fallback: Handler) =>
    async (...args: unknown[]) => {
      calls.push({ method, args })
      const o = overrides.get(method)
      return o ? o(...args) : fallback(...args)
    }
  const find = (id: unknown) => {
    const j = jobs.get(String(id))
    if (!j) throw new NotFoundError(`job ${String(id)}`)
    return j
  }
  const client = {
    socketPath: '/fake/rmesh.sock',
    calls,
    node: record('node', () => data.node ?? node()),
    peers: record('peers', () => data.peers ?? [peer()]),
    jobs: record('jobs', () => [...jobs.values()].map(({ frames: _f, chunks: _c, ...s }) => s)),
    job: record('job', (id) => find(id)),
    submit: record('submit', () => ({
      jobId: 'job222222',
      name: 'new',
      framesTotal: 10,
      outDir: '/tmp/new',
    })),
    inspect: record('inspect', (req) => ({
      path: (req as { path: string }).path,
      engine: 'blender',
      sizeBytes: 1,
      frameStart: 1,
      frameEnd: 24,
      frameStep: 1,
      fps: 24,
      resolution: { x: 64, y: 64, percent: 100 },
      renderEngine: 'CYCLES',
      format: 'PNG',
      missingFiles: [],
      externalFiles: 0,
    })),
    cancel: record('cancel', (id) => ({ ...find(id), state: 'canceled' })),
    pause: record('pause', (id) => ({ ...find(id), state: 'paused' })),
    resume: record('resume', (id) => ({ ...find(id), state: 'rendering' })),
    retry: record('retry', (id) => ({ jobId: id, reopened: [4] })),
    setPriority: record('setPriority', (id, p) => ({ ...find(id), priority: p })),
    deleteJob: record('deleteJob', (id) => ({ jobId: id, deleted: true })),
    logs: record('logs', () => 'line one\nline two\n'),
    thumbnailPng: record('thumbnailPng', () => {
      throw new NotFoundError('a thumbnail')
    }),
    followLogs: (jobId: string, q: unknown, o?: { signal?: AbortSignal }) => {
      calls.push({ method: 'followLogs', args: [jobId, q] })
      return (async function* () {
        yield 'Fra:3 Mem:10M | Sample 1/16'
        yield 'Fra:3 Mem:10M | Sample 8/16'
        await new Promise((_, reject) =>
          o?.signal?.addEventListener('abort', () => reject(new AbortedError('logs'))),
        )
      })()
    },
    fetch: record('fetch', (id, req) => ({
      jobId: id,
      out: (req as { out: string }).out,
      files: 4,
      bytes: 4096,
      missing: [],
    })),
    tokens: record('tokens', () => [
      {
        id: 'tok1',
        audience: PEER_B,
        issuer: PEER_A,
        caps: ['render'],
        notBefore: 0,
        expires: null,
        revoked: false,
        self: false,
      },
    ]),
    issueToken: record('issueToken', (req) => ({
      id: 'tok2',
      token: 'rmesh-token-AAAA',
      audience: (req as { peer: string }).peer,
      caps: (req as { caps: string[] }).caps,
      expires: 86_400_000,
    })),
    invite: record('invite', () => ({
      id: 'inv1',
      invite: 'rmesh-invite-BBBB',
      caps: ['render'],
      expires: 3_600_000,
    })),
    revokeToken: record('revokeToken', (id) => ({
      id,
      audience: PEER_B,
      issuer: PEER_A,
      caps: ['render'],
      notBefore: 0,
      expires: null,
      revoked: true,
      self: false,
    })),
    renewToken: record('renewToken', () => ({
      id: 'tok3',
      token: 'rmesh-token-CCCC',
      audience: PEER_A,
      caps: ['render'],
      expires: 1,
    })),
    join: record('join', () => ({
      kind: 'token',
      tokenId: 'tok4',
      meshId: 'mesh1',
      caps: ['render'],
      expires: null,
    })),
    metrics: record('metrics', () => ''),
    nodeRules: record('nodeRules', () => data.node?.rules ?? { state: 'active', limits: {} }),
    pauseNode: record('pauseNode', (mode) => ({
      state: mode === 'now' ? 'paused' : 'draining',
      pause: mode,
      limits: {},
    })),
    resumeNode: record('resumeNode', () => ({ state: 'active', limits: {} })),
    setSchedule: record('setSchedule', (text) => ({
      state: 'active',
      ...(text ? { schedule: { text, open: true, source: 'node' } } : {}),
      limits: {},
    })),
    setIdle: record('setIdle', () => ({ state: 'active', limits: {} })),
    setLimits: record('setLimits', (l) => ({ state: 'active', limits: l })),
    events: (o?: { signal?: AbortSignal }) => {
      calls.push({ method: 'events', args: [] })
      const queue: ApiEvent[] = [{ type: 'node', node: data.node ?? node(), seq: ++seq, time: 0 }]
      let wake: (() => void) | undefined
      const listener = (e: ApiEvent) => {
        queue.push(e)
        wake?.()
      }
      return (async function* () {
        listeners.add(listener)
        try {
          for (;;) {
            while (queue.length) yield queue.shift() as ApiEvent
            if (o?.signal?.aborted) throw new AbortedError('events')
            await new Promise<void>((resolve) => {
              wake = resolve
              o?.signal?.addEventListener('abort', () => resolve(), { once: true })
            })
            wake = undefined
          }
        } finally {
          listeners.delete(listener)
        }
      })()
    },
    emit: (e: EventInput) => {
      const ev = { ...e, seq: ++seq, time: 0 } as ApiEvent
      if (ev.type === 'job-updated') {
        const prev = jobs.get(ev.job.jobId)
        if (prev) jobs.set(ev.job.jobId, { ...prev, ...ev.job })
      }
      if (ev.type === 'frame-updated') {
        const prev = jobs.get(ev.jobId)
        if (prev)
          jobs.set(ev.jobId, {
            ...prev,
            frames: prev.frames.map((f) => (f.frame === ev.frame.frame ? ev.frame : f)),
          })
      }
      for (const l of listeners) l(ev)
    },
    on: (method: string, fn: Handler) => overrides.set(method, fn),
    streams: () => listeners.size,
  }
  return client as unknown as FakeClient
}
