/** `rmesh fetch JOB [--out DIR] [--zip]`: copies (or zips) a job's outputs anywhere. */
import type { Command } from 'commander'
import { type CliContext, printJson } from '../context.js'
import { formatBytes } from '../format.js'
import { formatFrames } from '../../src/jobs/frame-spec.js'
import { action } from '../command.js'
import { parseJobId, resolvePath } from '../validate.js'

export function register(program: Command, ctx: CliContext): void {
  program
    .command('fetch')
    .argument('<job>', 'job id (or a unique prefix)')
    .description("copy a job's frames (and video) to a folder, or into a ZIP file")
    .option(
      '--out <path>',
      'destination folder, or .zip file with --zip (default: ./<job name>[.zip])',
    )
    .option('--zip', 'write one ZIP file')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  rmesh fetch 3f9a1c --out ~/shots/sh010\n  rmesh fetch 3f9a1c --zip --out sh010.zip',
    )
    .action(
      action((job: string, opts: { out?: string; zip?: boolean; json?: boolean }) =>
        fetch(ctx, job, opts),
      ),
    )
}

export async function fetch(
  ctx: CliContext,
  jobArg: string,
  opts: { out?: string; zip?: boolean; json?: boolean },
): Promise<number> {
  const jobId = parseJobId(jobArg)
  const client = ctx.client()
  let out = opts.out
  if (out === undefined) {
    const job = await client.job(jobId)
    const base = job.name.replace(/[^A-Za-z0-9._-]+/g, '_') || job.jobId.slice(0, 12)
    out = opts.zip ? `${base}.zip` : base
  }
  const res = await client.fetch(jobId, { out: resolvePath(ctx.cwd, out), zip: opts.zip === true })
  if (opts.json) printJson(ctx, res)
  else {
    ctx.print(`${res.files} file(s), ${formatBytes(res.bytes)} → ${res.out}`)
    if (res.missing.length)
      ctx.warn(
        `missing ${res.missing.length} frame(s) not rendered yet: ${formatFrames(res.missing)}`,
      )
  }
  return res.missing.length ? 1 : 0
}
