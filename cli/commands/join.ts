/** `rmesh join TOKEN|INVITE`: admits this node; the daemon picks it up without a restart. */
import type { Command } from 'commander'
import { type CliContext, printJson, UsageError } from '../context.js'
import { formatTime } from '../format.js'
import { action } from '../command.js'

export function register(program: Command, ctx: CliContext): void {
  program
    .command('join')
    .argument('<code>', 'a token issued for this peer id, or an invite')
    .description('join a mesh with a token or an invite')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  rmesh id                 print this peer id, for `rmesh token issue --peer` on an admin node\n  rmesh join <token>\n  rmesh join <invite>',
    )
    .action(action((code: string, opts: { json?: boolean }) => join(ctx, code, opts)))
}

export async function join(
  ctx: CliContext,
  code: string,
  opts: { json?: boolean },
): Promise<number> {
  const c = code.trim()
  if (c === '' || c.length > 16 * 1024 || /\s/.test(c)) {
    throw new UsageError(
      'that is not a token or an invite: paste the whole last line printed by `rmesh token issue` or `rmesh token invite`',
    )
  }
  const res = await ctx.client().join(c)
  if (opts.json) printJson(ctx, res)
  else
    ctx.print(
      `joined mesh ${res.meshId} with ${res.caps.join(', ')} (token ${res.tokenId}, expires ${formatTime(res.expires)})`,
    )
  return 0
}
