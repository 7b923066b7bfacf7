import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { render } from 'ink-testing-library'
import { afterAll, describe, expect, it } from 'vitest'
import { Dashboard, layout } from '../../../cli/ui/App.js'
import { sparkline } from '../../../cli/ui/components.js'
import { addThroughput, BUCKET_MS, initialState, reduce } from '../../../cli/ui/state.js'
import { makeTheme, ThemeContext } from '../../../cli/ui/theme.js'
import { createFakeClient, detail, node, PEER_B, peer, summary } from './fake-client.js'

const dir = mkdtempSync(join(tmpdir(), 'rmesh-ui-'))
writeFileSync(join(dir, 'scene01.blend'), 'x')
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const tick = (ms = 30) => new Promise((r) => setTimeout(r, ms))
async function until(frame: () => string | undefined, re: RegExp, ms = 1000): Promise<string> {
  const end = Date.now() + ms
  for (;;) {
    const f = frame() ?? ''
    if (re.test(f)) return f
    if (Date.now() > end) throw new Error(`screen never matched ${re}:\n${f}`)
    await tick(10)
  }
}

function mount(client = createFakeClient()) {
  const app = render(
    <ThemeContext.Provider value={makeTheme(false)}>
      <Dashboard client={client} cwd={dir} reconnectMs={20} />
    </ThemeContext.Provider>,
  )
  return { app, client }
}

describe('dashboard', () => {
  it('shows peers, jobs and the selected job frames from the snapshot', async () => {
    const { app } = mount()
    const f = await until(app.lastFrame, /█·|██◐✗/)
    expect(f).toContain('render-02')
    expect(f).toContain('shot#3 50%')
    expect(f).toMatch(/shot\s+rendering/)
    expect(f).toContain('2/4')
    expect(f).toContain('██◐✗')
    app.unmount()
  })
  it('applies pushed events at once', async () => {
    const { app, client } = mount()
    await until(app.lastFrame, /██◐✗/)
    client.emit({ type: 'job-updated', job: summary({ framesDone: 3, framesRendering: 0 }) })
    client.emit({
      type: 'frame-updated',
      jobId: 'job111111',
      frame: { frame: 3, state: 'done', node: PEER_B, attempts: 1 },
    })
    client.emit({ type: 'peer-down', peerId: PEER_B })
    const f = await until(app.lastFrame, /3\/4/, 1000)
    expect(f).toContain('███✗')
    expect(f).toMatch(/render-02.*gone/)
    app.unmount()
  })
  it('keys: p pauses, c cancels, r retries, + raises priority, l tails the frame log, ? help', async () => {
    const { app, client } = mount()
    await until(app.lastFrame, /██◐✗/)
    app.stdin.write('p')
    await until(app.lastFrame, /shot is paused/)
    expect(client.calls.some((c) => c.method === 'pause')).toBe(true)
    app.stdin.write('c')
    await until(app.lastFrame, /canceled shot/)
    app.stdin.write('r')
    await until(app.lastFrame, /reopened 4/)
    app.stdin.write('+')
    await until(app.lastFrame, /priority 60/)
    app.stdin.write('\u001B[C')
    app.stdin.write('\u001B[C')
    app.stdin.write('l')
    const f = await until(app.lastFrame, /Sample 8\/16/)
    expect(f).toContain('Log of frame 3')
    expect(client.calls.find((c) => c.method === 'followLogs')?.args).toEqual([
      'job111111',
      { frame: 3, tail: 200 },
    ])
    app.stdin.write('?')
    await until(app.lastFrame, /Keys/)
    app.unmount()
  })
  it('n opens the submit form: completes the path, prefills frames, validates, submits', async () => {
    const { app, client } = mount()
    await until(app.lastFrame, /2\/4/)
    app.stdin.write('n')
    await until(app.lastFrame, /New job/)
    app.stdin.write('sce')
    await tick()
    app.stdin.write('\t')
    await until(app.lastFrame, /scene01\.blend/)
    app.stdin.write('\r')
    await until(app.lastFrame, /Frames\s+1-24/)
    // Break the range to see the CLI's validation, then fix it.
    app.stdin.write('\u001B[A')
    await tick()
    app.stdin.write('\r')
    await tick()
    app.stdin.write('\u007F\u007F\u007F\u007F')
    await tick()
    app.stdin.write('9-2')
    await tick()
    for (let i = 0; i < 6; i++) {
      app.stdin.write('\u001B[B')
      await tick(5)
    }
    app.stdin.write('\r')
    await until(app.lastFrame, /inverted/)
    expect(client.calls.some((c) => c.method === 'submit')).toBe(false)
    for (let i = 0; i < 6; i++) {
      app.stdin.write('\u001B[A')
      await tick(5)
    }
    app.stdin.write('\u007F\u007F\u007F')
    await tick()
    app.stdin.write('1-9')
    await tick()
    for (let i = 0; i < 6; i++) {
      app.stdin.write('\u001B[B')
      await tick(5)
    }
    app.stdin.write('\r')
    const f = await until(app.lastFrame, /submitted new/)
    expect(f).toMatch(/new\s+queued/)
    expect(client.calls.find((c) => c.method === 'submit')?.args[0]).toMatchObject({
      scenePath: join(dir, 'scene01.blend'),
      frames: '1-9',
      chunk: 1,
      priority: 50,
    })
    app.unmount()
  })
  it('fits 80×24 and shows a disconnected daemon', async () => {
    const client = createFakeClient({
      peers: Array.from({ length: 12 }, (_, i) => peer({ peerId: `p${i}`, name: `node-${i}` })),
    })
    client.on('node', () => {
      throw new Error('daemon gone')
    })
    const { app } = mount(client)
    const f = await until(app.lastFrame, /daemon gone/)
    expect(f.split('\n').length).toBeLessThan(24)
    for (const line of f.split('\n')) expect(line.length).toBeLessThanOrEqual(100)
    app.unmount()
  })
})

