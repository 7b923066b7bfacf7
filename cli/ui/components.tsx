/**
 * The dashboard's panels: small components, pure functions of their props (the model lives
 * in ./state.ts). Each fits the width it is given and clips to a row budget, so the whole
 * screen fits 80×24 and never scrolls (scrolling is what makes terminal UIs flicker).
 */
import { Box, Text } from 'ink'
import type { JobDetail, JobSummary, NodeInfo, PeerInfo } from '../../src/api/types.js'
import { formatDuration, progressBar, shortPeer, truncate, workText } from '../format.js'
import { peerStateLabel, ruleLabel } from './node-state.js'
import { FRAME_COLOR, FRAME_GLYPH, JOB_COLOR, useTheme } from './theme.js'

export function Header(props: {
  node?: NodeInfo
  connected: boolean
  error?: string
  width: number
}) {
  const { color } = useTheme()
  const n = props.node
  // This node's own rules (paused, draining, off schedule, idle-wait), or busy.
  const own =
    ruleLabel(n?.rules?.state) ??
    (n && n.slots.total > 0 && n.slots.busy >= n.slots.total
      ? ({ label: 'busy', color: 'cyan' } as const)
      : undefined)
  const status = props.connected
    ? '● connected'
    : `○ ${props.error ? truncate(props.error, props.width - 40) : 'connecting…'}`
  return (
    <Box width={props.width}>
      <Text bold>rmesh </Text>
      <Text>
        {n
          ? truncate(
              `${n.name} ${shortPeer(n.peerId)} · ${n.peerCount} peers · slots ${n.slots.busy}/${n.slots.total}`,
              Math.max(10, props.width - 42),
            )
          : ''}
      </Text>
      {own ? <Text color={color(own.color)}> [{own.label}]</Text> : null}
      <Box flexGrow={1} />
      <Text color={color(props.connected ? 'green' : 'yellow')}>{status}</Text>
    </Box>
  )
}

export function PeersPanel(props: { peers: PeerInfo[]; width: number; rows: number }) {
  const { color } = useTheme()
  const shown = props.peers.slice(0, props.rows)
  const w = props.width
  return (
    <Box flexDirection="column">
      <Text bold>Peers ({props.peers.length})</Text>
      {shown.length === 0 ? <Text dimColor>no peers yet</Text> : null}
      {shown.map((p) => (
        <Text key={p.peerId} wrap="truncate-end" color={color(peerStateLabel(p).color)}>
          {truncate(
            [
              pad(p.name, 12),
              pad(p.addresses[0]?.replace(/\/p2p\/.*$/, '') ?? '-', w >= 100 ? 24 : 16),
              pad(p.engines.map((e) => `${e.name} ${e.version}`).join(',') || '-', 14),
              pad(`${p.slots.busy}/${p.slots.total}`, 5),
              pad(peerStateLabel(p).label, 9),
              pad(p.load === null ? '-' : p.load.toFixed(1), 4),
              workText(p),
            ].join(' '),
            w,
          )}
        </Text>
      ))}
      {props.peers.length > shown.length ? (
        <Text dimColor>+{props.peers.length - shown.length} more</Text>
      ) : null}
    </Box>
  )
}

function pad(s: string, n: number): string {
  return truncate(s, n).padEnd(n)
}

export function JobsList(props: {
  jobs: JobSummary[]
  selected: number
  width: number
  rows: number
}) {
  const { color } = useTheme()
  // Keep the selection visible: scroll the window, not the screen.
  const start = Math.max(
    0,
    Math.min(props.selected - props.rows + 1, props.jobs.length - props.rows),
  )
  const shown = props.jobs.slice(Math.max(0, start), Math.max(0, start) + props.rows)
  const barW = Math.max(6, Math.min(30, props.width - 60))
  return (
    <Box flexDirection="column">
      <Text bold>Jobs ({props.jobs.length})</Text>
      {shown.length === 0 ? <Text dimColor>no jobs: press n to submit one</Text> : null}
      {shown.map((j, i) => {
        const sel = Math.max(0, start) + i === props.selected
        const frac = j.framesTotal ? j.framesDone / j.framesTotal : 0
        return (
          <Text key={j.jobId} inverse={sel} wrap="truncate-end">
            {sel ? '›' : ' '}
            {pad(j.name, 16)} <Text color={color(JOB_COLOR[j.state])}>{pad(j.state, 9)}</Text>
            <Text color={color('green')}>{progressBar(frac, barW)}</Text>{' '}
            {`${j.framesDone}/${j.framesTotal}`.padStart(9)} p{String(j.priority).padEnd(3)} ETA{' '}
            {formatDuration(j.etaMs)}
          </Text>
        )
      })}
    </Box>
  )
}

