/**
 * Builds the commander program from the command list and runs it with injected deps.
 *
 * Invariants: runCli never throws and never exits the process; it returns the exit code
 * (cli/exit-codes.ts). Errors are printed once, to stderr, as `rmesh: <message>`; with
 * --json they are also printed to stdout as `{ "error": { code, message } }` for scripts.
 */
import { Command, CommanderError } from 'commander'
import { isRmeshError } from '../src/util/errors.js'
import type { ActionResult, CommandModule } from './command.js'
import { COMMANDS } from './commands/index.js'
import { type CliContext, type CliDeps, createContext, defaultDeps } from './context.js'
import { EXIT, EXIT_CODES_HELP, exitCodeFor } from './exit-codes.js'
import { extractGlobalFlags, resolveDataDir } from './paths.js'

export const VERSION = '0.1.0'

export function buildProgram(
  ctx: CliContext,
  result: ActionResult,
  commands: readonly CommandModule[] = COMMANDS,
): Command {
  const program = new Command('rmesh')
  program
    .description(
      'rmesh: a peer-to-peer render farm. Every machine runs `rmesh daemon`; no central server.',
    )
    .version(VERSION, '-V, --version')
    // Documented here; taken out of argv before parsing so they work anywhere.
    .option('--dir <path>', 'data directory (default: $RMESH_DIR, else ~/.local/share/rmesh)')
    .option('--no-color', 'plain output without colours (also: NO_COLOR=1)')
    .exitOverride()
    .showHelpAfterError('(add --help for usage and examples)')
    .configureOutput({
      writeOut: (s) => ctx.stdout.write(s),
      writeErr: (s) => ctx.stderr.write(s),
      outputError: (s, write) => write(s.startsWith('error:') ? `rmesh: ${s}` : s),
    })
    .addHelpText('after', `\n${EXIT_CODES_HELP}\n`)
  program.hook('preAction', (_this, actionCommand) => {
    // Stash the command for action() so it can return an exit code.
    ;(actionCommand as Command & { __result?: ActionResult }).__result = result
  })
  for (const c of commands) c.register(program, ctx)
  return program
}

export async function runCli(
  argv: readonly string[],
  partial: Partial<CliDeps> = {},
): Promise<number> {
  const deps: CliDeps = { ...defaultDeps(), ...partial }
  const wantsJson = argv.includes('--json')
  let ctx: CliContext | undefined
  try {
    const flags = extractGlobalFlags(argv)
    const dataDir = resolveDataDir({
      flag: flags.dir,
      env: deps.env,
      platform: deps.platform,
      home: deps.home,
      cwd: deps.cwd,
    })
    ctx = createContext(deps, dataDir, flags.color)
    const result: ActionResult = { code: EXIT.OK }
    const program = buildProgram(ctx, result)
    await program.parseAsync(flags.rest as string[], { from: 'user' })
    return result.code
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version end with code 0; every other commander error is bad usage.
      return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE
    }
    const code = exitCodeFor(err)
    const message = isRmeshError(err)
      ? err.message
      : err instanceof Error
        ? err.message
        : String(err)
    deps.stderr.write(`rmesh: ${message}\n`)
    if (wantsJson) {
      const errCode = isRmeshError(err) ? err.code : 'ERR_INTERNAL'
      deps.stdout.write(`${JSON.stringify({ error: { code: errCode, message } })}\n`)
    }
    if (!isRmeshError(err) && err instanceof Error && deps.env.RMESH_DEBUG)
      deps.stderr.write(`${err.stack}\n`)
    return code
  }
}
