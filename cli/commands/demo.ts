/**
 * `rmesh demo`: a 3-node mesh on loopback renders the example scene end to end: fresh
 * mesh and tokens, real daemons, real Blender, frames and a video in
 * ./rmesh-demo-output/. The nodes stop cleanly at the end and on Ctrl-C.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import { createApiClient } from '../../src/api/client.js'
import type { JobSummary, VideoCodec } from '../../src/api/types.js'
import { ensureExampleScene } from '../../src/engines/example-scene.js'
import { type CliContext, printJson, UsageError } from '../context.js'
import { EXIT } from '../exit-codes.js'
import { startLocalMesh } from '../local-mesh.js'
import { action } from '../command.js'
import { progressLine, watchJob } from '../watch.js'
import { dashboard } from './dashboard.js'

export function register(program: Command, ctx: CliContext): void {
  program
    .command('demo')
    .description('render the example scene on a 3-node mesh on this machine (loopback only)')
    .option('--nodes <n>', 'how many local nodes', '3')
    .option('--out <dir>', 'where the frames and the video go', 'rmesh-demo-output')
    .option('--frames <spec>', 'frames to render (default: the whole scene, 1-24)')
    .option('--video <codec>', 'h264, vp9, av1 or none', 'h264')
    .option('--plain', 'plain progress lines even on a terminal')
    .option('--keep', 'keep the nodes’ temporary data directories')
    .option('--json', 'print the finished job as JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  rmesh demo\n  rmesh demo --nodes 2 --frames 1-6 --video none --plain',
    )
    .action(
      action(
        async (opts: {
          nodes: string
          out: string
          frames?: string
          video: string
          plain?: boolean
          keep?: boolean
          json?: boolean
        }) => {
          const count = Number(opts.nodes)
          if (!Number.isInteger(count) || count < 1 || count > 8)
            throw new UsageError('--nodes must be a whole number from 1 to 8')
          if (!['h264', 'vp9', 'av1', 'none'].includes(opts.video))
            throw new UsageError('--video must be h264, vp9, av1 or none')
          const outDir = resolve(ctx.cwd, opts.out)
          const baseDir = await mkdtemp(join(tmpdir(), 'rmesh-demo-'))
          ctx.warn(`Building the example scene…`)
          const scene = await ensureExampleScene(join(baseDir, 'scene'))
          ctx.warn(`Starting ${count} nodes on 127.0.0.1 (data in ${baseDir})…`)
          const mesh = await startLocalMesh({ baseDir, count })
          let interrupted = false
          const stopOnInterrupt = ctx.onInterrupt(() => {
            interrupted = true
            ctx.warn('\nInterrupted: stopping the demo nodes…')
            void mesh.stop().then(() => process.exit(EXIT.INTERRUPTED))
          })
          try {
            const client = createApiClient({ socketPath: mesh.nodes[0].socketPath })
            const submitted = await client.submit({
              scenePath: scene.scenePath,
              frames: opts.frames,
              outDir,
              name: 'rmesh-demo',
              pack: true,
              video: opts.video === 'none' ? undefined : (opts.video as VideoCodec),
            })
            ctx.warn(
              `Submitted job ${submitted.jobId}: ${submitted.framesTotal} frames → ${outDir}`,
            )
            const plain = opts.plain || !ctx.interactive
            let lastLine = ''
            const watching = watchJob(client, submitted.jobId, {
              signal: AbortSignal.timeout(30 * 60_000),
              onUpdate: (job) => {
                const line = progressLine(job, 30, ctx.color)
                if (line === lastLine || !plain) return
                lastLine = line
                ctx.warn(line)
              },
            })
            // On a terminal the demo shows the dashboard until the job ends (q leaves it early).
            let ended = false
            const settled = watching.finally(() => {
              ended = true
            })
            if (!plain) {
              await dashboard(ctx, { client, until: settled.catch(() => undefined) })
              if (!ended) {
                // q or Ctrl-C in the dashboard: the demo ends, and so do its nodes.
                ctx.warn('Stopping the demo nodes…')
                settled.catch(() => undefined)
                return EXIT.INTERRUPTED
              }
            }
            const final: JobSummary = await watching
            if (!plain) ctx.warn(progressLine(final, 30, ctx.color))
            if (opts.json) printJson(ctx, await client.job(submitted.jobId))
            const ok = final.state === 'done' && final.localComplete === true
            ctx.warn(
              ok
                ? `Done: every frame${opts.video === 'none' ? '' : ' and the video'} are in ${outDir}`
                : `The demo job ended ${final.state}${final.reason ? `: ${final.reason}` : ''}`,
            )
            return ok ? EXIT.OK : EXIT.JOB_FAILED
          } finally {
            stopOnInterrupt()
            if (!interrupted) {
              await mesh.stop()
              if (!opts.keep) await rm(baseDir, { recursive: true, force: true })
            }
          }
        },
      ),
    )
}
