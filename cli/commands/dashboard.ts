/**
 * `rmesh dashboard`: the live terminal UI (cli/ui/). Needs a terminal. Ink, React and the UI
 * are imported when the dashboard starts, so every other command starts without them.
 */
import type { Command } from 'commander'
import type { ApiClient } from '../../src/api/client.js'
import { action } from '../command.js'
import { type CliContext, UsageError } from '../context.js'
import { cellPxFrom, detectImages } from '../ui/images/detect.js'

export function register(program: Command, ctx: CliContext): void {
  program
    .command('dashboard')
    .alias('ui')
    .description('live view of the mesh: peers, jobs, frames, logs; submit and control jobs')
    .option(
      '--images <mode>',
      'thumbnail of the latest frame: auto, kitty, iterm, sixel or off (default: RMESH_IMAGES, else auto)',
    )
    .addHelpText(
      'after',
      `
Keys: arrows move, enter opens, n new job, c cancel, r retry, +/- priority,
l logs, f fetch, ? help, q quit.

Images: the latest finished frame of the selected job is drawn beside its frames where
the terminal shows images: kitty and Ghostty (kitty graphics), iTerm2 and WezTerm (inline
images), foot, mlterm, Konsole and xterm -ti vt340 (sixel; TERM must say so, or pass
--images sixel). Inside tmux or screen no image is drawn unless asked for. Sixel images
assume 8x16-pixel cells: RMESH_IMAGE_CELL=10x20 sizes them for other fonts.

Examples:
  rmesh dashboard
  rmesh dashboard --no-color
  rmesh dashboard --images sixel     # xterm -ti vt340, or a terminal TERM does not name
  RMESH_IMAGES=off rmesh dashboard   # text only`,
    )
    .action(action((o: { images?: string }) => dashboard(ctx, { images: o.images })))
}

/** Options for embedding the dashboard (the demo shows it on another node's client). */
export interface DashboardOptions {
  client?: ApiClient
  /** Close the dashboard when this settles. */
  until?: Promise<unknown>
  /** --images: auto, kitty, iterm, sixel or off (else RMESH_IMAGES, else auto). */
  images?: string
}

export async function dashboard(ctx: CliContext, options: DashboardOptions = {}): Promise<number> {
  const choice = detectImages(process.env, options.images)
  if (!ctx.interactive)
    throw new UsageError(
      'the dashboard needs a terminal; in scripts use `rmesh jobs --json` or `rmesh status JOB --json`',
    )
  const client = options.client ?? ctx.client()
  // Fail fast with the usual "no daemon" message and exit code, before taking the screen.
  await client.node()
  const [
    { render },
    { createElement },
    { Dashboard },
    { makeTheme, ThemeContext },
    { createImageOverlay },
  ] = await Promise.all([
    import('ink'),
    import('react'),
    import('../ui/App.js'),
    import('../ui/theme.js'),
    import('../ui/images/overlay.js'),
  ])
  const stdout = ctx.stdout as NodeJS.WriteStream
  const overlay = choice.protocol === 'off' ? undefined : createImageOverlay(stdout)
  const images =
    overlay && choice.protocol !== 'off'
      ? { protocol: choice.protocol, overlay, cell: cellPxFrom(process.env) }
      : undefined
  const app = render(
    createElement(
      ThemeContext.Provider,
      { value: makeTheme(ctx.color.enabled) },
      createElement(Dashboard, { client, cwd: ctx.cwd, images }),
    ),
    {
      stdout: overlay?.stdout ?? stdout,
      // Sixel and iTerm2 images are drawn again after every frame: fewer frames, less to send.
      ...(images && images.protocol !== 'kitty' ? { maxFps: 10 } : {}),
      stdin: ctx.stdin as NodeJS.ReadStream,
      exitOnCtrlC: true,
      patchConsole: true,
      // We already know this is a terminal (ctx.interactive). Ink would otherwise fall back
      // to printing only the last frame whenever a CI variable is set in the environment.
      interactive: true,
    },
  )
  options.until?.finally(() => app.unmount())
  try {
    await app.waitUntilExit()
  } finally {
    overlay?.close()
  }
  return 0
}
