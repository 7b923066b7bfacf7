import { describe, expect, it } from 'vitest'
import { createLeaseLiveness } from '../../../src/jobs/lease-liveness.js'
import type { LeaseStats } from '../../../src/jobs/lease-types.js'
import type { PeerIdString } from '../../../src/log/types.js'
import { FakeClock } from '../../../src/util/clock.js'
import { silentLogger } from '../../../src/util/logger.js'

const peer = (s: string) => s as PeerIdString

describe('lease liveness', () => {
  it('counts as live renderers this node and the live peers that render, not bystanders', () => {
    const clock = new FakeClock(0)
    const heard = new Map([
      [peer('renderer'), 0],
      [peer('bystander'), 0],
      [peer('unknown'), 0],
    ])
    const judge = createLeaseLiveness(
      {
        clock,
        liveness: {
          lastHeard: (p) => heard.get(p),
          renders: (p) => p !== 'bystander',
        },
        logger: silentLogger,
        stats: {} as LeaseStats,
      },
      { leaseTimeoutMs: 10_000, tickMs: 1_000, stragglerFactor: 0 },
    )
    for (const p of heard.keys()) judge.noteHeartbeat(p, [], 0)
    // This node, the renderer, and the peer whose slots are not known yet (counts as yes).
    expect(judge.liveRenderers(1_000)).toBe(3)
    expect(judge.rivals(1_000).sort()).toEqual(['renderer', 'unknown'])
    // Long unheard: only this node is left.
    expect(judge.liveRenderers(60_000)).toBe(1)
  })
})
