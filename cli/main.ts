/**
 * Entry point of the `rmesh` command (compiled to dist/cli/main.js, loaded by bin/rmesh.js).
 * All logic is in ./program.ts so tests run commands in-process; this file only binds the
 * process: argv in, exit code out.
 */
import { runCli } from './program.js'

process.exitCode = await runCli(process.argv.slice(2))
