/** `rmesh retry JOB [--frames SPEC]`: reopens failed frames (or the given ones). */
import type { Command } from 'commander'
import { type CliContext, printJson, UsageError } from '../context.js'
import { formatFrames, parseFrameSpec } from '../../src/jobs/frame-spec.js'
import { action } from '../command.js'
import { parseJobId } from '../validate.js'
import { isRmeshError } from '../../src/util/errors.js'

export function register(program: Command, ctx: CliContext): void {
  program
    .command('retry')
    .argument('<job>', 'job id (or a unique prefix)')
    .description('render failed frames again (or the frames given)')
    .option(
      '--frames <spec>',
      "frames to reopen, e.g. '12' or '1-10,20' (default: every failed frame)",
    )
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      "\nExamples:\n  rmesh retry 3f9a1c\n  rmesh retry 3f9a1c --frames '12,40-42'",
    )
    .action(
      action((job: string, opts: { frames?: string; json?: boolean }) => retry(ctx, job, opts)),
    )
}

export async function retry(
  ctx: CliContext,
  jobArg: string,
  opts: { frames?: string; json?: boolean },
): Promise<number> {
  const jobId = parseJobId(jobArg)
  if (opts.frames !== undefined) {
    try {
      parseFrameSpec(opts.frames)
    } catch (err) {
      if (isRmeshError(err)) throw new UsageError(`--frames: ${err.message}`)
      throw err
    }
  }
  const res = await ctx
    .client()
    .retry(jobId, opts.frames === undefined ? {} : { frames: opts.frames })
  if (opts.json) printJson(ctx, res)
  else if (res.reopened.length === 0) ctx.print('nothing to retry: no failed frames')
  else ctx.print(`reopened ${res.reopened.length} frame(s): ${formatFrames(res.reopened)}`)
  return 0
}
