/**
 * The web UI (runs in the browser; preact + htm, no bundler: the daemon serves these ES
 * modules and an import map). Pages by hash: #/ mesh, #/jobs, #/jobs/ID, #/submit, #/tokens.
 * Live: the page refetches what it shows when the event stream (SSE) says something changed.
 * Every state-changing call sends x-rmesh-csrf: 1 (the server refuses it otherwise).
 */
import htm from 'htm'
import { h, render } from 'preact'
import { useCallback, useEffect, useState } from 'preact/hooks'
import type * as Api from '../../api/types.js'

// htm's typings are CommonJS-shaped; the module it serves is an ES default export.
type Html = (strings: TemplateStringsArray, ...values: unknown[]) => ReturnType<typeof h>
const html = (htm as unknown as { bind(f: typeof h): Html }).bind(h)

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`/api${path}`, {
    method,
    headers: {
      'x-rmesh-csrf': '1',
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await res.text()
  const data = text ? JSON.parse(text) : null
  if (!res.ok) throw new Error(data?.error?.message ?? `HTTP ${res.status}`)
  return data as T
}

let listeners: (() => void)[] = []
let pending: ReturnType<typeof setTimeout> | undefined

/**
 * A thumbnail can be announced a moment before this node holds it (the renderer lets go of
 * it on ack while the submitter is still fetching it): try again a few times, a second apart.
 */
function retryImage(e: Event): void {
  const img = e.currentTarget as HTMLImageElement
  const n = Number(img.dataset.retry ?? 0)
  if (n >= 5) return
  img.dataset.retry = String(n + 1)
  const url = new URL(img.src)
  url.searchParams.set('r', String(n + 1))
  setTimeout(() => {
    img.src = url.toString()
  }, 1000)
}

function startEvents() {
  const es = new EventSource('/api/v1/events')
  es.onmessage = (m) => {
    const e = JSON.parse(m.data) as Api.ApiEvent
    if (e.type === 'ping') return
    if (pending) return
    pending = setTimeout(() => {
      pending = undefined
      for (const l of listeners) l()
    }, 150)
  }
}

/** Data that refetches on every change the event stream reports. */
function useLive<T>(load: () => Promise<T>, deps: unknown[]): [T | undefined, string, () => void] {
  const [data, setData] = useState<T | undefined>(undefined)
  const [err, setErr] = useState('')
  const refresh = useCallback(() => {
    load().then(
      (d) => {
        setData(d)
        setErr('')
      },
      (e: Error) => setErr(e.message),
    )
    // biome-ignore lint/correctness/useExhaustiveDependencies: the caller names what `load` reads
  }, deps)
  useEffect(() => {
    refresh()
    listeners.push(refresh)
    return () => {
      listeners = listeners.filter((l) => l !== refresh)
    }
  }, [refresh])
  return [data, err, refresh]
}

const short = (id: string | null | undefined) => (id ? id.slice(-8) : '—')
const pct = (a: number, b: number) => (b ? Math.round((100 * a) / b) : 0)
const eta = (ms?: number) => (ms === undefined ? '—' : `${Math.round(ms / 1000)} s`)
const ErrorLine = ({ msg }: { msg: string }) =>
  msg ? html`<p class="error" role="alert">${msg}</p>` : null

/** A node's render devices as `rmesh peers` shows them: its GPU kinds, else cpu; — unknown. */
export function devicesText(p: Pick<Api.PeerInfo, 'devices'>): string {
  if (!p.devices) return '—'
  const gpus = [...new Set(p.devices.flatMap((d) => d.kinds))].filter((k) => k !== 'cpu')
  return gpus.join(', ') || 'cpu'
}

/** The tags of the mesh's nodes, sorted; '' stands for nodes without any. */
export function tagsOf(peers: Api.PeerInfo[]): string[] {
  const all = new Set<string>()
  for (const p of peers) for (const t of p.tags?.length ? p.tags : ['']) all.add(t)
  return [...all].sort()
}

function Mesh() {
  const [node, err1] = useLive(() => call<Api.NodeInfo>('GET', '/v1/node'), [])
  const [peers, err2] = useLive(() => call<Api.PeerInfo[]>('GET', '/v1/peers'), [])
  // Filter and grouping live in the URL (#/?tag=gpu&group=1), so a view can be shared.
  const params = new URLSearchParams(location.hash.split('?')[1] ?? '')
  const tag = params.get('tag')
  const group = params.get('group') === '1'
  const setView = (t: string | null, g: boolean) => {
    const q = new URLSearchParams()
    if (t !== null) q.set('tag', t)
    if (g) q.set('group', '1')
    location.hash = `#/${q.size ? `?${q}` : ''}`
  }
  const all = peers ?? []
  const tags = tagsOf(all)
  const has = (p: Api.PeerInfo, t: string) => (t === '' ? !p.tags?.length : !!p.tags?.includes(t))
  const work = (w: Api.WorkInfo[]) =>
    w
      .map(
        (x) => `${x.jobName} chunk ${x.chunk}${x.frame !== undefined ? ` frame ${x.frame}` : ''}`,
      )
      .join(', ') || '—'
  const table = (caption: string, rows: Api.PeerInfo[]) =>
    html`<table><caption>${caption}</caption><thead><tr><th>Name</th><th>State</th><th>Tags</th><th>Engines</th><th>Devices</th><th>Load</th><th>Slots</th><th>Current work</th></tr></thead>
    <tbody>${rows.map(
      (
        p,
      ) => html`<tr><td>${p.name} <small>${short(p.peerId)}</small></td><td>${p.state}${p.paused ? ` (${p.paused})` : ''}</td>
      <td class="tags">${(p.tags ?? []).map((t) => html`<span class="tag">${t}</span> `)}</td>
      <td>${p.engines.map((e) => `${e.name} ${e.version}`).join(', ')}</td><td>${devicesText(p)}</td><td>${p.load === null ? '—' : p.load.toFixed(2)}</td>
      <td>${p.slots.busy}/${p.slots.total}</td><td>${work(p.work)}</td></tr>`,
    )}</tbody></table>`
  const shown = tag === null ? all : all.filter((p) => has(p, tag))
  return html`<h1>Mesh</h1><${ErrorLine} msg=${err1 || err2} />
    ${node && html`<p>This node: <strong>${node.name}</strong> (${short(node.peerId)}), ${node.slots.busy}/${node.slots.total} slots busy, ${node.peerCount} peers${node.renderPaused ? `, paused: ${node.renderPaused}` : ''}${node.tags?.length ? `, tags ${node.tags.join(', ')}` : ''}</p>`}
    <p class="filters"><label>Tag <select name="tag" onChange=${(e: Event) => {
      const v = (e.target as HTMLSelectElement).value
      setView(v === '*' ? null : v, group)
    }}><option value="*" selected=${tag === null}>all nodes</option>${tags.map(
      (t) => html`<option value=${t} selected=${tag === t}>${t || '(no tag)'}</option>`,
    )}</select></label>
    <label><input type="checkbox" name="group" checked=${group} onChange=${(e: Event) => setView(tag, (e.target as HTMLInputElement).checked)} /> group by tag</label></p>
    ${
      group
        ? tags
            .filter((t) => tag === null || t === tag)
            .map((t) =>
              table(
                t ? `Pool ${t}` : 'Nodes without tags',
                all.filter((p) => has(p, t)),
              ),
            )
        : table('Nodes', shown)
    }`
}

function JobActions({ job, onError }: { job: Api.JobSummary; onError: (m: string) => void }) {
  const act = (method: string, path: string, body?: unknown) =>
    call(method, `/v1/jobs/${job.jobId}${path}`, body).then(
      () => onError(''),
      (e: Error) => onError(e.message),
    )
  const running =
    job.state === 'queued' ||
    job.state === 'rendering' ||
    job.state === 'paused' ||
    job.state === 'waiting'
  return html`<span class="actions">
    ${running && html`<button onClick=${() => act('POST', '/cancel', {})}>Cancel</button>`}
    ${job.state === 'paused' && html`<button onClick=${() => act('POST', '/resume', {})}>Resume</button>`}
    ${running && job.state !== 'paused' && html`<button onClick=${() => act('POST', '/pause', {})}>Pause</button>`}
    ${(job.state === 'failed' || job.state === 'canceled' || job.framesFailed > 0) && html`<button onClick=${() => act('POST', '/retry', {})}>Retry</button>`}
    <label>Priority <input type="number" min="0" max="100" value=${job.priority} aria-label="priority"
      onChange=${(e: Event) => act('POST', '/priority', { priority: Number((e.target as HTMLInputElement).value) })} /></label>
    ${!running && html`<button onClick=${() => confirm(`Delete job ${job.name}?`) && act('DELETE', '')}>Delete</button>`}
    <a href=${`/api/v1/jobs/${job.jobId}/zip`} download>Download ZIP</a></span>`
}

function Jobs() {
  const [jobs, err] = useLive(() => call<Api.JobSummary[]>('GET', '/v1/jobs'), [])
  const [actErr, setActErr] = useState('')
  return html`<h1>Jobs</h1><${ErrorLine} msg=${err || actErr} />
    <table><thead><tr><th>Name</th><th>State</th><th>Progress</th><th>ETA</th><th>Priority</th><th>Actions</th></tr></thead>
    <tbody>${(jobs ?? []).map(
      (
        j,
      ) => html`<tr><td><a href=${`#/jobs/${j.jobId}`}>${j.name}</a> <small>${j.jobId}</small></td><td>${j.state}</td>
      <td><progress max="100" value=${pct(j.framesDone, j.framesTotal)}></progress> ${j.framesDone}/${j.framesTotal}</td>
      <td>${eta(j.etaMs)}</td><td>${j.priority}</td><td><${JobActions} job=${j} onError=${setActErr} /></td></tr>`,
    )}</tbody></table>`
}

function Job({ id }: { id: string }) {
  const [job, err] = useLive(() => call<Api.JobDetail>('GET', `/v1/jobs/${id}`), [id])
  const [actErr, setActErr] = useState('')
  const [view, setView] = useState<number | undefined>(undefined)
  const [log, setLog] = useState('')
  const showLog = (frame: number) =>
    fetch(`/api/v1/jobs/${id}/logs?frame=${frame}&tail=200`).then(async (r) =>
      setLog(await r.text()),
    )
  if (!job) return html`<${ErrorLine} msg=${err} /><p>Loading…</p>`
  return html`<h1>${job.name} <small>${job.jobId}</small></h1><${ErrorLine} msg=${err || actErr} />
    <p>State <strong class="job-state">${job.state}</strong>${job.reason ? ` — ${job.reason}` : ''}; ${job.framesDone}/${job.framesTotal} frames; ETA ${eta(job.etaMs)}; format ${job.format}; chunk ${job.chunkSize}</p>
    <${JobActions} job=${job} onError=${setActErr} />
    ${job.video && html`<p>Video ${job.video.codec}: ${job.video.state}</p>`}
    ${
      job.preview &&
      html`<details open class="preview"><summary>Preview video (${job.preview.frames} of ${job.framesTotal} frames)</summary>
      <video class="preview" controls muted loop preload="metadata" src=${`/api/v1/jobs/${id}/preview?v=${job.preview.updatedAt}`}></video></details>`
    }
    ${
      job.blocked?.length > 0 &&
      html`<p class="error">Blocked for this job: ${job.blocked
        .map(
          (b) =>
            `${short(b.node)} (${b.failures.length} failures, last: ${b.failures.at(-1)?.reason.slice(0, 80) ?? ''})`,
        )
        .join('; ')}
      <button onClick=${() =>
        call('POST', `/v1/jobs/${id}/retry`, { unblock: true }).then(
          () => setActErr(''),
          (e: Error) => setActErr(e.message),
        )}>Unblock</button></p>`
    }
    <div class="grid" aria-label="frames">${job.frames.map(
      (f) => html`<button class=${`frame ${f.state}`} data-frame=${f.frame} onClick=${() => {
        if (f.state === 'done') setView(f.frame)
        showLog(f.frame)
      }}>
        ${f.thumb ? html`<img alt=${`frame ${f.frame}`} src=${`/api/v1/jobs/${id}/frames/${f.frame}/thumb?v=${f.thumb}`} onError=${retryImage} />` : html`<div class="ph">${f.state}</div>`}
        <div>#${f.frame} ${short(f.node)}</div><div>${f.attempts} att. ${f.renderMs !== undefined ? `${(f.renderMs / 1000).toFixed(1)} s` : ''}</div>
        ${f.error && html`<div class="error">${f.error.slice(0, 80)}</div>`}</button>`,
    )}</div>
    ${log && html`<h2>Log</h2><pre>${log}</pre>`}
    ${
      view !== undefined &&
      html`<div class="viewer" role="dialog" aria-label=${`frame ${view}`}>
      <img alt=${`frame ${view} full size`} src=${`/api/v1/jobs/${id}/frames/${view}/image`} />
      <button onClick=${() => setView(undefined)}>Close</button></div>`
    }`
}

/**
 * The submit form, one entry per field: its input and how its value goes into the
 * SubmitRequest. A new field (e.g. a device) is one entry here and one name in the server's
 * SUBMIT_FIELDS.
 */
interface FormField {
  name: keyof Api.SubmitRequest & string
  label: string
  /** list: words split at spaces or commas; csv: items split at commas only (`>=4.2 <4.3`). */
  kind: 'text' | 'number' | 'select' | 'list' | 'csv'
  options?: [string, string][]
  attrs?: Record<string, string | number | boolean>
}
export const SUBMIT_FORM: FormField[] = [
  {
    name: 'scenePath',
    label: 'Scene (.blend path on this machine)',
    kind: 'text',
    attrs: { required: true, size: 60 },
  },
  { name: 'frames', label: 'Frames', kind: 'text', attrs: { placeholder: '1-250' } },
  { name: 'chunk', label: 'Frames per chunk', kind: 'number', attrs: { min: 1 } },
  {
    name: 'format',
    label: 'Format',
    kind: 'select',
    options: [
      ['', "scene's"],
      ['png', 'png'],
      ['exr', 'exr'],
      ['jpeg', 'jpeg'],
    ],
  },
  {
    name: 'video',
    label: 'Video',
    kind: 'select',
    options: [
      ['', 'none'],
      ['h264', 'h264'],
      ['h265', 'h265'],
      ['vp9', 'vp9'],
      ['av1', 'av1'],
    ],
  },
  {
    name: 'priority',
    label: 'Priority',
    kind: 'number',
    attrs: { min: 0, max: 100, placeholder: 50 },
  },
  {
    name: 'tags',
    label: "Tags (only nodes with every one render it; empty: this node's submitTags)",
    kind: 'list',
    attrs: { placeholder: 'gpu, studio-a' },
  },
  {
    name: 'device',
    label: 'Device (only nodes whose Blender has it render the job)',
    kind: 'select',
    options: [
      ['', 'as the scene says (any node)'],
      ['gpu', 'any GPU'],
      ['optix', 'OptiX'],
      ['cuda', 'CUDA'],
      ['hip', 'HIP'],
      ['oneapi', 'oneAPI'],
      ['metal', 'Metal'],
      ['cpu', 'CPU'],
    ],
  },
  {
    name: 'require',
    label: "Blender versions (empty: the submitting node's major.minor; 'blender' alone: any)",
    kind: 'csv',
    attrs: { placeholder: 'blender>=4.2 <4.3' },
  },
  { name: 'name', label: 'Name', kind: 'text' },
  {
    name: 'engine',
    label: 'Engine',
    kind: 'text',
    attrs: { placeholder: 'by file type (blender)' },
  },
]

/** The request a filled-in form makes; an empty field is left out (the daemon's default). */
export function submitBody(get: (name: string) => string): Record<string, unknown> {
  const body: Record<string, unknown> = {}
  for (const f of SUBMIT_FORM) {
    const v = get(f.name).trim()
    if (!v) continue
    if (f.kind === 'number') body[f.name] = Number(v)
    else if (f.kind === 'list')
      body[f.name] = v
        .split(/[\s,]+/)
        .map((t) => t.trim())
        .filter(Boolean)
    else if (f.kind === 'csv')
      body[f.name] = v
        .split(',')
        .map((t) => t.trim())
        .filter(Boolean)
    else body[f.name] = v
  }
  return body
}

function Submit() {
  const [msg, setMsg] = useState('')
  const [err, setErr] = useState('')
  const [peers] = useLive(() => call<Api.PeerInfo[]>('GET', '/v1/peers'), [])
  const onSubmit = (e: Event) => {
    e.preventDefault()
    const f = new FormData(e.target as HTMLFormElement)
    call<Api.SubmitResponse>(
      'POST',
      '/v1/jobs',
      submitBody((k) => String(f.get(k) ?? '')),
    ).then(
      (r) => {
        setErr('')
        setMsg(`Submitted ${r.name}: ${r.framesTotal} frames`)
        location.hash = `#/jobs/${r.jobId}`
      },
      (x: Error) => setErr(x.message),
    )
  }
  const known = tagsOf(peers ?? []).filter(Boolean)
  const input = (f: FormField) =>
    f.kind === 'select'
      ? html`<select name=${f.name}>${(f.options ?? []).map(([v, l]) => html`<option value=${v}>${l}</option>`)}</select>`
      : html`<input name=${f.name} type=${f.kind === 'number' ? 'number' : 'text'} list=${f.kind === 'list' ? `${f.name}-known` : undefined} ...${f.attrs ?? {}} />`
  return html`<h1>Submit</h1><${ErrorLine} msg=${err} />${msg && html`<p>${msg}</p>`}
    <form class="submit" onSubmit=${onSubmit}>
    ${SUBMIT_FORM.map((f) => html`<label>${f.label} ${input(f)}</label>`)}
    <datalist id="tags-known">${known.map((t) => html`<option value=${t} />`)}</datalist>
    ${known.length > 0 && html`<p class="hint">Tags on the mesh: ${known.map((t) => html`<span class="tag">${t}</span> `)}</p>`}
    <button type="submit">Submit</button></form>`
}

function Tokens() {
  const [tokens, err, refresh] = useLive(() => call<Api.TokenInfo[]>('GET', '/v1/tokens'), [])
  const [out, setOut] = useState('')
  const [actErr, setActErr] = useState('')
  const done = (p: Promise<unknown>, show: (r: never) => string) =>
    p.then(
      (r) => {
        setActErr('')
        setOut(show(r as never))
        refresh()
      },
      (e: Error) => setActErr(e.message),
    )
  const issue = (e: Event) => {
    e.preventDefault()
    const f = new FormData(e.target as HTMLFormElement)
    const caps = String(f.get('caps') || 'render')
      .split(',')
      .map((s) => s.trim())
    done(call('POST', '/v1/tokens', { peer: f.get('peer'), caps }), (r: Api.IssuedToken) => r.token)
  }
  return html`<h1>Tokens</h1><${ErrorLine} msg=${err || actErr} />${out && html`<pre aria-label="issued">${out}</pre>`}
    <table><thead><tr><th>Id</th><th>Peer</th><th>Caps</th><th>Expires</th><th>Revoked</th><th></th></tr></thead>
    <tbody>${(tokens ?? []).map(
      (
        t,
      ) => html`<tr><td>${short(t.id)}</td><td>${short(t.audience)}${t.self ? ' (this node)' : ''}</td><td>${t.caps.join(', ')}</td>
      <td>${t.expires ? new Date(t.expires).toLocaleString() : 'never'}</td><td>${t.revoked ? 'yes' : 'no'}</td>
      <td>${!t.revoked && !t.self && html`<button onClick=${() => done(call('POST', `/v1/tokens/${t.id}/revoke`, {}), () => 'revoked')}>Revoke</button>`}</td></tr>`,
    )}</tbody></table>
    <h2>Issue</h2><form onSubmit=${issue}><label>Peer id <input name="peer" required /></label>
    <label>Caps <input name="caps" placeholder="render,submit" /></label> <button type="submit">Issue</button></form>
    <h2>Invite</h2><button onClick=${() => done(call('POST', '/v1/tokens/invite', {}), (r: Api.InviteResponse) => r.invite)}>New invite</button>`
}

function App() {
  const [hash, setHash] = useState(location.hash || '#/')
  useEffect(() => {
    const on = () => setHash(location.hash || '#/')
    addEventListener('hashchange', on)
    return () => removeEventListener('hashchange', on)
  }, [])
  const jobMatch = /^#\/jobs\/([a-z2-7]{6,8})$/.exec(hash)
  const route = hash.split('?')[0]
  const page = jobMatch
    ? html`<${Job} id=${jobMatch[1]} />`
    : route === '#/jobs'
      ? html`<${Jobs} />`
      : route === '#/submit'
        ? html`<${Submit} />`
        : route === '#/tokens'
          ? html`<${Tokens} />`
          : html`<${Mesh} />`
  const nav = (href: string, label: string) =>
    html`<a href=${href} aria-current=${route === href ? 'page' : undefined}>${label}</a>`
  return html`<header><strong>rmesh</strong><nav>${nav('#/', 'Mesh')} ${nav('#/jobs', 'Jobs')} ${nav('#/submit', 'Submit')} ${nav('#/tokens', 'Tokens')}</nav></header>
    <main>${page}</main>`
}

const loginForm = document.getElementById('login') as HTMLFormElement | null
if (loginForm) {
  loginForm.addEventListener('submit', (e) => {
    e.preventDefault()
    const password = (document.getElementById('pw') as HTMLInputElement).value
    fetch('/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-rmesh-csrf': '1' },
      body: JSON.stringify({ password }),
    }).then((r) => {
      if (r.redirected || r.ok) location.href = '/'
      else alert('Wrong password')
    })
  })
} else {
  startEvents()
  render(html`<${App} />`, document.getElementById('app')!)
}
