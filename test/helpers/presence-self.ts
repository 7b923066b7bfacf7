/**
 * What a test node says about itself in its heartbeats (PresenceComponents.self): a
 * renderer with one slot, nothing installed, doing nothing; tests override what they need.
 */
import type { PresenceComponents } from '../../src/net/presence.js'

export const idleSelf = (): ReturnType<PresenceComponents['self']> => ({
  name: 'test',
  version: '0.0.0',
  engines: [],
  slots: 1,
  tags: [],
  freeDiskBytes: 0,
  load: 0,
  doing: [],
  leases: [],
})
