/**
 * Resource limits of an engine process, applied at its launch: niceness through `nice` and an
 * address-space ceiling through `prlimit --as` (util-linux), both of which exec the engine,
 * so its pid stays the leader of its own process group (process.ts kills the group). On
 * Linux the engine also dies with the daemon: `setpriv --pdeathsig KILL` (util-linux) has
 * the kernel kill it when the daemon's process ends, even by SIGKILL or a crash, where no
 * exit hook runs (a render must never outlive its node and render on beside its restart).
 *
 * Invariants: argv only; a limit whose tool is missing is skipped and reported in `skipped`
 * (the caller says so in its log), never a failed render; Blender's thread count is
 * Blender's own flag (`-t`), placed by the caller.
 */
import { accessSync, constants, statSync } from 'node:fs'
import { delimiter, join } from 'node:path'

/** A node's limits on its renders (set by its owner: config, flags, `rmesh node limits`). */
export interface RenderLimits {
  /** Blender's render threads (`-t`); absent: Blender's default (every CPU). */
  threads?: number
  /** Niceness of engine processes (0..19). */
  nice?: number
  /** Address-space ceiling per render process, MiB (RLIMIT_AS through prlimit). */
  memoryMiB?: number
}

export interface ProcessLimits {
  /** 0..19: higher is kinder to the machine's user. */
  nice?: number
  /** RLIMIT_AS of the engine process, bytes. */
  memoryBytes?: number
}

const found = new Map<string, string | undefined>()

/** An executable on PATH (looked up once per name). */
function which(name: string): string | undefined {
  if (found.has(name)) return found.get(name)
  let hit: string | undefined
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue
    const p = join(dir, name)
    try {
      if (statSync(p).isFile()) {
        accessSync(p, constants.X_OK)
        hit = p
        break
      }
    } catch {}
  }
  found.set(name, hit)
  return hit
}

/** The argv that runs `file args` under `limits`, and the limits it could not apply. */
export function withLimits(
  file: string,
  args: string[],
  limits: ProcessLimits | undefined,
): { file: string; args: string[]; skipped: string[] } {
  const skipped: string[] = []
  let argv = [file, ...args]
  if (limits?.nice !== undefined && limits.nice > 0) {
    const nice = which('nice')
    if (nice) argv = [nice, '-n', String(limits.nice), ...argv]
    else skipped.push('nice (the nice command is missing)')
  }
  if (limits?.memoryBytes !== undefined) {
    const prlimit = which('prlimit')
    if (prlimit) argv = [prlimit, `--as=${Math.floor(limits.memoryBytes)}`, '--', ...argv]
    else skipped.push('memory ceiling (prlimit, from util-linux, is missing)')
  }
  // Outermost, so the signal is set before anything else runs; it survives each exec.
  const setpriv = process.platform === 'linux' ? which('setpriv') : undefined
  if (setpriv) argv = [setpriv, '--pdeathsig', 'KILL', '--', ...argv]
  return { file: argv[0], args: argv.slice(1), skipped }
}
