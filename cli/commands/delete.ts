/** `rmesh delete JOB`: removes a finished job and its data from the mesh. */
import type { Command } from 'commander'
import { type CliContext, printJson } from '../context.js'
import { action } from '../command.js'
import { parseJobId } from '../validate.js'

export function register(program: Command, ctx: CliContext): void {
  program
    .command('delete')
    .argument('<job>', 'job id (or a unique prefix)')
    .description('delete a finished job and its blocks (the output folder on disk is kept)')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExamples:\n  rmesh cancel 3f9a1c && rmesh delete 3f9a1c')
    .action(action((job: string, opts: { json?: boolean }) => del(ctx, job, opts)))
}

export async function del(
  ctx: CliContext,
  jobArg: string,
  opts: { json?: boolean },
): Promise<number> {
  const res = await ctx.client().deleteJob(parseJobId(jobArg))
  if (opts.json) printJson(ctx, res)
  else ctx.print(`deleted ${res.jobId}`)
  return 0
}
