/** Runs the CLI in-process with captured output and an injected client. */
import type { ApiClient } from '../../../src/api/client.js'
import { runCli } from '../../../cli/program.js'

export interface RunResult {
  code: number
  out: string
  err: string
  socketPaths: string[]
}

export async function run(
  argv: string[],
  o: {
    client?: ApiClient
    createClient?: (socketPath: string) => ApiClient
    cwd?: string
    env?: Record<string, string>
    tty?: boolean
    interrupt?: (fire: () => void) => void
  } = {},
): Promise<RunResult> {
  let out = ''
  let err = ''
  const socketPaths: string[] = []
  const code = await runCli(argv, {
    stdout: { write: (s: string) => (out += s), isTTY: o.tty ?? false, columns: 100 },
    stderr: { write: (s: string) => (err += s), isTTY: false },
    stdin: Object.assign(process.stdin, {}) as NodeJS.ReadableStream & { isTTY?: boolean },
    env: o.env ?? { HOME: '/home/u' },
    cwd: o.cwd ?? '/tmp',
    home: '/home/u',
    platform: 'linux',
    createClient: (socketPath) => {
      socketPaths.push(socketPath)
      if (o.createClient) return o.createClient(socketPath)
      if (!o.client) throw new Error('no client in this test')
      return o.client
    },
    onInterrupt: (h) => {
      o.interrupt?.(h)
      return () => {}
    },
    now: () => 0,
  })
  return { code, out, err, socketPaths }
}
