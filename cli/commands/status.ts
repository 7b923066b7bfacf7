/**
 * `rmesh status` (this node) and `rmesh status JOB` (one job, frame by frame).
 * --json shapes: node → NodeInfo (peerId, addresses, …); job → { jobId, state, frames:
 * [{ frame, state, node, attempts, renderMs? }], … } (JobDetail).
 */
import type { Command } from 'commander'
import type { JobDetail, NodeInfo } from '../../src/api/types.js'
import { type CliContext, printJson } from '../context.js'
import { formatBytes, formatDuration, shortPeer, table } from '../format.js'
import { action } from '../command.js'
import { parseJobId } from '../validate.js'
import { formatFrames } from '../../src/jobs/frame-spec.js'

export function register(program: Command, ctx: CliContext): void {
  program
    .command('status')
    .argument('[job]', 'a job id (or a unique prefix); without it, this node')
    .description("show this node's identity and addresses, or one job's frames")
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      `
Examples:
  rmesh status                 this node: peer id, addresses, mesh, engines, every Blender
                               found (version, path) and the devices its Cycles sees
  rmesh status --json | jq -r '.addresses[0]'
  rmesh status 3f9a1c          frame table of a job: state, node, attempts, render time
  rmesh status 3f9a1c --json`,
    )
    .action(
      action((job: string | undefined, opts: { json?: boolean }) =>
        job ? jobStatus(ctx, job, opts) : nodeStatus(ctx, opts),
      ),
    )
}

export async function nodeStatus(ctx: CliContext, opts: { json?: boolean }): Promise<number> {
  const node = await ctx.client().node()
  if (opts.json) printJson(ctx, node)
  else ctx.print(describeNode(ctx, node))
  return 0
}

export function describeNode(ctx: CliContext, n: NodeInfo): string {
  const c = ctx.color
  const lines = [
    `${c.bold(n.name)}  ${n.peerId}`,
    `version    ${n.version}, up ${formatDuration(n.uptimeMs)}`,
    `data dir   ${n.dataDir}`,
    `mesh       ${n.meshId ?? c.yellow('none (run `rmesh init` to create one, or `rmesh join` to join one)')}`,
    `admitted   ${n.admitted ? c.green(`yes (${n.caps.join(', ')})`) : c.yellow('no: ask an admin for a token (`rmesh id` prints this peer id), then `rmesh join TOKEN`')}`,
    `peers      ${n.peerCount} connected`,
    `slots      ${n.slots.busy}/${n.slots.total} busy${n.renderPaused ? c.yellow(`; takes no new renders: ${n.renderPaused}`) : ''}`,
    ...(n.freeDiskBytes !== undefined ? [`free disk  ${formatBytes(n.freeDiskBytes)}`] : []),
    `engines    ${n.engines.map((e) => `${e.name} ${e.version}`).join(', ') || c.yellow('none found (install blender)')}`,
    ...blenderLines(n.blenders),
    ...reachabilityLines(ctx, n),
    'addresses',
    ...n.addresses.map((a) => `  ${a}`),
  ]
  return lines.join('\n')
}

/** Each Blender found, its executable and the devices its Cycles sees. */
export function blenderLines(blenders: NodeInfo['blenders']): string[] {
  return (blenders ?? []).map((b, i) => {
    const d = b.devices
    const devices = d
      ? `${d.kinds.join(', ')}${d.names.length ? ` (${d.names.join(', ')})` : ''}`
      : 'detecting…'
    return `${i === 0 ? 'blender   ' : '          '} ${b.version}  ${b.path}  devices: ${devices}`
  })
}

/** How machines beyond this LAN reach this node: public, through which relays, or not at all. */
function reachabilityLines(ctx: CliContext, n: NodeInfo): string[] {
  const r = n.reachability
  if (!r) return []
  const c = ctx.color
  const how =
    r.reachability === 'public'
      ? c.green('public')
      : r.reachability === 'private'
        ? 'behind NAT (private addresses only)'
        : 'not verified (a public address AutoNAT has not confirmed)'
  const lines = [`reachable  ${how}`]
  if (r.relays.length > 0)
    lines.push(
      `relays     ${r.relays.length} reservation${r.relays.length > 1 ? 's' : ''}: ${r.relays.join(', ')}`,
    )
  if (r.relayService) lines.push(`relay      serving members (${r.servedReservations} reserved)`)
  if (r.warning) lines.push(c.yellow(`warning    ${r.warning}`))
  return lines
}

