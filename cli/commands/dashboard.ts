/**
 * `rmesh dashboard`: the live terminal UI (cli/ui/). Needs a terminal. Ink, React and the UI
 * are imported when the dashboard starts, so every other command starts without them.
 */
import type { Command } from 'commander'
import type { ApiClient } from '../../src/api/client.js'
import { action } from '../command.js'
import { type CliContext, UsageError } from '../context.js'

export function register(program: Command, ctx: CliContext): void {
  program
    .command('dashboard')
    .alias('ui')
    .description('live view of the mesh: peers, jobs, frames, logs; submit and control jobs')
    .addHelpText(
      'after',
      '\nKeys: arrows move, enter opens, n new job, c cancel, r retry, +/- priority,\nl logs, f fetch, ? help, q quit.\n\nExamples:\n  rmesh dashboard\n  rmesh dashboard --no-color',
    )
    .action(action(() => dashboard(ctx)))
}

/** Options for embedding the dashboard (the demo shows it on another node's client). */
export interface DashboardOptions {
  client?: ApiClient
  /** Close the dashboard when this settles. */
  until?: Promise<unknown>
}

export async function dashboard(ctx: CliContext, options: DashboardOptions = {}): Promise<number> {
  if (!ctx.interactive)
    throw new UsageError(
      'the dashboard needs a terminal; in scripts use `rmesh jobs --json` or `rmesh status JOB --json`',
    )
  const client = options.client ?? ctx.client()
  // Fail fast with the usual "no daemon" message and exit code, before taking the screen.
  await client.node()
  const [{ render }, { createElement }, { Dashboard }, { makeTheme, ThemeContext }] =
    await Promise.all([
      import('ink'),
      import('react'),
      import('../ui/App.js'),
      import('../ui/theme.js'),
    ])
  const app = render(
    createElement(
      ThemeContext.Provider,
      { value: makeTheme(ctx.color.enabled) },
      createElement(Dashboard, { client, cwd: ctx.cwd }),
    ),
    {
      stdout: ctx.stdout as NodeJS.WriteStream,
      stdin: ctx.stdin as NodeJS.ReadStream,
      exitOnCtrlC: true,
      patchConsole: true,
      // We already know this is a terminal (ctx.interactive). Ink would otherwise fall back
      // to printing only the last frame whenever a CI variable is set in the environment.
      interactive: true,
    },
  )
  options.until?.finally(() => app.unmount())
  await app.waitUntilExit()
  return 0
}
