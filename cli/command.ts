/**
 * The interface of a command module (one file per command in cli/commands/, listed in
 * cli/commands/index.ts) and the wrapper that turns a command's returned number into the
 * process exit code. Kept apart from program.ts so command files do not import the list
 * that imports them.
 */
import type { Command } from 'commander'
import type { CliContext } from './context.js'

/** A command module: one file in cli/commands/, listed in cli/commands/index.ts. */
export interface CommandModule {
  register(program: Command, ctx: CliContext): void
}

/** The holder a command's action writes its exit code into (commander discards returns). */
export interface ActionResult {
  code: number
}

/**
 * Wraps a command's async body: its return value becomes the exit code. Use it for every
 * `.action()` so that commands stay plain functions of (ctx, args, options).
 */
export function action<A extends unknown[]>(
  fn: (...args: A) => Promise<number>,
): (...args: unknown[]) => Promise<void> {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command & { __result?: ActionResult }
    const code = await fn(...(args as A))
    if (cmd.__result) cmd.__result.code = code
  }
}
