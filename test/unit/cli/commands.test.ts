import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createApiClient } from '../../../src/api/client.js'
import { createFakeClient, detail, PEER_A, PEER_B, summary } from '../ui/fake-client.js'
import { run } from './helpers.js'

const dir = mkdtempSync(join(tmpdir(), 'rmesh-cli-'))
const scene = join(dir, 'shot.blend')
writeFileSync(scene, 'BLENDER')
writeFileSync(join(dir, 'notes.txt'), 'x')
mkdirSync(join(dir, 'folder.blend'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('--dir and the daemon socket', () => {
  it('uses --dir before or after the command', async () => {
    const client = createFakeClient()
    const a = await run(['--dir', '/d1', 'peers', '--json'], { client })
    const b = await run(['peers', '--json', '--dir', '/d1'], { client })
    expect(a.code).toBe(0)
    expect(b.code).toBe(0)
    expect(a.socketPaths).toEqual(['/d1/rmesh.sock'])
    expect(b.socketPaths).toEqual(['/d1/rmesh.sock'])
    expect(JSON.parse(a.out)[0].peerId).toBe(PEER_B)
  })
  it('falls back to RMESH_DIR, then XDG_DATA_HOME', async () => {
    const client = createFakeClient()
    expect((await run(['status'], { client, env: { RMESH_DIR: '/r' } })).socketPaths).toEqual([
      '/r/rmesh.sock',
    ])
    expect((await run(['status'], { client, env: { XDG_DATA_HOME: '/x' } })).socketPaths).toEqual([
      '/x/rmesh/rmesh.sock',
    ])
  })
  it('status with no daemon says how to start one, exit 3', async () => {
    const r = await run(['status', '--dir', dir], {
      createClient: (socketPath) => createApiClient({ socketPath }),
    })
    expect(r.code).toBe(3)
    expect(r.err).toContain(`rmesh daemon --dir ${dir}`)
  })
  it('--json errors are also JSON on stdout', async () => {
    const r = await run(['peers', '--json', '--dir', dir], {
      createClient: (socketPath) => createApiClient({ socketPath }),
    })
    expect(r.code).toBe(3)
    expect(JSON.parse(r.out).error.code).toBe('ERR_DAEMON_NOT_RUNNING')
  })
})

describe('usage errors exit 2 before calling the daemon', () => {
  const cases: [string, string[], RegExp][] = [
    ['unknown flag', ['jobs', '--bogus'], /unknown option/],
    ['unknown command', ['frobnicate'], /unknown command/],
    ['missing scene', ['submit', join(dir, 'nope.blend')], /scene file not found/],
    ['wrong extension', ['submit', join(dir, 'notes.txt')], /not a scene rmesh can render/],
    ['folder', ['submit', join(dir, 'folder.blend')], /is not a file/],
    ['empty range', ['submit', scene, '--frames', ''], /empty/],
    ['inverted range', ['submit', scene, '--frames', '20-10'], /inverted/],
    ['garbage range', ['submit', scene, '--frames', 'abc'], /not a whole frame/],
    ['bad chunk', ['submit', scene, '--chunk', '0'], /--chunk must be/],
    ['bad format', ['submit', scene, '--format', 'gif'], /--format must be one of/],
    ['bad video', ['submit', scene, '--video', 'mpeg2'], /--video must be one of/],
    ['bad priority', ['submit', scene, '--priority', '101'], /--priority must be/],
    ['bad require', ['submit', scene, '--require', 'blender>>3'], /not a requirement/],
    ['missing job', ['status', 'x'], /not a job id/],
    ['bad job priority', ['priority', 'job111111', 'high'], /priority must be/],
    ['bad retry frames', ['retry', 'job111111', '--frames', '5-1'], /inverted/],
    [
      'bad unblock node',
      ['retry', 'job111111', '--unblock', 'no/pe'],
      /--unblock: .* not a peer id/,
    ],
    [
      'unblock and frames',
      ['retry', 'job111111', '--unblock', '--frames', '4'],
      /--frames or --unblock, not both/,
    ],
    ['bad pause job', ['pause', 'x'], /not a job id/],
    ['missing resume job', ['resume'], /missing required argument/],
    ['bad after', ['submit', scene, '--after', 'Job1!'], /--after: "job1!" is not a job id/],
    [
      'too many after',
      [
        'submit',
        scene,
        '--after',
        Array.from({ length: 17 }, (_, i) => `abcdef${'abcdefghijklmnopq'[i]}a`).join(','),
      ],
      /at most 16/,
    ],
    ['bad log frame', ['logs', 'job111111', '--frame', '-1'], /--frame must be/],
    ['token without peer', ['token', 'issue'], /required option/],
    ['token bad peer', ['token', 'issue', '--peer', 'bob'], /not a peer id/],
    [
      'token bad caps',
      ['token', 'issue', '--peer', PEER_B, '--caps', 'root'],
      /unknown capability/,
    ],
    ['token bad expiry', ['token', 'invite', '--expires', 'soon'], /duration/],
    ['join garbage', ['join', 'two words'], /not a token or an invite/],
    ['missing argument', ['cancel'], /missing required argument/],
    ['daemon bad min-free-disk', ['daemon', '--min-free-disk', 'lots'], /--min-free-disk must be/],
    [
      'daemon negative min-free-disk',
      ['daemon', '--min-free-disk', '-5'],
      /--min-free-disk must be/,
    ],
    ['daemon bad slots', ['daemon', '--slots', '1.5'], /--slots must be/],
    ['daemon bad relays', ['daemon', '--relays', '9'], /--relays must be/],
  ]
  for (const [name, argv, re] of cases) {
    it(name, async () => {
      const client = createFakeClient()
      const r = await run(argv, { client, cwd: dir })
      expect(r.code).toBe(2)
      expect(r.err).toMatch(re)
      expect(client.calls.filter((c) => c.method !== 'job')).toEqual([])
    })
  }
  it('dashboard refuses a non-terminal', async () => {
    const r = await run(['dashboard'], { client: createFakeClient() })
    expect(r.code).toBe(2)
    expect(r.err).toMatch(/needs a terminal/)
  })
})

describe('commands against a fake daemon', () => {
  it('--help has examples and exit codes', async () => {
    const r = await run(['submit', '--help'], { client: createFakeClient() })
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/Examples:/)
    const top = await run(['--help'], { client: createFakeClient() })
    expect(top.out).toMatch(/Exit codes:/)
  })
  it('status prints node info; --json has peerId and addresses', async () => {
    const client = createFakeClient()
    const r = await run(['status', '--json'], { client })
    const j = JSON.parse(r.out)
    expect(j.peerId).toMatch(/^12D3KooW/)
    expect(j.addresses[0]).toMatch(/\/p2p\/12D3KooW/)
    const h = await run(['status'], { client })
    expect(h.out).toContain('ws-01')
  })
  it('status JOB --json has frames with frame, state, node, attempts', async () => {
    const r = await run(['status', 'job111111', '--json'], { client: createFakeClient() })
    const j = JSON.parse(r.out)
    expect(j).toMatchObject({ jobId: 'job111111', state: 'rendering' })
    expect(j.frames[3]).toMatchObject({ frame: 4, state: 'failed', attempts: 2 })
    const h = await run(['status', 'job111111', '--no-color'], { client: createFakeClient() })
    expect(h.out).toMatch(/FRAME\s+STATE\s+NODE\s+ATTEMPTS\s+TIME/)
    expect(h.out).toMatch(/4\s+failed/)
    // The error says which node it happened on.
    expect(h.out).toMatch(new RegExp(`${PEER_A.slice(-8)}: boom`))
  })
  it('status JOB shows the blocked nodes, the failures that blocked them, and how to unblock', async () => {
    const blocked = [
      {
        node: PEER_A,
        failures: [1, 2, 3].map((attempt) => ({
          chunk: 3,
          frames: [4],
          attempt,
          reason: 'out of memory',
        })),
      },
    ]
    const client = createFakeClient({ jobs: [detail({ blocklist: [PEER_A], blocked })] })
    const h = await run(['status', 'job111111', '--no-color'], { client })
    expect(h.out).toContain('blocked    1 node(s) may not take this job:')
    expect(h.out).toContain(`${PEER_A} after 3 failure(s):`)
    expect(h.out).toContain('chunk 3 (frame 4) attempt 3: out of memory')
    expect(h.out).toContain('rmesh retry job111111 --unblock [NODE]')
    const j = await run(['status', 'job111111', '--json'], { client })
    expect(JSON.parse(j.out).blocked).toEqual(blocked)
  })
  it('unknown job → exit 4', async () => {
    const r = await run(['status', 'nojob999'], { client: createFakeClient() })
    expect(r.code).toBe(4)
  })
  it('jobs --json is an array with the documented fields', async () => {
    const r = await run(['jobs', '--json'], { client: createFakeClient() })
    expect(JSON.parse(r.out)[0]).toMatchObject({
      jobId: 'job111111',
      name: 'shot',
      state: 'rendering',
      framesDone: 2,
      framesTotal: 4,
    })
  })
  it('submit --detach --json prints the jobId and sends a checked request', async () => {
    const client = createFakeClient()
    const r = await run(
      [
        'submit',
        'shot.blend',
        '--frames',
        '1-10, 20',
        '--chunk',
        '2',
        '--video',
        'h264',
        '--require',
        'blender>=3.4',
        '--after',
        'abcdefgh, bcdefg',
        '--detach',
        '--json',
      ],
      { client, cwd: dir },
    )
    expect(r.code).toBe(0)
    expect(JSON.parse(r.out).jobId).toBe('job222222')
    expect(client.calls[0].args[0]).toEqual({
      scenePath: scene,
      frames: '1-10,20',
      chunk: 2,
      video: 'h264',
      require: ['blender>=3.4'],
      after: ['abcdefgh', 'bcdefg'],
    })
  })
  it('submit follows the job to the end: exit 0 when every output is on disk', async () => {
    const out = join(dir, 'out1')
    mkdirSync(out, { recursive: true })
    const files = [1, 2].map((f) => join(out, `f${f}.png`))
    for (const f of files) writeFileSync(f, 'png')
    const done = detail({
      jobId: 'job222222',
      state: 'done',
      framesDone: 2,
      framesTotal: 2,
      localComplete: true,
      outDir: out,
      frames: files.map((p, i) => ({
        frame: i + 1,
        state: 'done',
        node: PEER_B,
        attempts: 1,
        outputs: [p],
      })),
    })
    const client = createFakeClient({
      jobs: [{ ...done, state: 'rendering', localComplete: false, framesDone: 0 }],
    })
    client.on('job', () => ({ ...done, state: 'rendering', localComplete: false, framesDone: 0 }))
    setTimeout(() => {
      client.on('job', () => done)
      client.emit({ type: 'job-updated', job: summary({ ...done }) })
    }, 20)
    const r = await run(['submit', scene], { client })
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/done: 2 frames/)
  })
  it('submit exits 1 with the reason when the job fails, and when outputs are missing', async () => {
    const client = createFakeClient({ jobs: [detail({ jobId: 'job222222' })] })
    setTimeout(
      () =>
        client.emit({
          type: 'job-updated',
          job: summary({
            jobId: 'job222222',
            state: 'failed',
            reason: 'frame 4 failed on 3 nodes',
          }),
        }),
      20,
    )
    const r = await run(['submit', scene], { client })
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/failed: frame 4 failed on 3 nodes/)

    const c2 = createFakeClient({
      jobs: [detail({ jobId: 'job222222', state: 'done', localComplete: true, outDir: dir })],
    })
    const r2 = await run(['submit', scene], { client: c2 })
    expect(r2.code).toBe(1)
    expect(r2.err).toMatch(/not in .*rmesh fetch/)
  })
  it('Ctrl-C without a terminal leaves the job running (exit 130)', async () => {
    const client = createFakeClient({ jobs: [detail({ jobId: 'job222222' })] })
    const r = await run(['submit', scene], { client, interrupt: (fire) => setTimeout(fire, 20) })
    expect(r.code).toBe(130)
    expect(r.err).toMatch(/left .* rendering/)
    expect(client.calls.some((c) => c.method === 'cancel')).toBe(false)
  })
  it('cancel, retry, priority, delete, logs, fetch', async () => {
    const client = createFakeClient()
    expect((await run(['cancel', 'job111111'], { client })).out).toMatch(/canceled shot/)
    expect((await run(['retry', 'job111111', '--frames', '4'], { client })).out).toMatch(
      /reopened 1 frame\(s\): 4/,
    )
    expect((await run(['priority', 'job111111', '80'], { client })).out).toMatch(/priority 80/)
    expect((await run(['pause', 'job111111'], { client })).out).toMatch(
      /^paused shot \(job111111\): .*rmesh resume job111111/,
    )
    expect(JSON.parse((await run(['resume', 'job111111', '--json'], { client })).out).state).toBe(
      'rendering',
    )
    expect((await run(['retry', 'job111111', '--unblock'], { client })).out).toMatch(/unblocked/)
    expect(client.calls.at(-1)?.args).toEqual(['job111111', { unblock: true }])
    await run(['retry', 'job111111', '--unblock', PEER_A, '--json'], { client })
    expect(client.calls.at(-1)?.args).toEqual(['job111111', { unblock: PEER_A }])
    expect((await run(['delete', 'job111111'], { client })).out).toMatch(/deleted job111111/)
    expect((await run(['logs', 'job111111', '--frame', '3'], { client })).out).toBe(
      'line one\nline two\n',
    )
    const f = await run(['fetch', 'job111111', '--zip'], { client, cwd: dir })
    expect(f.code).toBe(0)
    expect(client.calls.at(-1)?.args[1]).toEqual({ out: join(dir, 'shot.zip'), zip: true })
  })
  it('logs --follow stops cleanly on Ctrl-C', async () => {
    const client = createFakeClient()
    const r = await run(['logs', 'job111111', '--frame', '3', '--follow'], {
      client,
      interrupt: (fire) => setTimeout(fire, 20),
    })
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/Sample 8\/16/)
  })
  it('token issue prints the token alone on the last line; list --json has the documented fields', async () => {
    const client = createFakeClient()
    const r = await run(
      [
        'token',
        'issue',
        '--peer',
        PEER_B,
        '--caps',
        'render,submit',
        '--expires',
        '30d',
        '--max-queued',
        '5',
      ],
      { client },
    )
    expect(r.code).toBe(0)
    expect(r.out.trimEnd().split('\n').at(-1)).toBe('rmesh-token-AAAA')
    expect(client.calls[0].args[0]).toEqual({
      peer: PEER_B,
      caps: ['render', 'submit'],
      expiresInMs: 30 * 86_400_000,
      maxQueued: 5,
    })
    const l = await run(['token', 'list', '--json'], { client })
    expect(JSON.parse(l.out)[0]).toMatchObject({
      id: 'tok1',
      audience: PEER_B,
      caps: ['render'],
      expires: null,
      revoked: false,
    })
    const inv = await run(['token', 'invite', '--expires', '1h'], { client })
    expect(inv.out.trimEnd().split('\n').at(-1)).toBe('rmesh-invite-BBBB')
    expect((await run(['join', 'rmesh-invite-BBBB'], { client })).out).toMatch(/joined mesh mesh1/)
  })
})
