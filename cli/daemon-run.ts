/**
 * `rmesh daemon`: resolve the configuration (flags → RMESH_* → config file → defaults),
 * start the daemon, print who it is, and stop cleanly on SIGINT/SIGTERM.
 */
import {
  type ConfigInput,
  configFromEnv,
  configFromFile,
  type DaemonConfig,
  resolveConfig,
} from '../src/config.js'
import { startDaemon } from '../src/daemon.js'
import { describeError, isRmeshError } from '../src/util/errors.js'

export interface DaemonFlags {
  dir: string
  listen?: string[]
  bootstrap?: string[]
  mdns?: boolean
  relayService?: 'on' | 'off'
  relays?: number
  announce?: string[]
  upnp?: boolean
  logLevel?: string
  name?: string
  slots?: number
  minFreeDiskMiB?: number
  testEngine?: boolean
  metricsPort?: number
  /** The node's own rules and pools from flags (cli/commands/node.ts, already checked). */
  rules?: ConfigInput
  web?: string
}

export async function runDaemon(
  flags: DaemonFlags,
  out: { log(s: string): void; error(s: string): void } = console,
): Promise<number> {
  let config: DaemonConfig
  try {
    const fromFlags: ConfigInput = {
      listen: flags.listen?.length ? flags.listen : undefined,
      bootstrap: flags.bootstrap?.length ? flags.bootstrap : undefined,
      mdns: flags.mdns === false ? false : undefined,
      relayService: flags.relayService,
      relays: flags.relays,
      announce: flags.announce?.length ? flags.announce : undefined,
      upnp: flags.upnp || undefined,
      logLevel: flags.logLevel as ConfigInput['logLevel'],
      name: flags.name,
      slots: flags.slots,
      minFreeDiskMiB: flags.minFreeDiskMiB,
      testEngine: flags.testEngine || undefined,
      metricsPort: flags.metricsPort,
      ...flags.rules,
      web: flags.web,
    }
    config = resolveConfig(flags.dir, fromFlags, configFromEnv(), await configFromFile(flags.dir))
  } catch (err) {
    out.error(`rmesh daemon: ${isRmeshError(err) ? err.message : describeError(err)}`)
    return 2
  }

  let daemon: Awaited<ReturnType<typeof startDaemon>>
  try {
    daemon = await startDaemon(config)
  } catch (err) {
    out.error(`rmesh daemon: ${isRmeshError(err) ? err.message : describeError(err)}`)
    return isRmeshError(err, 'ERR_DAEMON_RUNNING') ? 6 : 1
  }

  out.log(`rmesh daemon ${daemon.peerId}`)
  for (const a of daemon.libp2p.getMultiaddrs()) out.log(`  listening on ${a.toString()}`)
  out.log(`  control socket ${daemon.socketPath}`)
  if (!daemon.admission.token) {
    out.log('')
    out.log('This node is not admitted to a mesh yet, so it serves nobody. Either:')
    out.log(`  - on an admin node: rmesh token issue --peer ${daemon.peerId} --caps render,submit`)
    out.log('    (or rmesh token invite), then here: rmesh join <token or invite>')
    out.log('  - or create a new mesh here: rmesh init')
  }

  // A daemon outlives bugs in a peer's messages: log unexpected errors and keep serving.
  process.on('unhandledRejection', (reason) =>
    daemon.logger.error('unhandled rejection', { err: describeError(reason) }),
  )
  process.on('uncaughtException', (err) =>
    daemon.logger.error('uncaught exception', { err: describeError(err), stack: err.stack }),
  )

  return new Promise<number>((resolve) => {
    let stopping = false
    const stop = async (signal: string) => {
      if (stopping) {
        out.error('rmesh daemon: second signal, exiting now')
        process.exit(130)
      }
      stopping = true
      daemon.logger.info('signal received, stopping', { signal })
      try {
        await daemon.stop()
      } finally {
        resolve(0)
      }
    }
    process.on('SIGINT', () => void stop('SIGINT'))
    process.on('SIGTERM', () => void stop('SIGTERM'))
  })
}
