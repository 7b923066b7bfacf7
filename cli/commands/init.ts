/**
 * `rmesh init`: create a mesh on this machine. Writes the owner key (mesh.key, 0600) and
 * issues this node an admin+submit+render token, stored as <dir>/node.token for the
 * daemon to pick up (at start, or at once through the API when it is running).
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Command } from 'commander'
import { loadOrCreateNodeKey, peerIdOf } from '../../src/auth/identity.js'
import { createMesh } from '../../src/auth/mesh.js'
import { formatToken, issueToken } from '../../src/auth/token.js'
import { isRmeshError } from '../../src/util/errors.js'
import { type CliContext, printJson } from '../context.js'
import { action } from '../command.js'

import { NODE_TOKEN_FILE } from '../../src/auth/own-token.js'

export { NODE_TOKEN_FILE }
const INIT_TOKEN_DAYS = 365

/** Create a mesh in `dir` and this node's token; shared by `init` and `demo`. */
export async function initMesh(
  dir: string,
  nowMs = Date.now(),
): Promise<{ meshId: string; peerId: string; token: string; tokenId: string }> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const nodeKey = await loadOrCreateNodeKey(dir)
  const peerId = peerIdOf(nodeKey)
  const owner = await createMesh(dir)
  const now = Math.floor(nowMs / 1000)
  const token = await issueToken({
    issuer: owner.privateKey,
    ownerPublicKey: owner.ownerPublicKey,
    audience: peerId,
    caps: ['admin', 'submit', 'render'],
    nbf: now - 60,
    exp: now + INIT_TOKEN_DAYS * 86_400,
  })
  const text = formatToken(token)
  await writeNodeToken(dir, text)
  return { meshId: owner.meshId, peerId, token: text, tokenId: token.id }
}

export async function writeNodeToken(dir: string, token: string): Promise<void> {
  const file = join(dir, NODE_TOKEN_FILE)
  await writeFile(file, `${token}\n`, { mode: 0o600 })
  await chmod(file, 0o600)
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('init')
    .description('create a new mesh with this machine as its owner (run once per studio)')
    .option('--json', 'print {meshId, peerId, tokenId} as JSON')
    .addHelpText(
      'after',
      `
Creates the mesh owner key (<dir>/mesh.key): back it up, it is the only way to issue
tokens without another admin. This node gets a token with admin, submit and render.

Examples:
  rmesh init
  rmesh --dir /srv/rmesh init --json`,
    )
    .action(
      action(async (opts: { json?: boolean }) => {
        const created = await initMesh(ctx.dataDir)
        // A running daemon takes the token at once; otherwise it reads node.token at start.
        let picked = false
        try {
          await ctx.client().join(created.token)
          picked = true
        } catch (err) {
          if (!isRmeshError(err, 'ERR_DAEMON_NOT_RUNNING')) throw err
        }
        if (opts.json) {
          printJson(ctx, {
            meshId: created.meshId,
            peerId: created.peerId,
            tokenId: created.tokenId,
            daemonUpdated: picked,
          })
          return 0
        }
        ctx.print(`Created mesh ${created.meshId}`)
        ctx.print(`This node (${created.peerId}) holds an admin, submit and render token.`)
        ctx.print('')
        ctx.print(
          ctx.color.yellow(`Back up ${join(ctx.dataDir, 'mesh.key')}: it is the mesh's owner key.`),
        )
        ctx.print(
          picked ? 'The running daemon uses the token now.' : 'Start the daemon with: rmesh daemon',
        )
        ctx.print(
          'Add machines with: rmesh token invite   (or: rmesh token issue --peer <their rmesh id>)',
        )
        return 0
      }),
    )
}
