/**
 * `rmesh retry JOB [--frames SPEC]`: reopens failed frames (or the given ones).
 * `rmesh retry JOB --unblock [NODE]`: takes a node (or every node) off the job's blocklist.
 */
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
    .option(
      '--unblock [node]',
      'instead, let a blocked node (peer id or unique prefix; default every node) take the job again',
    )
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      `
Examples:
  rmesh retry 3f9a1c
  rmesh retry 3f9a1c --frames '12,40-42'
  rmesh status 3f9a1c          shows the blocked nodes and the failures that blocked them
  rmesh retry 3f9a1c --unblock 12D3KooWAbc   that node may claim the job's chunks again
  rmesh retry 3f9a1c --unblock               every blocked node may`,
    )
    .action(action((job: string, opts: RetryOptions) => retry(ctx, job, opts)))
}

interface RetryOptions {
  frames?: string
  unblock?: string | true
  json?: boolean
}

export async function retry(ctx: CliContext, jobArg: string, opts: RetryOptions): Promise<number> {
  const jobId = parseJobId(jobArg)
  if (opts.unblock !== undefined) return unblock(ctx, jobId, opts)
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

async function unblock(ctx: CliContext, jobId: string, opts: RetryOptions): Promise<number> {
  if (opts.frames !== undefined) throw new UsageError('give --frames or --unblock, not both')
  const who = opts.unblock === true ? true : String(opts.unblock).trim()
  if (who !== true && !/^[1-9A-HJ-NP-Za-km-z]{1,128}$/.test(who))
    throw new UsageError(`--unblock: "${who}" is not a peer id; see rmesh status ${jobId}`)
  const res = await ctx.client().retry(jobId, { unblock: who })
  if (opts.json) printJson(ctx, res)
  else
    ctx.print(
      `unblocked ${(res.unblocked ?? []).join(', ')} for job ${res.jobId}: ${res.unblocked?.length === 1 ? 'it' : 'they'} may take its chunks again`,
    )
  return 0
}
