/**
 * The worker's prepare(): a claim starts the scene fetch, and the render that follows
 * finds the scene fetched (one fetch per job, shared), on real libp2p and block stores.
 */
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { BlockExchange } from '../../../src/blobs/exchange.js'
import type { ProviderIndex } from '../../../src/blobs/providers.js'
import { createTestEngine } from '../../../src/engines/test-engine.js'
import type { ChunkTask } from '../../../src/jobs/runner.js'
import type { PeerIdString } from '../../../src/log/types.js'
import { createWorker, scenePinOwner } from '../../../src/worker/runner.js'
import { silentLogger } from '../../../src/util/logger.js'
import { announceBody, JOB } from '../../unit/jobs/fixtures.js'
import { Cluster, patternBytes } from './helpers.js'

describe('worker prepare', () => {
  const cluster = new Cluster()
  afterEach(() => cluster.close())

  it('fetches the scene while the claim is written; the render then uses it', async () => {
    const submitter = await cluster.node()
    const renderer = await cluster.node()
    const { manifest } = await submitter.store.importBytes('scene.blend', patternBytes(300_000))
    let fetches = 0
    const exchange: BlockExchange = {
      ...renderer.exchange,
      fetchManifest: (cid, opts) => {
        fetches++
        return renderer.exchange.fetchManifest(cid, opts)
      },
    }
    const providers = {
      announce: async () => undefined,
      providersOf: () => [],
      findProviders: async (_cid: string, o: { known?: string[] } = {}) => o.known ?? [],
    } as unknown as ProviderIndex
    const engine = createTestEngine()
    const worker = createWorker({
      blocks: renderer.store,
      exchange,
      providers,
      engines: { get: (name) => (name === 'test' ? engine : undefined) },
      jobState: () => undefined,
      workRoot: join(renderer.dir, 'work'),
      logger: silentLogger,
    })
    const task: ChunkTask = {
      jobId: JOB,
      job: announceBody({
        submitter: submitter.id as PeerIdString,
        scene: { manifest, name: 'scene.blend', size: 300_000 },
        params: { frameMs: 10 },
      }),
      chunk: 0,
      attempt: 1,
      frames: [1],
      kind: 'frames',
    }
    worker.prepare(task)
    worker.prepare({ ...task, chunk: 1 })
    for (
      let i = 0;
      i < 100 && (await renderer.store.missingBlocks(manifest).catch(() => ['?'])).length > 0;
      i++
    )
      await new Promise((r) => setTimeout(r, 50))
    expect(await renderer.store.missingBlocks(manifest)).toEqual([])
    expect(await renderer.store.pinsOf(scenePinOwner(JOB))).toEqual([manifest])
    const result = await worker.start(task, new AbortController().signal)
    expect(result.outputs.map((o) => o.frame)).toEqual([1])
    // One fetch for the job: the two prepares and the render shared it.
    expect(fetches).toBe(1)
    // A prepare for what this node cannot run does nothing.
    worker.prepare({ ...task, jobId: 'other', job: { ...task.job, engine: { name: 'nope' } } })
    await worker.forgetJob(JOB)
  })
})
