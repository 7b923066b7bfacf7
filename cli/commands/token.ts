/**
 * `rmesh token issue|list|revoke|renew|invite`. Issue and invite print the token alone on
 * the last line of stdout so scripts can take it with `tail -n1`.
 */
import type { Command } from 'commander'
import type { TokenInfo } from '../../src/api/types.js'
import { type CliContext, printJson } from '../context.js'
import { formatTime, shortPeer, table } from '../format.js'
import { action } from '../command.js'
import { parseCaps, parseDuration, parseInteger, parsePeerId } from '../validate.js'

interface IssueOptions {
  peer: string
  caps: string
  expires?: string
  maxQueued?: string
  json?: boolean
}

export function register(program: Command, ctx: CliContext): void {
  const token = program
    .command('token')
    .description('admission tokens: issue, list, revoke, renew, invite')
    .addHelpText(
      'after',
      `
Examples:
  rmesh token issue --peer 12D3KooW... --caps render,submit --expires 30d
  rmesh token invite --caps render --expires 1h
  rmesh token list
  rmesh token revoke <id>`,
    )

  token
    .command('issue')
    .description(
      'issue a token for a peer (needs admin); the token is printed alone on the last line',
    )
    .requiredOption('--peer <peerId>', 'the peer id of the machine (run `rmesh id` there)')
    .option(
      '--caps <caps>',
      'capabilities, comma-separated: submit, render, admin',
      'render,submit',
    )
    .option('--expires <duration>', 'lifetime: 90m, 12h, 30d, 2w (default 30d)')
    .option('--max-queued <n>', 'most jobs this peer may have queued at once')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  rmesh token issue --peer 12D3KooW... --caps render\n  TOKEN=$(rmesh token issue --peer "$PEER" | tail -n1)',
    )
    .action(action((opts: IssueOptions) => issue(ctx, opts)))

  token
    .command('list')
    .description('list tokens this node issued or holds')
    .option('--json', 'print JSON (an array of objects with id, audience, caps, expires, revoked)')
    .addHelpText('after', '\nExamples:\n  rmesh token list\n  rmesh token list --json')
    .action(action((opts: { json?: boolean }) => list(ctx, opts)))

  token
    .command('revoke')
    .argument('<id>', 'token id (from `rmesh token list`)')
    .description('revoke a token: its peer is cut off from the mesh within seconds')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExamples:\n  rmesh token revoke bafy...')
    .action(action((id: string, opts: { json?: boolean }) => revoke(ctx, id, opts)))

  token
    .command('renew')
    .description("renew this node's own token before it expires")
    .option('--expires <duration>', 'new lifetime (default: as before)')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExamples:\n  rmesh token renew --expires 90d')
    .action(action((opts: { expires?: string; json?: boolean }) => renew(ctx, opts)))

  token
    .command('invite')
    .description('a short-lived, single-use invite for a new machine (`rmesh join INVITE` there)')
    .option('--caps <caps>', 'capabilities of the token the new machine gets', 'render')
    .option('--expires <duration>', 'how long the invite is valid (default 1h)')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExamples:\n  rmesh token invite --caps render,submit --expires 1h')
    .action(action((opts: { caps: string; expires?: string; json?: boolean }) => invite(ctx, opts)))
}

export async function issue(ctx: CliContext, opts: IssueOptions): Promise<number> {
  const req = {
    peer: parsePeerId(opts.peer),
    caps: parseCaps(opts.caps),
    expiresInMs: opts.expires === undefined ? undefined : parseDuration(opts.expires),
    maxQueued:
      opts.maxQueued === undefined
        ? undefined
        : parseInteger(opts.maxQueued, '--max-queued', 0, 1_000_000),
  }
  const t = await ctx.client().issueToken(req)
  if (opts.json) printJson(ctx, t)
  else {
    ctx.print(
      `token ${t.id} for ${t.audience} (${t.caps.join(', ')}), expires ${formatTime(t.expires)}`,
    )
    ctx.print(`on that machine run: rmesh join <token>`)
    ctx.print(t.token)
  }
  return 0
}

export async function list(ctx: CliContext, opts: { json?: boolean }): Promise<number> {
  const tokens = await ctx.client().tokens()
  if (opts.json) {
    printJson(ctx, tokens)
    return 0
  }
  if (tokens.length === 0) {
    ctx.print('no tokens: `rmesh init` creates a mesh, `rmesh join TOKEN` joins one')
    return 0
  }
  const c = ctx.color
  ctx.print(
    table<TokenInfo>(tokens, [
      { header: 'id', get: (t) => t.id, max: 16 },
      { header: 'audience', get: (t) => shortPeer(t.audience) + (t.self ? ' (this node)' : '') },
      { header: 'caps', get: (t) => t.caps.join(',') },
      { header: 'expires', get: (t) => formatTime(t.expires) },
      {
        header: 'state',
        get: (t) =>
          t.revoked
            ? c.red('revoked')
            : t.expires !== null && t.expires < ctx.now()
              ? c.yellow('expired')
              : c.green('valid'),
      },
    ]),
  )
  return 0
}

export async function revoke(
  ctx: CliContext,
  id: string,
  opts: { json?: boolean },
): Promise<number> {
  const t = await ctx.client().revokeToken(id.trim())
  if (opts.json) printJson(ctx, t)
  else ctx.print(`revoked ${t.id} (${t.audience})`)
  return 0
}

export async function renew(
  ctx: CliContext,
  opts: { expires?: string; json?: boolean },
): Promise<number> {
  const t = await ctx.client().renewToken({
    expiresInMs: opts.expires === undefined ? undefined : parseDuration(opts.expires),
  })
  if (opts.json) printJson(ctx, t)
  else {
    ctx.print(`renewed: token ${t.id}, expires ${formatTime(t.expires)}`)
    ctx.print(t.token)
  }
  return 0
}

export async function invite(
  ctx: CliContext,
  opts: { caps: string; expires?: string; json?: boolean },
): Promise<number> {
  const inv = await ctx.client().invite({
    caps: parseCaps(opts.caps),
    expiresInMs: opts.expires === undefined ? undefined : parseDuration(opts.expires),
  })
  if (opts.json) printJson(ctx, inv)
  else {
    ctx.print(`single-use invite (${inv.caps.join(', ')}), valid until ${formatTime(inv.expires)}`)
    ctx.print('on the new machine run: rmesh join <invite>')
    ctx.print(inv.invite)
  }
  return 0
}
