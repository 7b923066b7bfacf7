/**
 * `rmesh dashboard`: the whole screen. Owns only UI state (selection, mode, cursor); the
 * daemon's state comes from useDaemon. The layout is computed from the window size so the
 * frame never exceeds the terminal (no scrolling, no flicker) and follows resizes.
 */
import { Box, Text, useApp, useInput, useWindowSize } from 'ink'
import { useCallback, useEffect, useState } from 'react'
import type { ApiClient } from '../../src/api/client.js'
import { PRIORITY_MAX, PRIORITY_MIN } from '../../src/api/types.js'
import { describeError } from '../../src/util/errors.js'
import { formatFrames } from '../../src/jobs/frame-spec.js'
import { resolvePath } from '../validate.js'
import { FrameGrid, Header, Help, JobsList, LogTail, PeersPanel, Throughput } from './components.js'
import { useDaemon, useLogTail } from './hooks.js'
import { BUCKET_MS, latestThumb, sortedJobs, sortedPeers } from './state.js'
import { SubmitForm } from './SubmitForm.js'
import { type TerminalImages, Thumbnail } from './Thumbnail.js'
import { useTheme } from './theme.js'

export interface DashboardProps {
  client: ApiClient
  cwd: string
  now?: () => number
  reconnectMs?: number
  /** Draw the latest frame's thumbnail (absent: the terminal shows no images). */
  images?: TerminalImages
}

type Mode = 'main' | 'form' | 'help'

export interface Layout {
  peersRows: number
  jobsRows: number
  gridRows: number
  logRows: number
}

/** Row budget for each panel; the sum stays below the terminal height. */
export function layout(rows: number, peers: number, jobs: number, logOn: boolean): Layout {
  const avail = Math.max(8, rows - 5) // header, throughput, status line, key hint, spare
  const peersRows = Math.max(1, Math.min(peers || 1, Math.max(2, Math.floor(avail * 0.2))))
  const jobsRows = Math.max(1, Math.min(jobs || 1, Math.max(3, Math.floor(avail * 0.25))))
  const logRows = logOn ? Math.max(3, Math.floor(avail * 0.2)) : 0
  const gridRows = Math.max(
    1,
    avail - (peersRows + 1) - (jobsRows + 1) - (logOn ? logRows + 1 : 0) - 2,
  )
  return { peersRows, jobsRows, gridRows, logRows }
}

/** The thumbnail's box beside the frame grid, or none when the screen is too small. */
export function thumbBox(
  width: number,
  gridRows: number,
): { cols: number; rows: number } | undefined {
  const rows = Math.min(12, gridRows + 2) // the grid's title and legend lines too
  const cols = Math.min(40, Math.floor(width / 3))
  return width >= 72 && rows >= 5 ? { cols, rows } : undefined
}

