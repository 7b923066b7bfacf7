/**
 * `rmesh submit SCENE`: checks the input here (exit 2 before anything is sent), imports and
 * announces the job through the daemon, then follows it with a live progress line until
 * it ends, unless --detach. Exit 0 only when every frame is in the output folder.
 * Ctrl-C asks (on a terminal) whether to cancel the job; otherwise the job keeps running.
 */
import { type Command, Option } from 'commander'
import type { JobSummary, SubmitPlan, SubmitRequest, SubmitResponse } from '../../src/api/types.js'
import { OUTPUT_FORMATS, PRIORITY_DEFAULT, VIDEO_CODECS } from '../../src/api/types.js'
import { type CliContext, printJson, UsageError } from '../context.js'
import { EXIT } from '../exit-codes.js'
import { formatBytes, table } from '../format.js'
import { formatFrames } from '../../src/jobs/frame-spec.js'
import { DEVICE_REQUESTS } from '../../src/jobs/devices.js'
import { action } from '../command.js'
import { buildSubmitRequest, type SubmitInput } from '../validate.js'
import { isFinished, JobEndedError, missingOutputs, progressLine, watchJob } from '../watch.js'

export interface SubmitOptions extends Omit<SubmitInput, 'scene'> {
  detach?: boolean
  dryRun?: boolean
  json?: boolean
  engine?: string
  param?: string[]
  /** `--fps`: the video frame rate. */
  fps?: string
}

const collect = (v: string, prev: string[] = []) => [...prev, v]

export function register(program: Command, ctx: CliContext): void {
  program
    .command('submit')
    .argument('<scene>', 'the scene file (.blend)')
    .description('render a scene across the mesh; frames land in the output folder as they finish')
    .option(
      '--frames <spec>',
      "frames: '1-250', '1-10,20,30-40', '1-100:5' (default: the scene's range)",
    )
    .option('--step <n>', 'every Nth frame of each range (default 1)')
    .option('--chunk <n>', 'frames per task; 1 suits heavy frames (default 1)')
    .option('--format <fmt>', `output format: ${OUTPUT_FORMATS.join(', ')} (default: the scene's)`)
    .option('--video <codec>', `also encode a video: ${VIDEO_CODECS.join(', ')}`)
    .option('--crf <n>', 'video quality: h264/h265 0-51, vp9/av1 0-63, lower is better')
    .option('--bitrate <kbps>', 'video bitrate in kbit/s instead of a CRF')
    .option('--passes <n>', 'video passes: 1 or 2 (2 with h264/h265 needs --bitrate)')
    .option('--bit-depth <n>', 'video bits per channel: 8 or 10')
    .option('--hdr <hlg>', 'HLG HDR video (BT.2020, 10-bit) from EXR frames')
    .option('--fps <rate>', "video frame rate, e.g. 25 or 24000/1001 (default: the scene's)")
    .option('--tag <tag>', 'only nodes with this tag render the job; repeatable', collect)
    .option('--priority <n>', `0-100, higher renders first (default ${PRIORITY_DEFAULT})`)
    .option('--name <name>', "job name (default: the scene's file name)")
    .option('--out <dir>', 'output folder (default: next to the scene)')
    .option(
      '--project-root <dir>',
      "the folder the scene's files are sent relative to (default: the scene's folder)",
    )
    .option(
      '--allow-missing',
      'render even if files the scene uses cannot be found (marked on the job)',
    )
    .option(
      '--dry-run',
      'list the files the job would carry, their sizes and what would be sent; submit nothing',
    )
    .option(
      '--pack',
      'pack images, sounds, fonts and libraries into a copy of the scene instead of sending them as files',
    )
    .option('--persistent', 'keep the job data after it ends, so it can be retried later')
    .option(
      '--require <req>',
      "Blender versions that may render it, repeatable: 'blender>=3.4', 'blender>=4.2 <4.3' (default: the major.minor of this node's Blender, e.g. >=3.4 <3.5)",
      collect,
    )
    .option('--any-blender', 'any Blender version may render it (no default version pin)')
    .option(
      '--device <kind>',
      `render device: ${DEVICE_REQUESTS.join(', ')} ('gpu': any GPU kind); only nodes whose Blender has it render the job (default: any node, as the scene says, CPU where no GPU)`,
    )
    .option(
      '--tags <list>',
      "only nodes with all these tags render it (a pool), e.g. gpu,studio-a; default the node's submitTags; '' for any node",
    )
    .option(
      '--after <jobs>',
      'start only once these jobs are done, e.g. k3vq7xma,p2dfw5ne (up to 16); fails if one fails',
    )
    .option('-d, --detach', 'return as soon as the job is announced')
    .option(
      '--json',
      'print JSON (with --detach: { jobId, name, framesTotal, outDir }; with --dry-run: the plan)',
    )
    // Hidden: for tests and templated engines; the daemon validates both.
    .addOption(new Option('--engine <name>', 'engine name (default: by extension)').hideHelp())
    .addOption(
      new Option('--param <k=v>', 'engine parameter, repeatable; v is JSON or a string')
        .argParser(collect)
        .hideHelp(),
    )
    .addHelpText(
      'after',
      `
Examples:
  rmesh submit shot.blend
  rmesh submit shot.blend --frames 1-250 --chunk 5 --video h264
  rmesh submit shot.blend --format exr --video h265 --hdr hlg --crf 18
  rmesh submit shot.blend --video vp9 --passes 2 --bit-depth 10 --tag fast
  rmesh submit shot.blend --frames '1-10,20,30-40' --priority 80 --out /renders/sh010
  rmesh submit shots/sh010.blend --project-root . --dry-run
  rmesh submit shot.blend --device optix --require 'blender>=4.2 <4.3'
  rmesh submit shot.blend --device gpu --any-blender
  rmesh submit comp.blend --after k3vq7xma,p2dfw5ne   waits for both jobs, then renders
  id=$(rmesh submit shot.blend --detach --json | jq -r .jobId)

Every file the scene uses travels with the job (textures, image sequences, UDIM tiles,
linked libraries and what they use, caches, fonts, sounds), each sent once: a file a node
already holds is not sent again. Files outside the project root travel too and are
remapped on the renderers; the artist's file is never changed. A scene whose files cannot
be found is refused (exit 2, with where Blender looked) unless --allow-missing.

Blender version: by default only the submitter's major.minor renders it (the Blender that
read the scene here, e.g. 3.4.x: >=3.4 <3.5); --require pins another range, --any-blender
takes any. Each chunk runs with the newest matching Blender a node has (rmesh status lists
them). --device: only nodes whose matching Blender has that device render the job; until one
appears the job waits and says why (rmesh status JOB).

Exit codes: 0 every frame is in the output folder (--dry-run: it would be accepted);
1 the job failed or was canceled; 2 bad input (not a .blend, files the scene uses cannot be
found); 3 no daemon; 130 Ctrl-C (the job keeps running).`,
    )
    .action(action((scene: string, opts: SubmitOptions) => submit(ctx, scene, opts)))
}

