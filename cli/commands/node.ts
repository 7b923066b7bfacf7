/**
 * `rmesh node …`: this node's own rules, set on this node and told to the mesh in its
 * presence: pause (drain or now) and resume, a schedule of local hours, idle-only mode, and
 * the limits of its renders. Kept in <dir>/node-rules.json by the daemon; they win over
 * config.json. Also the daemon flags for the same rules (addNodeRuleFlags), and `detect`: find
 * the Blenders and their devices again.
 */
import type { Command } from 'commander'
import type { NodeRuleState, NodeRulesView } from '../../src/api/types.js'
import type { ConfigInput } from '../../src/config.js'
import { LIMIT_BOUNDS } from '../../src/node/rules.js'
import { parseSchedule } from '../../src/node/schedule.js'
import { action } from '../command.js'
import { type CliContext, printJson, UsageError } from '../context.js'
import { formatDuration } from '../format.js'
import { parseInteger } from '../validate.js'
import { blenderLines } from './status.js'

type Json = { json?: boolean }

const SCHEDULE_HELP = `Schedule syntax (the node's local time): rules separated by commas, each days then windows.
  days:    mon tue wed thu fri sat sun, a range (mon-fri, fri-mon), daily, weekdays, weekends
  windows: HH:MM-HH:MM (24-hour; a window ending before it starts crosses midnight and
           belongs to the day it starts), or all; "always" alone for every hour`

