/**
 * End-to-end: `rmesh dashboard` in a real terminal (a detached tmux session of 100×30)
 * against real daemons. It reads the screen with `tmux capture-pane`, types keys like a
 * user (submit a job through the `n` form, cancel with `c`, retry with `r`, quit with `q`)
 * and checks what the screen shows and what the daemons did. Requires `npm run build`.
 *
 * Three daemons, not two: a job fails only when one frame failed on 3 nodes, and `r`
 * needs a failed job. The form has no engine field, so the job it submits is a real
 * Blender job of the example scene (canceled before it matters). tmux runs on its own
 * server socket, killed in afterAll; skipped with a reason when tmux is missing.
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { JobDetail, JobSummary, SubmitRequest, SubmitResponse } from '../../src/api/types.js'
import { ensureExampleScene } from '../../src/engines/example-scene.js'
import {
  apiCall,
  type DaemonProc,
  makeTempDir,
  RMESH_BIN,
  removeDir,
  startMesh,
  stopDaemonProc,
  waitFor,
} from '../helpers/daemons.js'

const exec = promisify(execFile)
const TMUX = ['/usr/bin/tmux', '/usr/local/bin/tmux'].find((p) => existsSync(p))
const SERVER = `rmesh-e2e-${process.pid}-${Date.now()}`
const SESSION = 'dash'

function tmux(...args: string[]) {
  return exec(TMUX as string, ['-L', SERVER, ...args], { timeout: 10_000 })
}
async function screen(): Promise<string> {
  return (await tmux('capture-pane', '-p', '-t', SESSION)).stdout
}
/** The form field shown inverse (the active one), from the screen with its attributes. */
async function activeField(): Promise<string | undefined> {
  const raw = (await tmux('capture-pane', '-p', '-e', '-t', SESSION)).stdout
  // An SGR sequence that turns inverse (7) on, maybe with a colour, then the label.
  const m =
    /\x1b\[(?:[\d;]*;)?7(?:;[\d;]*)?m(?:\x1b\[[\d;]*m)*\s*(Scene|Frames|Chunk|Format|Video|Priority|Pack|\[ Submit \])/.exec(
      raw,
    )
  return m?.[1]
}
/** Keys as tmux names them (`Enter`, `Down`, `BSpace`) or literal text with `-l`. */
async function keys(...k: string[]) {
  await tmux('send-keys', '-t', SESSION, ...k)
}
async function type(text: string) {
  await tmux('send-keys', '-t', SESSION, '-l', text)
}
/** Waits until the screen satisfies `ok`; the last screen is in the error otherwise. */
async function waitScreen(ok: (s: string) => boolean, what: string, ms = 20_000) {
  let last = ''
  try {
    return await waitFor(
      async () => {
        last = await screen()
        return ok(last) && last
      },
      ms,
      what,
      100,
    )
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- screen ---\n${last}`)
  }
}

async function jobs(d: DaemonProc): Promise<JobSummary[]> {
  return (await apiCall<JobSummary[]>(d.socket, 'GET', '/v1/jobs')).body
}
async function submit(d: DaemonProc, req: SubmitRequest): Promise<SubmitResponse> {
  const r = await apiCall<SubmitResponse>(d.socket, 'POST', '/v1/jobs', req)
  if (r.status !== 200 && r.status !== 201)
    throw new Error(`submit: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body
}

const TITLE = TMUX
  ? 'rmesh dashboard in tmux'
  : 'rmesh dashboard in tmux: skipped, tmux is not installed'

describe.skipIf(!TMUX)(TITLE, () => {
  let mesh: DaemonProc[] = []
  let work = ''
  let exampleScene = ''
  let failJob = ''
  let scene = ''
  const started = Date.now()

  beforeAll(async () => {
    const [m, w, example] = await Promise.all([
      startMesh(3),
      makeTempDir('rmesh-e2e-dash-'),
      ensureExampleScene(),
    ])
    mesh = m
    work = w
    exampleScene = example.scenePath
    scene = join(work, 'shot.blend')
    await writeFile(scene, 'the test engine renders any file')
    failJob = (
      await submit(mesh[0], {
        scenePath: scene,
        engine: 'test',
        params: { frameMs: 50, failFrames: 1 },
        frames: '1-2',
        name: 'failjob',
        priority: 10,
      })
    ).jobId
    // As on a user's terminal: CI variables (set where CI runs this suite) turn off colours
    // in chalk, and this test reads the active form field from its inverse video.
    const command = `env -u CI -u CONTINUOUS_INTEGRATION ${process.execPath} ${RMESH_BIN} --dir ${mesh[0].dir} dashboard; echo "rmesh exited $?"; sleep 600`
    await tmux('new-session', '-d', '-s', SESSION, '-x', '100', '-y', '30', '-c', work, command)
  }, 60_000)

  afterAll(async () => {
    if (TMUX) {
      await tmux('kill-server').catch(() => {})
      // kill-server leaves the socket file behind.
      const uid = process.getuid?.() ?? 0
      await rm(join(process.env.TMUX_TMPDIR ?? '/tmp', `tmux-${uid}`, SERVER), { force: true })
    }
    await Promise.all(mesh.map((d) => stopDaemonProc(d)))
    await Promise.all([...mesh.map((d) => d.dir), work].filter(Boolean).map(removeDir))
    console.log(`dashboard e2e: ${((Date.now() - started) / 1000).toFixed(1)} s in all`)
  }, 30_000)

  it('shows the peers, the jobs and their progress, live', async () => {
    const s = await waitScreen(
      (s) => /Peers \(2\)/.test(s) && s.includes('node2') && s.includes('node3'),
      'both peers on screen',
      40_000,
    )
    expect(s).toContain('failjob')
    // Submitted while the dashboard watches: it appears and its progress moves on screen,
    // pushed by the daemon's event stream (20 frames of 400 ms on 3 nodes: about 3 s).
    await submit(mesh[0], {
      scenePath: scene,
      engine: 'test',
      params: { frameMs: 400 },
      frames: '1-20',
      name: 'tmuxjob',
    })
    await waitScreen((s) => /tmuxjob .*\b([1-9]|1\d)\/20\b/.test(s), 'tmuxjob part done')
    await waitScreen((s) => /tmuxjob\s+done\b.*\b20\/20\b/.test(s), 'tmuxjob done')
    const failed = await waitScreen((s) => /failjob\s+failed/.test(s), 'failjob failed on screen')
    for (const l of failed.split('\n')) expect(l.length).toBeLessThanOrEqual(100)
  })

  it('n opens the form; the job it submits is on screen and in the daemon', async () => {
    await keys('n')
    await waitScreen((s) => s.includes('New job') && s.includes('Scene'), 'the submit form')
    // Like a user: look at the screen before the next key. Ink hands each key to the
    // handler of the last render, so keys sent faster than the screen updates act on
    // stale form state.
    await type(exampleScene)
    await waitScreen((s) => s.includes('example.blend'), 'the scene path typed')
    await keys('Enter')
    // Leaving the scene field inspects the scene and prefills its frame range.
    await waitScreen((s) => /Frames\s+1-24/.test(s), 'frames prefilled from the scene')
    for (let i = 0; i < 4; i++) await keys('BSpace')
    await waitScreen((s) => /Frames\s+'1-250'/.test(s), 'frames cleared')
    await type('1-2')
    await waitScreen((s) => /Frames\s+1-2\b/.test(s), 'frames typed')
    // Down through chunk, format, video, priority and pack to the submit button.
    for (const next of ['Chunk', 'Format', 'Video', 'Priority', 'Pack', '[ Submit ]']) {
      await keys('Down')
      await waitFor(async () => (await activeField()) === next, 10_000, `field ${next}`)
    }
    await keys('Enter')
    const s = await waitScreen(
      (s) => /submitted example: 2 frames/.test(s) && !s.includes('New job'),
      'the submit announced',
    )
    expect(s).toMatch(/›example/)
    const mine = await waitFor(
      async () => (await jobs(mesh[0])).find((j) => j.name === 'example'),
      10_000,
      'the new job in GET /v1/jobs',
    )
    expect(mine.framesTotal).toBe(2)
  })

  it('c cancels the selected job on the daemon', async () => {
    await waitScreen((s) => /›example/.test(s), 'the new job selected')
    await keys('c')
    await waitFor(
      async () => (await jobs(mesh[0])).find((j) => j.name === 'example')?.state === 'canceled',
      10_000,
      'the daemon to report the job canceled',
    )
    await waitScreen((s) => /example\s+canceled/.test(s), 'canceled on screen')
  })

  it('r retries a failed job', async () => {
    // Move the selection to the failed job.
    for (let i = 0; i < 6; i++) {
      if (/›failjob/.test(await screen())) break
      await keys('Down')
      await new Promise((r) => setTimeout(r, 150))
    }
    await waitScreen((s) => /›failjob/.test(s), 'failjob selected', 5_000)
    const attempts = async () =>
      (await apiCall<JobDetail>(mesh[0].socket, 'GET', `/v1/jobs/${failJob}`)).body.frames.find(
        (f) => f.frame === 1,
      )?.attempts ?? 0
    const before = (await jobs(mesh[0])).find((j) => j.jobId === failJob)
    expect(before?.state).toBe('failed')
    const attemptsBefore = await attempts()
    await keys('r')
    await waitScreen((s) => /reopened 1/.test(s), 'the retry announced')
    // Reopened: it renders (and fails) again, so its frame has more attempts.
    await waitFor(
      async () => (await attempts()) > attemptsBefore,
      20_000,
      'frame 1 of failjob attempted again',
    )
  })

  it('q quits: the process exits 0', async () => {
    await keys('q')
    await waitScreen((s) => s.includes('rmesh exited 0'), 'the dashboard to exit')
  })
})