export function Dashboard(props: DashboardProps) {
  const { client } = props
  const { exit } = useApp()
  const { color } = useTheme()
  const { columns, rows } = useWindowSize()
  const width = Math.max(40, columns)
  const { state, selectJob, addJob } = useDaemon(client, {
    now: props.now,
    reconnectMs: props.reconnectMs,
  })
  const jobs = sortedJobs(state)
  const peers = sortedPeers(state)
  const [selectedId, setSelectedId] = useState<string | undefined>()
  const [mode, setMode] = useState<Mode>('main')
  const [cursor, setCursor] = useState(0)
  const [logOn, setLogOn] = useState(false)
  const [flash, setFlash] = useState<{ text: string; error: boolean } | undefined>()

  const index = Math.max(0, selectedId ? jobs.findIndex((j) => j.jobId === selectedId) : 0)
  const job = jobs[index]
  const jobId = job?.jobId
  useEffect(() => {
    selectJob(jobId)
    setCursor(0)
  }, [jobId, selectJob])
  const detail = state.detail?.jobId === jobId ? state.detail : undefined
  const frame = detail?.frames[Math.min(cursor, detail.frames.length - 1)]
  const logLines = useLogTail(
    client,
    logOn && jobId && frame ? { jobId, frame: frame.frame } : undefined,
  )

  const run = useCallback((what: string, fn: () => Promise<string>) => {
    setFlash({ text: `${what}…`, error: false })
    fn().then(
      (text) => setFlash({ text, error: false }),
      (err) => setFlash({ text: `${what} failed: ${describeError(err)}`, error: true }),
    )
  }, [])

  useInput(
    (input, key) => {
      if (input === 'q') return exit()
      if (input === '?') return setMode('help')
      if (input === 'n') return setMode('form')
      if (key.escape) return setLogOn(false)
      if (key.upArrow) return jobs.length && setSelectedId(jobs[Math.max(0, index - 1)].jobId)
      if (key.downArrow)
        return jobs.length && setSelectedId(jobs[Math.min(jobs.length - 1, index + 1)].jobId)
      const nFrames = detail?.frames.length ?? 0
      if (key.leftArrow) return setCursor((c) => Math.max(0, c - 1))
      if (key.rightArrow) return setCursor((c) => Math.min(Math.max(0, nFrames - 1), c + 1))
      if (key.return && detail) {
        // Jump to the first frame worth looking at: failed, then rendering.
        const pick = detail.frames.findIndex((f) => f.state === 'failed')
        const alt = detail.frames.findIndex((f) => f.state === 'rendering')
        return setCursor(Math.max(0, pick >= 0 ? pick : alt))
      }
      if (input === 'l') return setLogOn((v) => !v)
      if (!job) return
      if (input === 'c')
        return run(
          `cancel ${job.name}`,
          async () => `canceled ${(await client.cancel(job.jobId)).name}`,
        )
      if (input === 'p') {
        const paused = job.state === 'paused'
        return run(
          `${paused ? 'resume' : 'pause'} ${job.name}`,
          async () =>
            `${(await (paused ? client.resume(job.jobId) : client.pause(job.jobId))).name} is ${paused ? 'resumed' : 'paused'}`,
        )
      }
      if (input === 'r') {
        return run(`retry ${job.name}`, async () => {
          const r = await client.retry(job.jobId, {})
          return r.reopened.length ? `reopened ${formatFrames(r.reopened)}` : 'nothing to retry'
        })
      }
      if (input === '+' || input === '-') {
        const p = Math.max(
          PRIORITY_MIN,
          Math.min(PRIORITY_MAX, job.priority + (input === '+' ? 10 : -10)),
        )
        return run(
          `priority ${job.name}`,
          async () => `priority ${(await client.setPriority(job.jobId, p)).priority}`,
        )
      }
      if (input === 'f') {
        const out = resolvePath(
          props.cwd,
          job.name.replace(/[^A-Za-z0-9._-]+/g, '_') || job.jobId.slice(0, 12),
        )
        return run(`fetch ${job.name}`, async () => {
          const r = await client.fetch(job.jobId, { out, zip: false })
          return `fetched ${r.files} files to ${r.out}${r.missing.length ? ` (${r.missing.length} missing)` : ''}`
        })
      }
    },
    { isActive: mode === 'main' },
  )
  useInput(() => setMode('main'), { isActive: mode === 'help' })

  const l = layout(rows, peers.length, jobs.length, logOn)
  const frameRows = Math.max(10, rows - 1)
  const thumb = props.images ? latestThumb(state) : undefined
  const box = thumb ? thumbBox(width, l.gridRows) : undefined
  const grid = (
    <FrameGrid
      job={detail}
      cursor={cursor}
      width={box ? width - box.cols - 1 : width}
      rows={l.gridRows}
    />
  )
  return (
    <Box flexDirection="column" width={width} height={frameRows} overflow="hidden">
      <Header node={state.node} connected={state.connected} error={state.error} width={width} />
      <PeersPanel peers={peers} width={width} rows={l.peersRows} />
      <JobsList jobs={jobs} selected={index} width={width} rows={l.jobsRows} />
      {mode === 'form' ? (
        <SubmitForm
          client={client}
          cwd={props.cwd}
          onCancel={() => setMode('main')}
          onDone={(res) => {
            setMode('main')
            setSelectedId(res.jobId)
            // Shown at once; the daemon's job-updated event replaces it.
            addJob({
              jobId: res.jobId,
              name: res.name,
              state: 'queued',
              priority: 50,
              framesDone: 0,
              framesFailed: 0,
              framesRendering: 0,
              framesTotal: res.framesTotal,
              nodesRendering: 0,
              submitter: state.node?.peerId ?? '',
              mine: true,
              outDir: res.outDir,
              framesPerMinute: 0,
              createdAt: (props.now ?? Date.now)(),
            })
            setFlash({
              text: `submitted ${res.name}: ${res.framesTotal} frames → ${res.outDir}`,
              error: false,
            })
          }}
        />
      ) : mode === 'help' ? (
        <Help />
      ) : (
        <>
          {props.images && thumb && box ? (
            <Box>
              <Box flexDirection="column" flexGrow={1}>
                {grid}
              </Box>
              <Box width={1} />
              <Thumbnail
                client={client}
                images={props.images}
                target={thumb}
                cols={box.cols}
                rows={box.rows}
                frameRows={frameRows}
              />
            </Box>
          ) : (
            grid
          )}
          {logOn ? (
            <LogTail
              title={`Log of frame ${frame?.frame ?? '-'}`}
              lines={logLines}
              rows={l.logRows}
              width={width}
            />
          ) : null}
        </>
      )}
      <Throughput counts={state.throughput.counts} width={width} bucketMs={BUCKET_MS} />
      <Text color={color(flash?.error ? 'red' : 'gray')} wrap="truncate-end">
        {flash?.text ?? ' '}
      </Text>
      <Text dimColor wrap="truncate-end">
        ↑↓ job ←→ frame ⏎ open n new c cancel p pause r retry +/- prio l log f fetch ? help q quit
      </Text>
    </Box>
  )
}
