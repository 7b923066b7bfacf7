/**
 * What the dashboard calls a node's state, from its presence (or, for this node, its own
 * rules): the owner's rules first (paused, draining, off its schedule, waiting for its user
 * to be idle), then what it does (busy, idle), or gone. Pure; short labels so a peer row
 * fits 80 columns.
 */
import type { NodeRuleState, PeerInfo } from '../../src/api/types.js'

export interface NodeStateLabel {
  label: 'gone' | 'paused' | 'draining' | 'sched-off' | 'idle-wait' | 'busy' | 'idle'
  color: 'gray' | 'yellow' | 'cyan' | 'green' | 'magenta'
}

const RULE_LABEL: Record<Exclude<NodeRuleState, 'active'>, NodeStateLabel> = {
  paused: { label: 'paused', color: 'yellow' },
  draining: { label: 'draining', color: 'yellow' },
  'off-schedule': { label: 'sched-off', color: 'magenta' },
  'idle-wait': { label: 'idle-wait', color: 'magenta' },
}

export function ruleLabel(state: NodeRuleState | undefined): NodeStateLabel | undefined {
  return state && state !== 'active' ? RULE_LABEL[state] : undefined
}

export function peerStateLabel(p: Pick<PeerInfo, 'state' | 'rules'>): NodeStateLabel {
  if (p.state === 'gone') return { label: 'gone', color: 'gray' }
  const byRule = ruleLabel(p.rules?.state)
  if (byRule) return byRule
  if (p.state === 'busy') return { label: 'busy', color: 'cyan' }
  if (p.state === 'paused') return { label: 'paused', color: 'yellow' }
  return { label: 'idle', color: 'green' }
}