export function register(program: Command, ctx: CliContext): void {
  const node = program
    .command('node')
    .description("this node's own rules: pause, resume, schedule, idle-only, render limits")
    .addHelpText(
      'after',
      `
The rules are kept on this node (<dir>/node-rules.json, winning over config.json) and shown to
the mesh: rmesh peers and the dashboard list the node as paused, draining, off-schedule or
idle-wait. A node that is not active takes no new frames; jobs wait for it rather than fail.

Examples:
  rmesh node show
  rmesh node pause --now            hand every lease back at once; another node takes them
  rmesh node schedule set "mon-fri 19:00-08:00, sat-sun all"
  rmesh node idle 10                render only after 10 minutes without keyboard or mouse
  rmesh node limits --threads 4 --nice 10 --memory 8192`,
    )
  node
    .command('show')
    .description("this node's rules and the state they put it in")
    .option(
      '--json',
      'print JSON (NodeRulesView: state, reason?, pause?, schedule?, idle?, limits)',
    )
    .action(action(async (o: Json) => show(ctx, await ctx.client().nodeRules(), o)))

  node
    .command('pause')
    .description(
      'take no new work: --drain (default) finishes the current chunk; --now hands it back',
    )
    .option('--drain', 'finish the chunk rendering now, take no more (default)')
    .option('--now', 'stop rendering and hand every lease back at once')
    .option('--json', 'print the rules as JSON')
    .addHelpText(
      'after',
      `
A paused node stays paused across restarts until \`rmesh node resume\`.

Examples:
  rmesh node pause                  let the current frame finish
  rmesh node pause --now            another node takes its frames within a second`,
    )
    .action(
      action(async (o: Json & { drain?: boolean; now?: boolean }) => {
        if (o.drain && o.now) throw new UsageError('give --drain or --now, not both')
        return show(ctx, await ctx.client().pauseNode(o.now ? 'now' : 'drain'), o)
      }),
    )

  node
    .command('detect')
    .description(
      'find the Blenders (PATH, blenderPaths, blenderReleasesDir) and their devices again',
    )
    .option('--json', 'print JSON (DetectResponse: engines, blenders [{version, path, devices}])')
    .addHelpText(
      'after',
      `
The daemon finds them at start; run this after unpacking a new Blender release or installing
a GPU driver. Each Blender's Cycles devices are detected by its own Python (about a second
each). The mesh learns the result from this node's presence.

Examples:
  rmesh node detect
  rmesh node detect --json | jq '.blenders[] | {version, devices}'`,
    )
    .action(
      action(async (o: Json) => {
        const r = await ctx.client().detectEngines()
        if (o.json) printJson(ctx, r)
        else
          ctx.print(
            blenderLines(r.blenders).join('\n') ||
              'no Blender found: install one, or set blenderPaths or blenderReleasesDir in the config',
          )
        return 0
      }),
    )

  node
    .command('resume')
    .description('take work again after `rmesh node pause`')
    .option('--json', 'print the rules as JSON')
    .addHelpText('after', '\nExamples:\n  rmesh node resume')
    .action(action(async (o: Json) => show(ctx, await ctx.client().resumeNode(), o)))

  const schedule = node
    .command('schedule')
    .description('the hours this node renders, by its local time')
    .addHelpText('after', `\n${SCHEDULE_HELP}`)
  schedule
    .command('set')
    .argument('<schedule>', 'e.g. "mon-fri 19:00-08:00, sat-sun all"')
    .description('render only within these hours (outside them: take no new work)')
    .option('--json', 'print the rules as JSON')
    .addHelpText(
      'after',
      `
When a window closes the chunk rendering finishes; nothing new is taken until the next opens.

${SCHEDULE_HELP}

Examples:
  rmesh node schedule set "mon-fri 19:00-08:00, sat-sun all"
  rmesh node schedule set "daily 22:00-06:00"`,
    )
    .action(
      action(async (text: string, o: Json) => {
        try {
          parseSchedule(text)
        } catch (err) {
          throw new UsageError((err as Error).message)
        }
        return show(ctx, await ctx.client().setSchedule(text), o)
      }),
    )
  schedule
    .command('show')
    .description('the schedule, whether it is open now and when it changes')
    .option('--json', 'print the rules as JSON')
    .addHelpText('after', '\nExamples:\n  rmesh node schedule show --json | jq .schedule')
    .action(action(async (o: Json) => show(ctx, await ctx.client().nodeRules(), o)))
  schedule
    .command('clear')
    .description("no schedule: render at any hour (also overrides config.json's)")
    .option('--json', 'print the rules as JSON')
    .addHelpText('after', '\nExamples:\n  rmesh node schedule clear')
    .action(action(async (o: Json) => show(ctx, await ctx.client().setSchedule(null), o)))

  node
    .command('idle')
    .argument(
      '<minutes|off>',
      `render only after the user has been idle this long (1–1440), or off`,
    )
    .option(
      '--load <percent>',
      "where no session tells idle time: other processes' CPU share that counts as use (default 25)",
    )
    .option('--json', 'print the rules as JSON')
    .description("idle-only mode: render only while the machine's own user is away")
    .addHelpText(
      'after',
      `
Idle time comes from the desktop session (xprintidle on X11) or logind (loginctl IdleHint),
best effort; where neither speaks, CPU load from other processes above --load counts as use.
When the user comes back, the node hands its leases back within a second or two.

Examples:
  rmesh node idle 10
  rmesh node idle 5 --load 40
  rmesh node idle off`,
    )
    .action(
      action(async (minutes: string, o: Json & { load?: string }) => {
        if (minutes === 'off') {
          if (o.load !== undefined) throw new UsageError('--load goes with a number of minutes')
          return show(ctx, await ctx.client().setIdle(null), o)
        }
        const m = parseInteger(minutes, 'minutes', ...LIMIT_BOUNDS.idleMinutes)
        const load =
          o.load === undefined
            ? undefined
            : parseInteger(o.load, '--load', ...LIMIT_BOUNDS.loadPercent)
        return show(ctx, await ctx.client().setIdle(m, load), o)
      }),
    )

  node
    .command('limits')
    .description('limits of each render: Blender threads, niceness, memory ceiling (none: show)')
    .option('--threads <n|none>', 'Blender render threads (-t), 1–1024')
    .option('--nice <n|none>', 'niceness of render processes, 0–19 (higher: kinder to the user)')
    .option('--memory <MiB|none>', 'address-space ceiling per render process (prlimit --as), MiB')
    .option('--json', 'print the rules as JSON')
    .addHelpText(
      'after',
      `
They apply to each render as it starts; "none" clears one (back to config.json or no limit).
A render over its memory ceiling fails (and is retried elsewhere) instead of swapping the machine.

Examples:
  rmesh node limits --threads 4 --nice 10 --memory 8192
  rmesh node limits --memory none
  rmesh node limits`,
    )
    .action(
      action(async (o: Json & { threads?: string; nice?: string; memory?: string }) => {
        const req: Record<string, number | null> = {}
        const opt = (v: string | undefined, flag: string, bounds: readonly [number, number]) =>
          v === undefined ? undefined : v === 'none' ? null : parseInteger(v, flag, ...bounds)
        const threads = opt(o.threads, '--threads', LIMIT_BOUNDS.threads)
        const nice = opt(o.nice, '--nice', LIMIT_BOUNDS.nice)
        const memoryMiB = opt(o.memory, '--memory', LIMIT_BOUNDS.memoryMiB)
        if (threads !== undefined) req.threads = threads
        if (nice !== undefined) req.nice = nice
        if (memoryMiB !== undefined) req.memoryMiB = memoryMiB
        const view = Object.keys(req).length
          ? await ctx.client().setLimits(req)
          : await ctx.client().nodeRules()
        return show(ctx, view, o)
      }),
    )
}