export function FrameGrid(props: { job?: JobDetail; cursor: number; width: number; rows: number }) {
  const { color } = useTheme()
  const job = props.job
  if (!job) return <Text dimColor>select a job (↑/↓) to see its frames</Text>
  const perRow = Math.max(10, props.width)
  const capacity = perRow * props.rows
  // Show the page of frames that holds the cursor.
  const page = Math.floor(props.cursor / capacity)
  const frames = job.frames.slice(page * capacity, (page + 1) * capacity)
  const rows: (typeof frames)[] = []
  for (let i = 0; i < frames.length; i += perRow) rows.push(frames.slice(i, i + perRow))
  const cur = job.frames[props.cursor]
  const rendering = job.frames.filter((f) => f.state === 'rendering').slice(0, 4)
  return (
    <Box flexDirection="column">
      <Text bold wrap="truncate-end">
        {job.name} · frame{' '}
        {cur
          ? `${cur.frame} ${cur.state}${cur.node ? ` on ${shortPeer(cur.node)}` : ''} (${cur.attempts} att.${cur.renderMs ? `, ${formatDuration(cur.renderMs)}` : ''})`
          : '-'}
      </Text>
      {rows.map((row, r) => (
        <Text key={row[0]?.frame ?? r}>
          {row.map((f, i) => {
            const idx = page * capacity + r * perRow + i
            return (
              <Text
                key={f.frame}
                color={color(FRAME_COLOR[f.state])}
                inverse={idx === props.cursor}
              >
                {FRAME_GLYPH[f.state]}
              </Text>
            )
          })}
        </Text>
      ))}
      <Text dimColor wrap="truncate-end">
        {rendering.length
          ? `rendering: ${rendering.map((f) => `${f.frame}${f.progress !== undefined ? ` ${Math.round(f.progress * 100)}%` : ''}`).join('  ')}`
          : '· open ○ claimed ◐ rendering █ done ✗ failed'}
      </Text>
    </Box>
  )
}

const SPARKS = '▁▂▃▄▅▆▇█'

export function sparkline(values: readonly number[]): string {
  const max = Math.max(1, ...values)
  return values
    .map((v) => (v <= 0 ? ' ' : SPARKS[Math.min(7, Math.max(0, Math.ceil((v / max) * 8) - 1))]))
    .join('')
}

export function Throughput(props: { counts: number[]; width: number; bucketMs: number }) {
  const { color } = useTheme()
  const n = Math.max(5, Math.min(props.counts.length, props.width - 24))
  const recent = props.counts.slice(-n)
  const perMin = (recent.slice(-6).reduce((a, b) => a + b, 0) * 60_000) / (6 * props.bucketMs)
  return (
    <Text wrap="truncate-end">
      <Text bold>Throughput </Text>
      <Text color={color('green')}>{sparkline(recent)}</Text> {perMin.toFixed(1)} f/min
    </Text>
  )
}

export function LogTail(props: { title: string; lines: string[]; rows: number; width: number }) {
  const shown = props.lines.slice(-props.rows)
  return (
    <Box flexDirection="column">
      <Text bold wrap="truncate-end">
        {props.title}
      </Text>
      {shown.length === 0 ? <Text dimColor>(waiting for log lines)</Text> : null}
      {shown.map((l, i) => (
        // biome-ignore lint/suspicious/noArrayIndexKey: log lines are positional
        <Text key={i} wrap="truncate-end">
          {truncate(l, props.width)}
        </Text>
      ))}
    </Box>
  )
}

export const HELP_LINES = [
  '↑/↓      select job          enter   open job frames',
  '←/→      select frame        l       log tail of frame',
  'n        new job (submit)    c       cancel job',
  'r        retry failed        +/-     priority up/down',
  'p        pause/resume job    f       fetch outputs',
  '?        this help',
  'q        quit                esc     close panel',
]

/** The peer states the panel shows; a node's own rules are set on it with `rmesh node`. */
export const NODE_STATE_LINES = [
  'busy/idle   every slot in use / a slot free      gone   not heard',
  'paused      its owner paused it (or disk full)   draining  finishing, then paused',
  'sched-off   outside its schedule                 idle-wait  its user is at it',
]

export function Help() {
  return (
    <Box flexDirection="column" borderStyle="round" paddingX={1}>
      <Text bold>Keys</Text>
      {HELP_LINES.map((l) => (
        <Text key={l}>{l}</Text>
      ))}
      <Text bold>Node states</Text>
      {NODE_STATE_LINES.map((l) => (
        <Text key={l}>{l}</Text>
      ))}
    </Box>
  )
}
