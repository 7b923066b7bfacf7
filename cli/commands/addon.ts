/**
 * `rmesh addon pack`: writes the Blender add-on (addon/rmesh_submit/ in the package) as the
 * zip Blender installs (Edit > Preferences > Add-ons > Install…), `rmesh_submit/…` inside.
 * Only the add-on's .py files go in (no caches), in a stable order.
 */
import { readdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import { writeZip } from '../../src/service/zip.js'
import { packageRoot } from '../../src/version.js'
import { type CliContext, printJson } from '../context.js'
import { action } from '../command.js'

export const ADDON_NAME = 'rmesh_submit'

export async function packAddon(out: string): Promise<{ path: string; files: string[] }> {
  const src = join(packageRoot(), 'addon', ADDON_NAME)
  const files = (await readdir(src)).filter((f) => f.endsWith('.py')).sort()
  await writeZip(
    out,
    files.map((f) => ({ name: `${ADDON_NAME}/${f}`, path: join(src, f) })),
  )
  return { path: out, files: files.map((f) => `${ADDON_NAME}/${f}`) }
}

export function register(program: Command, ctx: CliContext): void {
  const addon = program
    .command('addon')
    .description('the Blender add-on: a Render Properties panel that submits the open file')
  addon
    .command('pack')
    .description('write the add-on zip to install in Blender (3.4 to 4.x)')
    .option('--out <file>', 'where to write it', `${ADDON_NAME}.zip`)
    .option('--json', 'print {path, files} as JSON')
    .addHelpText(
      'after',
      `
Examples:
  rmesh addon pack
  rmesh addon pack --out ~/Downloads/rmesh_submit.zip

Install: Blender > Edit > Preferences > Add-ons > Install… (4.2+: Install from Disk…),
pick the zip, tick "rmesh render farm". The panel is in Properties > Render > rmesh; it
needs a running \`rmesh daemon\` on this machine (its data folder is set in the add-on's
preferences when it is not the default).`,
    )
    .action(
      action(async (opts: { out: string; json?: boolean }) => {
        const r = await packAddon(resolve(ctx.cwd, opts.out))
        if (opts.json) printJson(ctx, r)
        else ctx.print(`wrote ${r.path}: install it in Blender (Preferences > Add-ons > Install…)`)
        return 0
      }),
    )
}