export function stateText(ctx: CliContext, state: NodeRuleState): string {
  const c = ctx.color
  switch (state) {
    case 'active':
      return c.green('active')
    case 'paused':
      return c.yellow('paused')
    case 'draining':
      return c.yellow('draining')
    case 'off-schedule':
      return c.dim('off-schedule')
    case 'idle-wait':
      return c.dim('idle-wait')
  }
}

function show(ctx: CliContext, v: NodeRulesView, o: Json): number {
  if (o.json) {
    printJson(ctx, v)
    return 0
  }
  ctx.print(`state:     ${stateText(ctx, v.state)}${v.reason ? ` — ${v.reason}` : ''}`)
  if (v.schedule) {
    const when =
      v.schedule.nextChange === undefined
        ? ''
        : `; ${v.schedule.open ? 'closes' : 'opens'} ${new Date(v.schedule.nextChange).toLocaleString()}`
    ctx.print(
      `schedule:  ${v.schedule.text} (${v.schedule.open ? 'open now' : 'closed now'}${when}; from ${v.schedule.source === 'node' ? 'this node' : 'config'})`,
    )
  } else ctx.print('schedule:  none (renders at any hour)')
  if (v.idle)
    ctx.print(
      `idle-only: after ${v.idle.minutes} min idle (else CPU of others > ${v.idle.loadPercent}%)${v.idle.userIdleMs !== undefined ? `; user idle ${formatDuration(v.idle.userIdleMs)}` : ''}`,
    )
  else ctx.print('idle-only: off')
  const l = v.limits
  const parts = [
    l.threads !== undefined ? `threads ${l.threads}` : undefined,
    l.nice !== undefined ? `nice ${l.nice}` : undefined,
    l.memoryMiB !== undefined ? `memory ${l.memoryMiB} MiB` : undefined,
  ].filter(Boolean)
  ctx.print(`limits:    ${parts.length ? parts.join(', ') : 'none'}`)
  return 0
}

/** The daemon's flags for the same rules (their defaults; `rmesh node …` overrides them). */
export function addNodeRuleFlags(cmd: Command): Command {
  return cmd
    .option(
      '--schedule <spec>',
      'render only within these local hours, e.g. "mon-fri 19:00-08:00" (env RMESH_SCHEDULE)',
    )
    .option(
      '--idle-only <minutes>',
      'render only after the user has been idle this long (env RMESH_IDLE_ONLY_MINUTES)',
    )
    .option('--threads <n>', 'Blender render threads per render (env RMESH_RENDER_THREADS)')
    .option('--nice <n>', 'niceness of render processes, 0–19 (env RMESH_RENDER_NICE)')
    .option(
      '--max-render-memory <MiB>',
      'memory ceiling per render process (env RMESH_RENDER_MEMORY_MIB)',
    )
    .option('--tags <list>', "this node's tags, comma-separated: its pools (env RMESH_TAGS)")
    .option(
      '--submit-tags <list>',
      'tags jobs submitted here require by default (env RMESH_SUBMIT_TAGS)',
    )
}

export interface NodeRuleFlags {
  schedule?: string
  idleOnly?: string
  threads?: string
  nice?: string
  maxRenderMemory?: string
  tags?: string
  submitTags?: string
}

/** Those flags as a config layer, checked (UsageError names the flag). */
export function nodeRuleConfig(o: NodeRuleFlags): ConfigInput {
  const out: ConfigInput = {}
  const list = (v: string, flag: string) => {
    const tags = v.split(/[\s,]+/).filter(Boolean)
    if (!tags.every((t) => /^[\w.-]{1,32}$/.test(t)))
      throw new UsageError(`${flag} must be short words separated by commas, like gpu,studio-a`)
    return tags
  }
  if (o.schedule !== undefined) {
    try {
      out.schedule = parseSchedule(o.schedule).text
    } catch (err) {
      throw new UsageError(`--schedule: ${(err as Error).message}`)
    }
  }
  if (o.idleOnly !== undefined)
    out.idleOnlyMinutes = parseInteger(o.idleOnly, '--idle-only', ...LIMIT_BOUNDS.idleMinutes)
  if (o.threads !== undefined)
    out.renderThreads = parseInteger(o.threads, '--threads', ...LIMIT_BOUNDS.threads)
  if (o.nice !== undefined) out.renderNice = parseInteger(o.nice, '--nice', ...LIMIT_BOUNDS.nice)
  if (o.maxRenderMemory !== undefined)
    out.renderMemoryMiB = parseInteger(
      o.maxRenderMemory,
      '--max-render-memory',
      ...LIMIT_BOUNDS.memoryMiB,
    )
  if (o.tags !== undefined) out.tags = list(o.tags, '--tags')
  if (o.submitTags !== undefined) out.submitTags = list(o.submitTags, '--submit-tags')
  return out
}
