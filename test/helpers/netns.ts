/**
 * Test-only network namespaces: N hosts on a private bridge that lives in its own
 * namespace, so nothing touches the machine's real interfaces. mDNS multicast stays
 * inside. Needs root and iproute2; `netnsUnavailableReason()` says why not otherwise.
 */
import { execFileSync } from 'node:child_process'

export interface NetnsLab {
  names: string[]
  addrs: string[]
  destroy(): void
}

export function netnsUnavailableReason(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux'
  if (process.getuid?.() !== 0) return 'creating network namespaces needs root'
  try {
    execFileSync('ip', ['netns', 'add', 'rmesh-probe'], { stdio: 'ignore' })
    execFileSync('ip', ['netns', 'del', 'rmesh-probe'], { stdio: 'ignore' })
  } catch (err) {
    return `ip netns is not usable here (${(err as Error).message.split('\n')[0]})`
  }
  return undefined
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] })

/** Creates `count` namespaces on a bridge, with addresses 10.231.<subnet>.<i+1>/24. */
export function createNetnsLab(prefix: string, count: number, subnet = 77): NetnsLab {
  const bridgeNs = `${prefix}-br`
  const names = Array.from({ length: count }, (_, i) => `${prefix}-${i + 1}`)
  const addrs = names.map((_, i) => `10.231.${subnet}.${i + 1}`)
  const destroy = () => {
    for (const n of [...names, bridgeNs]) {
      try {
        ip('netns', 'del', n)
      } catch {}
    }
  }
  destroy()
  try {
    ip('netns', 'add', bridgeNs)
    ip('-n', bridgeNs, 'link', 'add', 'br0', 'type', 'bridge')
    ip('-n', bridgeNs, 'link', 'set', 'br0', 'up')
    names.forEach((ns, i) => {
      ip('netns', 'add', ns)
      ip(
        '-n',
        bridgeNs,
        'link',
        'add',
        `v${i + 1}`,
        'type',
        'veth',
        'peer',
        'name',
        'eth0',
        'netns',
        ns,
      )
      ip('-n', bridgeNs, 'link', 'set', `v${i + 1}`, 'master', 'br0')
      ip('-n', bridgeNs, 'link', 'set', `v${i + 1}`, 'up')
      ip('-n', ns, 'addr', 'add', `${addrs[i]}/24`, 'dev', 'eth0')
      ip('-n', ns, 'link', 'set', 'eth0', 'up')
      ip('-n', ns, 'link', 'set', 'lo', 'up')
      // mDNS multicasts to 224.0.0.251: route multicast out of the lab's interface.
      ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0')
    })
  } catch (err) {
    destroy()
    throw err
  }
  return { names, addrs, destroy }
}
