/**
 * `rmesh pause JOB` / `rmesh resume JOB`: hold a whole job and let it go again. A pause
 * is one log entry: no node takes a new chunk of the job, chunks already rendering finish.
 */
import type { Command } from 'commander'
import type { JobSummary } from '../../src/api/types.js'
import { type CliContext, printJson } from '../context.js'
import { action } from '../command.js'
import { parseJobId } from '../validate.js'

export function register(program: Command, ctx: CliContext): void {
  program
    .command('pause')
    .argument('<job>', 'job id (or a unique prefix)')
    .description('pause a job: no node starts a new chunk of it; chunks rendering now finish')
    .option('--json', 'print the job summary as JSON')
    .addHelpText(
      'after',
      `
Examples:
  rmesh pause 3f9a1c       hold the job (other jobs take the nodes)
  rmesh resume 3f9a1c      nodes take its chunks again at once

Only the node that submitted the job pauses and resumes it (as for cancel): run it there.`,
    )
    .action(action((job: string, opts: { json?: boolean }) => pause(ctx, job, opts, 'pause')))
  program
    .command('resume')
    .argument('<job>', 'job id (or a unique prefix)')
    .description('resume a paused job: nodes take its chunks again at once')
    .option('--json', 'print the job summary as JSON')
    .addHelpText('after', '\nExamples:\n  rmesh resume 3f9a1c\n  rmesh resume 3f9a1c --json')
    .action(action((job: string, opts: { json?: boolean }) => pause(ctx, job, opts, 'resume')))
}

export async function pause(
  ctx: CliContext,
  jobArg: string,
  opts: { json?: boolean },
  what: 'pause' | 'resume',
): Promise<number> {
  const id = parseJobId(jobArg)
  const client = ctx.client()
  const job: JobSummary = what === 'pause' ? await client.pause(id) : await client.resume(id)
  if (opts.json) printJson(ctx, job)
  else if (what === 'pause')
    ctx.print(
      `paused ${job.name} (${job.jobId}): ${job.framesDone}/${job.framesTotal} frames done` +
        (job.framesRendering > 0 ? `, ${job.framesRendering} rendering finish first` : '') +
        `; resume it with rmesh resume ${job.jobId}`,
    )
  else ctx.print(`resumed ${job.name} (${job.jobId}): ${job.state}`)
  return 0
}