export async function jobStatus(
  ctx: CliContext,
  jobArg: string,
  opts: { json?: boolean },
): Promise<number> {
  const job = await ctx.client().job(parseJobId(jobArg))
  if (opts.json) {
    printJson(ctx, job)
    return 0
  }
  ctx.print(describeJob(ctx, job))
  return 0
}

export function describeJob(ctx: CliContext, j: JobDetail): string {
  const c = ctx.color
  const stateColor =
    j.state === 'done'
      ? c.green
      : j.state === 'failed'
        ? c.red
        : j.state === 'rendering'
          ? c.cyan
          : j.state === 'paused' || j.state === 'waiting'
            ? c.yellow
            : (s: string) => s
  const head = [
    `${c.bold(j.name)}  ${j.jobId}`,
    `state      ${stateColor(j.state)}${j.reason ? ` (${j.reason})` : ''}`,
    `frames     ${j.framesDone}/${j.framesTotal} done, ${j.framesRendering} rendering, ${j.framesFailed} failed`,
    `priority   ${j.priority}   chunk ${j.chunkSize}   format ${j.format}${j.video ? `   video ${j.video.codec} (${j.video.state})` : ''}`,
    `eta        ${formatDuration(j.etaMs)}   ${j.framesPerMinute.toFixed(1)} frames/min`,
    ...(j.require.length || j.device
      ? [`renderer   ${[...j.require, ...(j.device ? [`device ${j.device}`] : [])].join('   ')}`]
      : []),
    ...(j.outDir ? [`output     ${j.outDir}`] : []),
    ...(j.after?.length ? [`after      ${j.after.join(', ')}`] : []),
    ...blockedLines(ctx, j),
    ...(j.files
      ? [
          `files      ${j.files.count} (${formatBytes(j.files.bytes)})` +
            (j.files.missing
              ? c.yellow(
                  `, ${j.files.missing} missing at submit, rendered without them (--allow-missing)${j.files.missingPaths?.length ? `: ${j.files.missingPaths.slice(0, 5).join(', ')}` : ''}`,
                )
              : ''),
        ]
      : []),
    '',
  ]
  const frameColor = (s: string) =>
    s === 'done'
      ? c.green(s)
      : s === 'failed'
        ? c.red(s)
        : s === 'rendering'
          ? c.cyan(s)
          : s === 'claimed'
            ? c.yellow(s)
            : s
  const rows = table(j.frames, [
    { header: 'frame', get: (f) => String(f.frame), align: 'right' },
    {
      header: 'state',
      get: (f) =>
        frameColor(f.state) +
        (f.progress !== undefined && f.state === 'rendering'
          ? ` ${Math.round(f.progress * 100)}%`
          : ''),
    },
    { header: 'node', get: (f) => shortPeer(f.node) },
    { header: 'attempts', get: (f) => String(f.attempts), align: 'right' },
    { header: 'time', get: (f) => formatDuration(f.renderMs), align: 'right' },
    {
      header: 'error',
      get: (f) => (f.error ? `${f.errorNode ? `${shortPeer(f.errorNode)}: ` : ''}${f.error}` : ''),
      max: 60,
    },
  ])
  return head.join('\n') + rows
}

/** The nodes blocked for the job and the failures that blocked them (latest 3 each). */
function blockedLines(ctx: CliContext, j: JobDetail): string[] {
  const blocked = j.blocked ?? []
  if (blocked.length === 0) return []
  const lines = [ctx.color.yellow(`blocked    ${blocked.length} node(s) may not take this job:`)]
  for (const b of blocked) {
    lines.push(`  ${b.node} after ${b.failures.length} failure(s):`)
    for (const f of b.failures.slice(-3))
      lines.push(
        `    chunk ${f.chunk} (frame${f.frames.length > 1 ? 's' : ''} ${formatFrames(f.frames)}) attempt ${f.attempt}: ${f.reason.slice(0, 100)}`,
      )
  }
  lines.push(`  let them render it again: rmesh retry ${j.jobId} --unblock [NODE]`)
  return lines
}
