/** `rmesh web open|password|status`: the daemon's web UI (src/web/). */
import type { Command } from 'commander'
import { type CliContext, printJson, UsageError } from '../context.js'
import { action } from '../command.js'

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '')
}

export function register(program: Command, ctx: CliContext): void {
  const web = program
    .command('web')
    .description("this node's web UI: where it is, a one-time login link, its password")
    .addHelpText(
      'after',
      `
The daemon serves the web UI on 127.0.0.1:4778 by default (rmesh daemon --web ADDR:PORT, or
--web off). On 127.0.0.1 or ::1 it needs no login; on any other address it needs a session,
from a one-time link (rmesh web open, valid 10 minutes) or the node's password.

Examples:
  rmesh web open                          # print the URL (with a one-time login link when needed)
  echo 'long secret' | rmesh web password # set the login password (read from stdin)
  rmesh web status --json`,
    )
  web
    .command('open')
    .description('print the web UI address; beyond loopback, a one-time login link')
    .option('--json', 'print {url, expires} as JSON')
    .action(
      action(async (opts: { json?: boolean }) => {
        const link = await ctx.client().webLink()
        if (opts.json) printJson(ctx, link)
        else {
          ctx.print(link.url)
          if (link.expires)
            ctx.warn(`(a one-time login link, valid until ${new Date(link.expires).toISOString()})`)
        }
        return 0
      }),
    )
  web
    .command('password')
    .description('set the web login password (read from stdin; at least 8 characters)')
    .action(
      action(async () => {
        if (process.stdin.isTTY) ctx.warn('type the password, then Enter and Ctrl-D:')
        const password = await readStdin()
        if (password.length < 8) throw new UsageError('the password must be at least 8 characters')
        await ctx.client().webPassword(password)
        ctx.print('web password set (stored hashed); existing web sessions were logged out')
        return 0
      }),
    )
  web
    .command('status')
    .description('where the web UI is served and whether it needs a login')
    .option('--json', 'print as JSON')
    .action(
      action(async (opts: { json?: boolean }) => {
        const w = await ctx.client().web()
        if (opts.json) printJson(ctx, w)
        else
          ctx.print(
            `${w.url}  ${w.loginRequired ? `login required (password ${w.passwordSet ? 'set' : 'not set'})` : 'no login (loopback)'}`,
          )
        return 0
      }),
    )
}
