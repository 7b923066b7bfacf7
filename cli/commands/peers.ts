/** `rmesh peers`: the peers this node knows, with their presence. --json: PeerInfo[]. */
import type { Command } from 'commander'
import type { PeerInfo } from '../../src/api/types.js'
import { type CliContext, printJson } from '../context.js'
import { formatDuration, shortPeer, table, workText } from '../format.js'
import { action } from '../command.js'
import { stateText } from './node.js'

export function register(program: Command, ctx: CliContext): void {
  program
    .command('peers')
    .description('list the peers of the mesh this node knows, with what they are doing')
    .option('--json', 'print JSON (an array of objects with peerId, name, addresses, state, …)')
    .option(
      '--by-tag',
      'group by tag (pools): one table per tag, a node in each of its tags; --json: {tag: [...]}',
    )
    .addHelpText(
      'after',
      `
Examples:
  rmesh peers
  rmesh peers --json | jq -r '.[].peerId'
  rmesh peers --by-tag`,
    )
    .action(action((opts: { json?: boolean; byTag?: boolean }) => peers(ctx, opts)))
}

/** Peers by tag (a peer under each of its tags; untagged ones under ''), tags sorted. */
export function groupByTag(list: readonly PeerInfo[]): Map<string, PeerInfo[]> {
  const groups = new Map<string, PeerInfo[]>()
  for (const p of list)
    for (const t of p.tags?.length ? p.tags : ['']) groups.set(t, [...(groups.get(t) ?? []), p])
  return new Map(
    [...groups].sort(([a], [b]) => (a === '' ? 1 : b === '' ? -1 : a.localeCompare(b))),
  )
}

export async function peers(
  ctx: CliContext,
  opts: { json?: boolean; byTag?: boolean },
): Promise<number> {
  const list = await ctx.client().peers()
  if (opts.byTag) {
    const groups = groupByTag(list)
    if (opts.json) {
      printJson(ctx, Object.fromEntries(groups))
      return 0
    }
    for (const [tag, members] of groups) {
      const up = members.filter((p) => p.state !== 'gone')
      const free = up.filter((p) => p.state === 'idle').length
      ctx.print(
        `${tag ? `tag ${ctx.color.bold(tag)}` : ctx.color.bold('no tag')}: ${members.length} node(s), ${up.length} up, ${free} idle`,
      )
      ctx.print(peerTable(ctx, members))
      ctx.print()
    }
    if (groups.size === 0) ctx.print('no peers yet')
    return 0
  }
  if (opts.json) {
    printJson(ctx, list)
    return 0
  }
  if (list.length === 0) {
    ctx.print(
      'no peers yet: start `rmesh daemon` on another machine of the LAN, or pass --bootstrap to the daemon',
    )
    return 0
  }
  ctx.print(peerTable(ctx, list))
  return 0
}

function peerTable(ctx: CliContext, list: PeerInfo[]): string {
  const c = ctx.color
  return table(list, [
    { header: 'name', get: (p) => p.name, max: 20 },
    { header: 'peer', get: (p) => shortPeer(p.peerId) },
    {
      header: 'state',
      get: (p) =>
        (p.state === 'gone'
          ? c.dim('gone')
          : p.rules && p.rules.state !== 'active'
            ? stateText(ctx, p.rules.state)
            : p.state === 'busy'
              ? c.cyan('busy')
              : p.state === 'paused'
                ? c.yellow('paused')
                : c.green('idle')) + (p.admitted ? '' : c.yellow(' (not admitted)')),
    },
    { header: 'tags', get: (p) => p.tags?.join(',') || '-', max: 20 },
    { header: 'slots', get: (p) => `${p.slots.busy}/${p.slots.total}`, align: 'right' },
    { header: 'load', get: (p) => (p.load === null ? '-' : p.load.toFixed(2)), align: 'right' },
    {
      header: 'engines',
      get: (p) => p.engines.map((e) => `${e.name} ${e.version}`).join(', ') || '-',
      max: 24,
    },
    {
      header: 'devices',
      // GPU kinds (optix, cuda, …), else cpu; '-' before the node's detection finished.
      get: (p) =>
        p.devices
          ? [...new Set(p.devices.flatMap((d) => d.kinds))].filter((k) => k !== 'cpu').join(',') ||
            'cpu'
          : '-',
      max: 16,
    },
    { header: 'doing', get: workText, max: 30 },
    {
      header: 'via',
      get: (p) =>
        !p.via
          ? c.dim('-')
          : p.via === 'relayed'
            ? c.yellow('relayed')
            : p.via === 'hole-punched'
              ? c.cyan('hole-punched')
              : 'direct',
    },
    { header: 'seen', get: (p) => `${formatDuration(p.lastSeenMs)} ago`, align: 'right' },
    { header: 'address', get: (p) => p.addresses[0]?.replace(/\/p2p\/.*$/, '') ?? '-', max: 28 },
  ])
}
