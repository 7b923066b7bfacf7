import { render } from 'ink-testing-library'
import { describe, expect, it } from 'vitest'
import { Dashboard } from '../../../cli/ui/App.js'
import { peerStateLabel } from '../../../cli/ui/node-state.js'
import { makeTheme, ThemeContext } from '../../../cli/ui/theme.js'
import { createFakeClient, node, peer } from './fake-client.js'

const tick = (ms = 10) => new Promise((r) => setTimeout(r, ms))
async function until(frame: () => string | undefined, re: RegExp, ms = 1500): Promise<string> {
  const end = Date.now() + ms
  for (;;) {
    const f = frame() ?? ''
    if (re.test(f)) return f
    if (Date.now() > end) throw new Error(`screen never matched ${re}:\n${f}`)
    await tick()
  }
}

const P = (n: number) => `12D3KooWP${String(n).repeat(43)}`

describe('dashboard: node state from the rules', () => {
  it('labels: the owner’s rules first, then busy or idle, and gone over all', () => {
    expect(peerStateLabel({ state: 'busy', rules: { state: 'draining' } }).label).toBe('draining')
    expect(peerStateLabel({ state: 'paused', rules: { state: 'off-schedule' } }).label).toBe(
      'sched-off',
    )
    expect(peerStateLabel({ state: 'paused', rules: { state: 'idle-wait' } }).label).toBe(
      'idle-wait',
    )
    expect(peerStateLabel({ state: 'paused' }).label).toBe('paused') // disk nearly full
    expect(peerStateLabel({ state: 'busy', rules: { state: 'active' } }).label).toBe('busy')
    expect(peerStateLabel({ state: 'gone', rules: { state: 'paused' } }).label).toBe('gone')
  })

  it('shows each peer’s state and this node’s own, live', async () => {
    const client = createFakeClient({
      node: node({ rules: { state: 'active', limits: {} } }),
      peers: [
        peer({
          peerId: P(1),
          name: 'n-paused',
          state: 'paused',
          rules: { state: 'paused' },
          work: [],
        }),
        peer({ peerId: P(2), name: 'n-drain', state: 'busy', rules: { state: 'draining' } }),
        peer({
          peerId: P(3),
          name: 'n-sched',
          state: 'paused',
          rules: { state: 'off-schedule', schedule: 'mon-fri 19:00-08:00' },
          work: [],
        }),
      ],
    })
    const app = render(
      <ThemeContext.Provider value={makeTheme(false)}>
        <Dashboard client={client} cwd="/tmp" reconnectMs={20} />
      </ThemeContext.Provider>,
    )
    const f = await until(app.lastFrame, /n-sched/)
    expect(f).toMatch(/n-paused.*paused/)
    expect(f).toMatch(/n-drain.*draining/)
    expect(f).toMatch(/n-sched.*sched-off/)
    // Presence changes them live: the user came back to one; another resumed and renders.
    client.emit({
      type: 'presence',
      peer: peer({
        peerId: P(1),
        name: 'n-paused',
        state: 'paused',
        rules: { state: 'idle-wait' },
        work: [],
      }),
    })
    client.emit({ type: 'presence', peer: peer({ peerId: P(2), name: 'n-drain', state: 'busy' }) })
    const g = await until(app.lastFrame, /n-paused.*idle-wait/)
    expect(g).toMatch(/n-drain.*busy/)
    client.emit({ type: 'node-rules', rules: { state: 'paused', pause: 'now', limits: {} } })
    await until(app.lastFrame, /\[paused\]/)
    app.unmount()
  })
})