export async function submit(ctx: CliContext, scene: string, opts: SubmitOptions): Promise<number> {
  const req = await buildSubmitRequest(
    { ...opts, frameRate: opts.fps ?? opts.frameRate, scene },
    ctx.cwd,
  )
  if (opts.engine !== undefined) req.engine = opts.engine
  if (opts.param?.length) req.params = parseParams(opts.param)
  const client = ctx.client()
  if (opts.dryRun) return dryRun(ctx, await client.planSubmit(req), opts)
  const res = await client.submit(req)
  if (opts.detach) {
    if (opts.json) printJson(ctx, res)
    else {
      ctx.print(`submitted ${res.name} (${res.jobId}): ${res.framesTotal} frames → ${res.outDir}`)
      ctx.print(`follow it with: rmesh status ${res.jobId}`)
    }
    return EXIT.OK
  }
  return follow(ctx, res, opts)
}

/** `--dry-run`: the files the job would carry and what a submit would store and send. */
function dryRun(ctx: CliContext, plan: SubmitPlan, opts: SubmitOptions): number {
  if (opts.json) {
    printJson(ctx, plan)
    return plan.missing.length > 0 && !plan.allowMissing ? EXIT.USAGE : EXIT.OK
  }
  const t = plan.totals
  const external = plan.files.filter((f) => f.external).length
  ctx.print(
    `${plan.scenePath}: ${t.files} file(s), ${formatBytes(t.bytes)}, relative to ${plan.projectRoot}` +
      (external ? ` (${external} outside it, ${plan.remapped} reference(s) remapped)` : ''),
  )
  ctx.print(
    table(plan.files, [
      { header: 'size', get: (f) => formatBytes(f.size), align: 'right' },
      { header: 'here', get: (f) => (f.stored ? 'stored' : 'new') },
      { header: 'held by', get: (f) => String(f.holders), align: 'right' },
      { header: 'kind', get: (f) => f.kind },
      { header: 'as the scene names it', get: (f) => f.path, max: 60 },
      { header: 'in the job', get: (f) => f.treePath, max: 60 },
    ]),
  )
  ctx.print(
    `would store ${formatBytes(t.newBytes)} new on this node; ${formatBytes(t.unsharedBytes)} is held by no other node (sent once, to the first renderer that needs it)`,
  )
  if (plan.missing.length > 0) {
    ctx.print(ctx.color.red(`${plan.missing.length} file(s) cannot be found:`))
    for (const m of plan.missing)
      ctx.print(
        `  ${m.path} (${m.kind} ${JSON.stringify(m.name)}): Blender looked at ${m.lookedAt}`,
      )
    if (!plan.allowMissing) {
      ctx.print('a submit would be refused; fix the paths, or add --allow-missing')
      return EXIT.USAGE
    }
  }
  return EXIT.OK
}

