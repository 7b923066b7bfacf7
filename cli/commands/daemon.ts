/**
 * `rmesh daemon`: run this machine's node of the mesh in the foreground. The daemon (libp2p,
 * LevelDB, engines) is imported only when it runs, so every other command starts fast.
 */
import { type Command, Option } from 'commander'
import type { CliContext } from '../context.js'
import { action } from '../command.js'
import { parseInteger } from '../validate.js'
import { addNodeRuleFlags, type NodeRuleFlags, nodeRuleConfig } from './node.js'

const collect = (value: string, previous: string[] = []) => [...previous, value]

export function register(program: Command, ctx: CliContext): void {
  const cmd = program.command('daemon')
  addNodeRuleFlags(cmd)
  cmd
    .description("run this machine's rmesh node (foreground; stop with Ctrl-C)")
    .option(
      '--listen <multiaddr>',
      'address to listen on, repeatable (default /ip4/0.0.0.0/tcp/4777; env RMESH_LISTEN)',
      collect,
    )
    .option(
      '--bootstrap <multiaddr>',
      'peer to dial at start, repeatable (env RMESH_BOOTSTRAP)',
      collect,
    )
    .option('--no-mdns', 'do not discover peers on the LAN with mDNS (env RMESH_MDNS=0)')
    .option(
      '--relay-service',
      'serve as a relay for members behind NAT (default: only when AutoNAT finds this node public; env RMESH_RELAY_SERVICE=on|off|auto)',
    )
    .option('--no-relay-service', 'never serve as a relay')
    .option(
      '--relays <n>',
      'relays to keep a reservation on while this node is behind NAT (default 2; 0 = none; env RMESH_RELAYS)',
    )
    .option(
      '--announce <multiaddr>',
      'address to announce instead of the listen addresses, repeatable (e.g. the public IP the office router forwards; env RMESH_ANNOUNCE)',
      collect,
    )
    .option(
      '--upnp',
      'ask the router to forward the listen port (UPnP / NAT-PMP; env RMESH_UPNP=1)',
    )
    .option('--log-level <level>', 'debug, info, warn or error (env RMESH_LOG_LEVEL)')
    .option('--name <name>', 'name shown to other nodes (default: host name; env RMESH_NAME)')
    .option(
      '--slots <n>',
      'renders this node runs at once (default 1; 0 = never render; env RMESH_SLOTS)',
    )
    .option(
      '--min-free-disk <MiB>',
      'take no new renders while the data disk has less free space (default 256; 0 = no check; env RMESH_MIN_FREE_DISK_MIB)',
    )
    .option(
      '--web <addr:port>',
      'serve the web UI here (default 127.0.0.1:4778; off = none; beyond 127.0.0.1/::1 it needs a login: rmesh web; env RMESH_WEB)',
    )
    .addOption(
      new Option('--test-engine', 'enable the test engine (tests and benchmarks)').hideHelp(),
    )
    .addHelpText(
      'after',
      `
Every option can also be set in <dir>/config.json (e.g. {"bootstrap": ["/ip4/10.0.0.5/tcp/4777/p2p/12D3…"]}).
Flags win over RMESH_* variables, which win over the config file.

Examples:
  rmesh daemon                                   # LAN: peers are found with mDNS
  rmesh daemon --bootstrap /ip4/10.0.0.5/tcp/4777/p2p/12D3KooW…
  rmesh --dir /tmp/n1 daemon --listen /ip4/127.0.0.1/tcp/0 --no-mdns
  rmesh daemon --schedule "mon-fri 19:00-08:00, sat-sun all" --threads 8 --nice 10 --tags gpu
  rmesh daemon --idle-only 10 --max-render-memory 8192   # a workstation lending its nights
  rmesh daemon --relay-service --announce /ip4/203.0.113.7/tcp/4777   # the office node`,
    )
    .action(
      action(
        async (
          opts: NodeRuleFlags & {
            listen?: string[]
            bootstrap?: string[]
            mdns: boolean
            relayService?: boolean
            relays?: string
            announce?: string[]
            upnp?: boolean
            logLevel?: string
            name?: string
            slots?: string
            minFreeDisk?: string
            testEngine?: boolean
            metricsPort?: string
            web?: string
          },
        ) => {
          const optionalInteger = (
            value: string | undefined,
            flag: string,
            min: number,
            max: number,
          ) => (value === undefined ? undefined : parseInteger(value, flag, min, max))
          const slots = optionalInteger(opts.slots, '--slots', 0, 64)
          const minFreeDiskMiB = optionalInteger(opts.minFreeDisk, '--min-free-disk', 0, 1 << 30)
          const metricsPort = optionalInteger(opts.metricsPort, '--metrics-port', 1, 65_535)
          const relays = optionalInteger(opts.relays, '--relays', 0, 4)
          const rules = nodeRuleConfig(opts)
          const { runDaemon } = await import('../daemon-run.js')
          return runDaemon(
            {
              dir: ctx.dataDir,
              listen: opts.listen,
              bootstrap: opts.bootstrap,
              mdns: opts.mdns,
              relayService:
                opts.relayService === undefined ? undefined : opts.relayService ? 'on' : 'off',
              relays,
              announce: opts.announce,
              upnp: opts.upnp,
              logLevel: opts.logLevel,
              name: opts.name,
              slots,
              minFreeDiskMiB,
              testEngine: opts.testEngine,
              metricsPort,
              rules,
              web: opts.web,
            },
            { log: (s) => ctx.print(s), error: (s) => ctx.warn(s) },
          )
        },
      ),
    )
}
