/**
 * Entry point of the `rmesh` command (compiled to dist/cli/main.js, loaded by bin/rmesh.js).
 * All logic is in ./program.ts so tests run commands in-process; this file only binds the
 * process: argv in, exit code out.
 */
import { runCli } from './program.js'

// `rmesh jobs | head`: a reader that goes away is not an error of ours.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0)
    throw err
  })
}

process.exitCode = await runCli(process.argv.slice(2))
