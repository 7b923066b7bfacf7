/** `rmesh priority JOB N`: takes effect at the next claim on every node. */
import type { Command } from 'commander'
import { PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN } from '../../src/api/types.js'
import { type CliContext, printJson } from '../context.js'
import { action } from '../command.js'
import { parseInteger, parseJobId } from '../validate.js'

export function register(program: Command, ctx: CliContext): void {
  program
    .command('priority')
    .argument('<job>', 'job id (or a unique prefix)')
    .argument(
      '<n>',
      `priority ${PRIORITY_MIN}-${PRIORITY_MAX}, higher first (default ${PRIORITY_DEFAULT})`,
    )
    .description('change the priority of a job')
    .option('--json', 'print the job summary as JSON')
    .addHelpText('after', '\nExamples:\n  rmesh priority 3f9a1c 90     render it before the others')
    .action(
      action((job: string, n: string, opts: { json?: boolean }) => priority(ctx, job, n, opts)),
    )
}

export async function priority(
  ctx: CliContext,
  jobArg: string,
  n: string,
  opts: { json?: boolean },
): Promise<number> {
  const jobId = parseJobId(jobArg)
  const p = parseInteger(n, 'priority', PRIORITY_MIN, PRIORITY_MAX)
  const job = await ctx.client().setPriority(jobId, p)
  if (opts.json) printJson(ctx, job)
  else ctx.print(`${job.name} (${job.jobId}) now has priority ${job.priority}`)
  return 0
}
