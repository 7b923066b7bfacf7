/**
 * `rmesh id`: print this node's peer id, creating its identity if there is none yet, so
 * a new machine can be admitted (`rmesh token issue --peer …`) before its daemon runs.
 */
import { mkdir } from 'node:fs/promises'
import type { Command } from 'commander'
import { loadOrCreateNodeKey, peerIdOf } from '../../src/auth/identity.js'
import { type CliContext, printJson } from '../context.js'
import { action } from '../command.js'

export function register(program: Command, ctx: CliContext): void {
  program
    .command('id')
    .description("print this machine's peer id (its name on the mesh)")
    .option('--json', 'print {peerId, dataDir} as JSON')
    .addHelpText('after', '\nExamples:\n  rmesh id\n  rmesh id --json | jq -r .peerId')
    .action(
      action(async (opts: { json?: boolean }) => {
        await mkdir(ctx.dataDir, { recursive: true, mode: 0o700 })
        const peerId = peerIdOf(await loadOrCreateNodeKey(ctx.dataDir))
        if (opts.json) printJson(ctx, { peerId, dataDir: ctx.dataDir })
        else ctx.print(peerId)
        return 0
      }),
    )
}
