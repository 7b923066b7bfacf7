import { PeerScore } from '@libp2p/gossipsub/score'
import { describe, expect, it } from 'vitest'
import { watchGossipDuplicates } from '../../../src/net/gossip-copies.js'

describe('watchGossipDuplicates', () => {
  it('counts each duplicate by topic after the score has seen it, changing nothing', () => {
    const calls: unknown[][] = []
    const pubsub = {
      score: {
        duplicateMessage(...args: unknown[]) {
          calls.push(args)
          return 'scored'
        },
      },
    }
    const seen: string[] = []
    expect(watchGossipDuplicates(pubsub, (t) => seen.push(t))).toBe(true)
    const result = (pubsub.score.duplicateMessage as (...a: unknown[]) => unknown)(
      'peer',
      'id',
      'rmesh/log/1.0.0',
    )
    expect(result).toBe('scored')
    expect(calls).toEqual([['peer', 'id', 'rmesh/log/1.0.0']])
    expect(seen).toEqual(['rmesh/log/1.0.0'])
  })

  it("lets the score's own error through and counts nothing for it", () => {
    const pubsub = {
      score: {
        duplicateMessage() {
          throw new Error('boom')
        },
      },
    }
    const seen: string[] = []
    watchGossipDuplicates(pubsub, (t) => seen.push(t))
    expect(() =>
      (pubsub.score.duplicateMessage as (...a: unknown[]) => unknown)('p', 'i', 't'),
    ).toThrow('boom')
    expect(seen).toEqual([])
  })

  it('installs nothing and says so when gossipsub has no such hook', () => {
    expect(watchGossipDuplicates({}, () => {})).toBe(false)
    expect(watchGossipDuplicates(undefined, () => {})).toBe(false)
    expect(watchGossipDuplicates({ score: {} }, () => {})).toBe(false)
  })

  it('finds the hook in the gossipsub this project installs', () => {
    expect(typeof PeerScore.prototype.duplicateMessage).toBe('function')
  })
})
