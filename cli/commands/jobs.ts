/** `rmesh jobs`: every job of the mesh. --json: [{ jobId, name, state, framesDone, framesTotal, … }]. */
import type { Command } from 'commander'
import { JOB_STATES, type JobState } from '../../src/api/types.js'
import { type CliContext, printJson, UsageError } from '../context.js'
import { formatDuration, progressBar, shortId, table } from '../format.js'
import { action } from '../command.js'

export function register(program: Command, ctx: CliContext): void {
  program
    .command('jobs')
    .description('list the jobs of the mesh, newest first')
    .option('--state <states>', `only these states, comma-separated (${JOB_STATES.join(', ')})`)
    .option(
      '--json',
      'print JSON (an array of objects with jobId, name, state, framesDone, framesTotal)',
    )
    .addHelpText(
      'after',
      `
Examples:
  rmesh jobs
  rmesh jobs --state rendering,queued
  rmesh jobs --state paused,waiting   held jobs, and jobs waiting for their --after jobs
  rmesh jobs --json | jq -r '.[] | select(.state=="failed") | .jobId'`,
    )
    .action(action((opts: { json?: boolean; state?: string }) => jobs(ctx, opts)))
}

export async function jobs(
  ctx: CliContext,
  opts: { json?: boolean; state?: string },
): Promise<number> {
  const states = opts.state?.split(',').map((s) => s.trim()) as JobState[] | undefined
  for (const s of states ?? []) {
    if (!JOB_STATES.includes(s))
      throw new UsageError(`--state: unknown state "${s}"; use ${JOB_STATES.join(', ')}`)
  }
  const list = await ctx.client().jobs({ states })
  if (opts.json) {
    printJson(ctx, list)
    return 0
  }
  if (list.length === 0) {
    ctx.print('no jobs yet: submit one with `rmesh submit scene.blend`')
    return 0
  }
  const c = ctx.color
  ctx.print(
    table(list, [
      { header: 'job', get: (j) => shortId(j.jobId, 12) },
      { header: 'name', get: (j) => j.name, max: 24 },
      {
        header: 'state',
        get: (j) =>
          j.state === 'failed'
            ? c.red(j.state)
            : j.state === 'done'
              ? c.green(j.state)
              : j.state === 'paused' || j.state === 'waiting'
                ? c.yellow(j.state)
                : j.state,
      },
      {
        header: 'progress',
        get: (j) =>
          `${progressBar(j.framesTotal ? j.framesDone / j.framesTotal : 0, 12)} ${j.framesDone}/${j.framesTotal}`,
      },
      { header: 'prio', get: (j) => String(j.priority), align: 'right' },
      { header: 'eta', get: (j) => formatDuration(j.etaMs), align: 'right' },
    ]),
  )
  return 0
}
