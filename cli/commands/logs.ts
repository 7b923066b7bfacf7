/** `rmesh logs JOB [--frame N] [--follow]`: a frame's render log, live from its node. */
import type { Command } from 'commander'
import type { CliContext } from '../context.js'
import { MAX_FRAME } from '../../src/jobs/frame-spec.js'
import { action } from '../command.js'
import { parseInteger, parseJobId } from '../validate.js'
import { isRmeshError } from '../../src/util/errors.js'

interface LogsOptions {
  frame?: string
  attempt?: string
  tail?: string
  follow?: boolean
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('logs')
    .argument('<job>', 'job id (or a unique prefix)')
    .description("print a frame's render log (without --frame: the job's history)")
    .option('--frame <n>', 'the frame whose log to show')
    .option('--attempt <k>', 'an earlier attempt (default: the latest)')
    .option('--tail <n>', 'only the last N lines')
    .option('-f, --follow', 'keep printing new lines until the frame ends (Ctrl-C stops)')
    .addHelpText(
      'after',
      '\nExamples:\n  rmesh logs 3f9a1c\n  rmesh logs 3f9a1c --frame 12 --follow\n  rmesh logs 3f9a1c --frame 12 --tail 50',
    )
    .action(action((job: string, opts: LogsOptions) => logs(ctx, job, opts)))
}

export async function logs(ctx: CliContext, jobArg: string, opts: LogsOptions): Promise<number> {
  const jobId = parseJobId(jobArg)
  const q = {
    frame: opts.frame === undefined ? undefined : parseInteger(opts.frame, '--frame', 0, MAX_FRAME),
    attempt:
      opts.attempt === undefined ? undefined : parseInteger(opts.attempt, '--attempt', 1, 1000),
    tail: opts.tail === undefined ? undefined : parseInteger(opts.tail, '--tail', 1, 1_000_000),
  }
  if (!opts.follow) {
    const text = await ctx.client().logs(jobId, q)
    ctx.stdout.write(text.endsWith('\n') || text === '' ? text : `${text}\n`)
    return 0
  }
  const controller = new AbortController()
  const off = ctx.onInterrupt(() => controller.abort())
  try {
    for await (const line of ctx.client().followLogs(jobId, q, { signal: controller.signal }))
      ctx.print(line)
  } catch (err) {
    if (!(controller.signal.aborted && isRmeshError(err, 'ERR_ABORTED'))) throw err
  } finally {
    off()
  }
  return 0
}
