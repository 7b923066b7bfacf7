/** `rmesh cancel JOB`: stops every render of the job across the mesh. */
import type { Command } from 'commander'
import { type CliContext, printJson } from '../context.js'
import { action } from '../command.js'
import { parseJobId } from '../validate.js'

export function register(program: Command, ctx: CliContext): void {
  program
    .command('cancel')
    .argument('<job>', 'job id (or a unique prefix)')
    .description('cancel a job: every node stops rendering it within a second')
    .option('--json', 'print the job summary as JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  rmesh cancel 3f9a1c\n  rmesh retry 3f9a1c      (reopen its frames later)',
    )
    .action(action((job: string, opts: { json?: boolean }) => cancel(ctx, job, opts)))
}

export async function cancel(
  ctx: CliContext,
  jobArg: string,
  opts: { json?: boolean },
): Promise<number> {
  const job = await ctx.client().cancel(parseJobId(jobArg))
  if (opts.json) printJson(ctx, job)
  else
    ctx.print(
      `canceled ${job.name} (${job.jobId}): ${job.framesDone}/${job.framesTotal} frames were done`,
    )
  return 0
}
