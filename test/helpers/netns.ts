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
    execFileSync('ip', ['netns', 'add', `rmesh-probe-${process.pid}`], { stdio: 'ignore' })
    execFileSync('ip', ['netns', 'del', `rmesh-probe-${process.pid}`], { stdio: 'ignore' })
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

/**
 * Beyond one LAN: an "internet" bridge (in a namespace of its own) with the office on it,
 * and two sites, each a router namespace (its LAN bridge inside, MASQUERADE out, unsolicited
 * inbound dropped, no port forwarding) with `perSite` nodes behind it. The "public"
 * addresses (11.77.0.0/24) are public to libp2p's eyes but exist only inside these
 * namespaces: no namespace has a route out of the lab.
 */
export interface WanLab {
  office: { ns: string; addr: string }
  routers: { ns: string; wan: string; lan: string }[]
  /** sites[s][i]: node i of site s. */
  sites: { ns: string; addr: string }[][]
  /** Forward TCP `port` on site `s`'s router to node `i` (what an admin opens at home). */
  forward(s: number, i: number, port: number): void
  /**
   * A laptop: a namespace of its own, first on the internet bridge like the office (a
   * public address), that `move` unplugs and plugs in elsewhere.
   */
  laptop: { ns: string; addr: string }
  /**
   * Unplug the laptop and plug it in on site `to`'s LAN (behind its NAT) or back on the
   * internet bridge ('office'), with a new address; returns it. Its old address is gone.
   */
  move(to: number | 'office'): string
  destroy(): void
}

export const WAN_PUBLIC_SUBNET = '11.77.0'