/** `k=v` pairs; v is parsed as JSON (numbers, booleans, lists) and kept as a string otherwise. */
export function parseParams(pairs: readonly string[]): SubmitRequest['params'] {
  const out: Record<string, unknown> = {}
  for (const pair of pairs) {
    const eq = pair.indexOf('=')
    if (eq <= 0) throw new UsageError(`--param "${pair}" must look like key=value`)
    const raw = pair.slice(eq + 1)
    let value: unknown = raw
    try {
      value = JSON.parse(raw)
    } catch {}
    out[pair.slice(0, eq)] = value
  }
  return out as SubmitRequest['params']
}

async function follow(ctx: CliContext, res: SubmitResponse, opts: SubmitOptions): Promise<number> {
  const client = ctx.client()
  // Progress goes to stderr with --json so stdout stays one JSON document.
  const out = opts.json ? ctx.stderr : ctx.stdout
  const live = out.isTTY === true
  const say = (line: string) => out.write(`${live ? '\r\x1b[2K' : ''}${line}\n`)
  say(`submitted ${res.name} (${res.jobId}): ${res.framesTotal} frames → ${res.outDir}`)

  let lastPlain = ''
  let lastPlainAt = 0
  const onUpdate = (job: JobSummary) => {
    const width = Math.max(40, (out.columns ?? 80) - 1)
    const line = progressLine(job, width, ctx.color)
    if (live) out.write(`\r\x1b[2K${line}`)
    else {
      // Logs and CI: a line per change of progress, at most every 2 s.
      const now = ctx.now()
      const key = `${job.state} ${job.framesDone} ${job.framesFailed}`
      if (
        key !== lastPlain &&
        (now - lastPlainAt >= 2000 || isFinished(job) || job.state !== lastPlain.split(' ')[0])
      ) {
        out.write(`${line}\n`)
        lastPlain = key
        lastPlainAt = now
      }
    }
  }

  const controller = new AbortController()
  let interrupted = false
  const off = ctx.onInterrupt(() => {
    interrupted = true
    controller.abort()
  })
  let final: JobSummary
  try {
    final = await watchJob(client, res.jobId, { signal: controller.signal, onUpdate })
  } catch (err) {
    if (!interrupted) throw err
    off()
    if (live) out.write('\n')
    return onInterrupted(ctx, res)
  } finally {
    off()
  }
  if (live) out.write('\n')

  if (final.state !== 'done') throw new JobEndedError(final)
  const detail = await client.job(res.jobId)
  const missing = await missingOutputs(detail)
  if (missing.length > 0) {
    throw new JobEndedError(
      detail,
      `, but ${missing.length} frame(s) are not in ${detail.outDir}: ${formatFrames(missing)}; try \`rmesh fetch ${res.jobId}\``,
    )
  }
  if (opts.json) printJson(ctx, detail)
  else {
    say(ctx.color.green(`done: ${detail.framesTotal} frames in ${detail.outDir}`))
    if (detail.video?.path) say(`video: ${detail.video.path}`)
  }
  return EXIT.OK
}

async function onInterrupted(ctx: CliContext, res: SubmitResponse): Promise<number> {
  const answer = await ctx.prompt(
    `Cancel job ${res.name} (${res.jobId})? [y/N] (no leaves it rendering) `,
  )
  if (answer !== undefined && /^y(es)?$/i.test(answer.trim())) {
    const job = await ctx.client().cancel(res.jobId)
    ctx.warn(`canceled ${job.name}: ${job.framesDone}/${job.framesTotal} frames were done`)
    return EXIT.JOB_FAILED
  }
  ctx.warn(`left ${res.name} rendering; follow it with: rmesh status ${res.jobId}`)
  return EXIT.INTERRUPTED
}