describe('dashboard model', () => {
  it('counts throughput from framesDone increases only', () => {
    let s = initialState(0)
    s = reduce(s, { type: 'snapshot', node: node(), peers: [], jobs: [summary()], now: 0 })
    s = reduce(s, {
      type: 'event',
      event: { type: 'job-updated', job: summary({ framesDone: 4 }), seq: 2, time: 0 },
      now: 1,
    })
    s = reduce(s, {
      type: 'event',
      event: { type: 'job-updated', job: summary({ framesDone: 4 }), seq: 3, time: 0 },
      now: 2,
    })
    expect(s.throughput.counts.at(-1)).toBe(2)
    s = reduce(s, { type: 'tick', now: BUCKET_MS * 3 })
    expect(s.throughput.counts.slice(-4)).toEqual([2, 0, 0, 0])
    expect(addThroughput(s.throughput, BUCKET_MS * 1000, 1).counts.reduce((a, b) => a + b)).toBe(1)
  })
  it('keeps frames of the selected job only', () => {
    let s = reduce(initialState(0), { type: 'detail', job: detail() })
    s = reduce(s, {
      type: 'event',
      event: {
        type: 'frame-updated',
        jobId: 'other',
        frame: { frame: 1, state: 'failed', node: null, attempts: 1 },
        seq: 1,
        time: 0,
      },
      now: 0,
    })
    expect(s.detail?.frames[0].state).toBe('done')
    s = reduce(s, {
      type: 'event',
      event: { type: 'job-removed', jobId: 'job111111', seq: 2, time: 0 },
      now: 0,
    })
    expect(s.detail).toBeUndefined()
  })
  it('layout stays within the terminal', () => {
    for (const rows of [24, 30, 50]) {
      const l = layout(rows, 20, 20, true)
      expect(
        1 + l.peersRows + 1 + l.jobsRows + 1 + l.gridRows + 2 + l.logRows + 1 + 3,
      ).toBeLessThan(rows)
    }
    expect(sparkline([0, 1, 8])).toBe(' ▁█')
  })
})