export function wanUnavailableReason(): string | undefined {
  const r = netnsUnavailableReason()
  if (r) return r
  try {
    execFileSync('iptables', ['--version'], { stdio: 'ignore' })
  } catch {
    return 'iptables is not installed (apt-get install iptables)'
  }
  try {
    ip('netns', 'add', `rmesh-ipt-probe-${process.pid}`)
    execFileSync(
      'ip',
      [
        'netns',
        'exec',
        `rmesh-ipt-probe-${process.pid}`,
        'iptables',
        '-t',
        'nat',
        '-A',
        'POSTROUTING',
        '-j',
        'MASQUERADE',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    )
  } catch (err) {
    return `iptables NAT is not usable in a namespace here (${(err as Error).message.split('\n')[0]})`
  } finally {
    try {
      ip('netns', 'del', `rmesh-ipt-probe-${process.pid}`)
    } catch {}
  }
  return undefined
}

const inNs = (ns: string, ...cmd: string[]) =>
  execFileSync('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'ignore', 'pipe'] })

function veth(a: { ns: string; dev: string }, b: { ns: string; dev: string }): void {
  ip('-n', a.ns, 'link', 'add', a.dev, 'type', 'veth', 'peer', 'name', b.dev, 'netns', b.ns)
  ip('-n', a.ns, 'link', 'set', a.dev, 'up')
  ip('-n', b.ns, 'link', 'set', b.dev, 'up')
}

export function createWanLab(prefix: string, perSite = 2): WanLab {
  const inet = `${prefix}-net`
  const office = { ns: `${prefix}-of`, addr: `${WAN_PUBLIC_SUBNET}.10` }
  const routers = [0, 1].map((s) => ({
    ns: `${prefix}-r${s}`,
    wan: `${WAN_PUBLIC_SUBNET}.${s + 1}`,
    lan: `10.${s + 1}.0.1`,
  }))
  const sites = [0, 1].map((s) =>
    Array.from({ length: perSite }, (_, i) => ({
      ns: `${prefix}-s${s}n${i}`,
      addr: `10.${s + 1}.0.${11 + i}`,
    })),
  )
  const laptop = { ns: `${prefix}-lap`, addr: `${WAN_PUBLIC_SUBNET}.20` }
  const all = [
    inet,
    office.ns,
    laptop.ns,
    ...routers.map((r) => r.ns),
    ...sites.flat().map((n) => n.ns),
  ]
  const destroy = () => {
    for (const n of all) {
      try {
        ip('netns', 'del', n)
      } catch {}
    }
  }
  destroy()
  try {
    for (const n of all) {
      ip('netns', 'add', n)
      ip('-n', n, 'link', 'set', 'lo', 'up')
    }
    ip('-n', inet, 'link', 'add', 'br0', 'type', 'bridge')
    ip('-n', inet, 'link', 'set', 'br0', 'up')
    const onInternet = (ns: string, addr: string, port: string) => {
      veth({ ns: inet, dev: port }, { ns, dev: 'wan0' })
      ip('-n', inet, 'link', 'set', port, 'master', 'br0')
      ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'wan0')
    }
    onInternet(office.ns, office.addr, 'pof')
    onInternet(laptop.ns, laptop.addr, 'plap')
    routers.forEach((r, s) => {
      onInternet(r.ns, r.wan, `pr${s}`)
      ip('-n', r.ns, 'link', 'add', 'lan0', 'type', 'bridge')
      ip('-n', r.ns, 'link', 'set', 'lan0', 'up')
      ip('-n', r.ns, 'addr', 'add', `${r.lan}/24`, 'dev', 'lan0')
      inNs(r.ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1')
      inNs(r.ns, 'iptables', '-t', 'nat', '-A', 'POSTROUTING', '-o', 'wan0', '-j', 'MASQUERADE')
      // A home router: replies come in, nothing unsolicited does.
      inNs(
        r.ns,
        'iptables',
        '-A',
        'FORWARD',
        '-i',
        'wan0',
        '-m',
        'conntrack',
        '--ctstate',
        'ESTABLISHED,RELATED',
        '-j',
        'ACCEPT',
      )
      inNs(r.ns, 'iptables', '-A', 'FORWARD', '-i', 'wan0', '-j', 'DROP')
      sites[s].forEach((n, i) => {
        veth({ ns: r.ns, dev: `h${i}` }, { ns: n.ns, dev: 'eth0' })
        ip('-n', r.ns, 'link', 'set', `h${i}`, 'master', 'lan0')
        ip('-n', n.ns, 'addr', 'add', `${n.addr}/24`, 'dev', 'eth0')
        ip('-n', n.ns, 'route', 'add', 'default', 'via', r.lan)
      })
    })
  } catch (err) {
    destroy()
    throw err
  }
  let moves = 0
  return {
    office,
    routers,
    sites,
    laptop,
    move(to) {
      // Unplugging deletes the veth pair: the old address and every socket's route go with it.
      ip('-n', laptop.ns, 'link', 'del', 'wan0')
      moves++
      if (to === 'office') {
        laptop.addr = `${WAN_PUBLIC_SUBNET}.${20 + moves}`
        veth({ ns: inet, dev: `plap${moves}` }, { ns: laptop.ns, dev: 'wan0' })
        ip('-n', inet, 'link', 'set', `plap${moves}`, 'master', 'br0')
      } else {
        const r = routers[to]
        laptop.addr = `10.${to + 1}.0.${50 + moves}`
        veth({ ns: r.ns, dev: `lap${moves}` }, { ns: laptop.ns, dev: 'wan0' })
        ip('-n', r.ns, 'link', 'set', `lap${moves}`, 'master', 'lan0')
      }
      ip('-n', laptop.ns, 'addr', 'add', `${laptop.addr}/24`, 'dev', 'wan0')
      if (to !== 'office') ip('-n', laptop.ns, 'route', 'add', 'default', 'via', routers[to].lan)
      return laptop.addr
    },
    forward(s, i, port) {
      const r = routers[s]
      const to = `${sites[s][i].addr}:${port}`
      inNs(
        r.ns,
        'iptables',
        '-t',
        'nat',
        '-A',
        'PREROUTING',
        '-i',
        'wan0',
        '-p',
        'tcp',
        '--dport',
        String(port),
        '-j',
        'DNAT',
        '--to-destination',
        to,
      )
      inNs(
        r.ns,
        'iptables',
        '-I',
        'FORWARD',
        '1',
        '-i',
        'wan0',
        '-p',
        'tcp',
        '-d',
        sites[s][i].addr,
        '--dport',
        String(port),
        '-j',
        'ACCEPT',
      )
    },
    destroy,
  }
}
