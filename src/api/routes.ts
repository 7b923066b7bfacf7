/**
 * The control API's routes: each validates its request and calls into the daemon.
 * Request shapes are in src/api/types.ts; every handler either returns a JSON-able value
 * or throws a typed error that the HTTP layer turns into `{error}`.
 */
import { createInvite, formatInvite, INVITE_STRING_PREFIX, redeemInvite } from '../auth/invite.js'
import {
  byPeer,
  encodeMemberAddrs,
  MEMBER_ADDRS_SEPARATOR,
  pickMemberAddrs,
  splitTokenCode,
} from '../auth/member-addrs.js'
import { formatToken, parseTokenString, type Token } from '../auth/token.js'
import type { DaemonView } from './daemon-view.js'
import { REVOKE_KIND } from '../auth/admission.js'
import { MESH_LOG, type LogId } from '../log/types.js'
import { InvalidInputError, NotFoundError, RmeshError } from '../util/errors.js'
import type { Preview } from '../service/previews.js'
import { ApiBytes, ApiFile, ApiStream, ApiText, type ApiHttpServer } from './http.js'
import { renderMetrics } from './metrics.js'
import { registerNodeRoutes } from './node-routes.js'
import type * as Api from './types.js'
import { CAPS, EVENT_PING_INTERVAL_MS, JOB_STATES } from './types.js'
import { nodeInfoOf, peersOf } from './views.js'

const obj = (body: unknown): Record<string, unknown> => {
  if (body === undefined || body === null) return {}
  if (typeof body !== 'object' || Array.isArray(body))
    throw new InvalidInputError('the request body must be a JSON object')
  return body as Record<string, unknown>
}

const optInt = (v: unknown, field: string, min: number, max: number): number | undefined => {
  if (v === undefined || v === null || v === '') return undefined
  const n = typeof v === 'string' ? Number(v) : v
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max)
    throw new InvalidInputError(`${field} must be a whole number from ${min} to ${max}`, { field })
  return n
}

const capsOf = (v: unknown, dflt: Api.Cap[]): Api.Cap[] => {
  if (v === undefined) return dflt
  if (!Array.isArray(v) || v.length === 0 || !v.every((c) => CAPS.includes(c as Api.Cap)))
    throw new InvalidInputError(`caps must be a non-empty list of ${CAPS.join(', ')}`, {
      field: 'caps',
    })
  return [...new Set(v as Api.Cap[])]
}

function tokenInfo(d: DaemonView, t: Token, self: boolean): Api.TokenInfo {
  return {
    id: t.id,
    audience: t.aud,
    issuer: typeof t.iss === 'string' ? t.iss : 'owner',
    caps: [...t.cap],
    notBefore: t.nbf * 1000,
    expires: t.exp * 1000,
    revoked: d.tokens.isRevoked(t.id) || d.tokens.isRevoked(t.aud),
    maxQueued: t.lim.maxQueuedJobs,
    self,
  }
}

/** A newly issued token as the API returns it: the printable string with its facts. */
/** A few members' addresses for a join code: this node first, then peers heard recently. */
function memberAddrsOf(d: DaemonView, exclude?: string): string[] {
  const members = [
    { peerId: d.peerId, addrs: d.libp2p.getMultiaddrs().map(String) },
    ...[...d.presence.peers().entries()]
      .filter(([id, e]) => e.state !== 'gone' && id !== exclude)
      .map(([peerId, e]) => ({ peerId, addrs: e.presence.addrs })),
  ]
  try {
    return pickMemberAddrs(members)
  } catch {
    return []
  }
}

function issuedToken(token: Token, memberAddrs: string[] = []): Api.IssuedToken {
  return {
    id: token.id,
    token:
      formatToken(token) +
      (memberAddrs.length ? MEMBER_ADDRS_SEPARATOR + encodeMemberAddrs(memberAddrs) : ''),
    audience: token.aud,
    caps: [...token.cap],
    expires: token.exp * 1000,
  }
}

function requireAdmin(d: DaemonView): void {
  if (!d.admission.token?.cap.includes('admin')) {
    throw new RmeshError(
      'ERR_FORBIDDEN',
      'this node holds no admin token; run this on the node that ran `rmesh init` (or one it made admin)',
      { details: { need: 'admin' } },
    )
  }
}

/** A submit's tags (a pool), checked; the node's submitTags when it names none. */
function withPoolTags(b: Record<string, unknown>, defaults: string[]): Api.SubmitRequest {
  const tags = b.tags ?? defaults
  if (
    !Array.isArray(tags) ||
    tags.length > 32 ||
    !tags.every((t) => typeof t === 'string' && /^[\w.-]{1,32}$/.test(t))
  )
    throw new InvalidInputError('tags must be a list of short words like gpu or studio-a', {
      field: 'tags',
    })
  return { ...b, tags: [...new Set(tags as string[])] } as unknown as Api.SubmitRequest
}

export function registerRoutes(api: ApiHttpServer, d: DaemonView): void {
  const nodeInfo = () =>
    nodeInfoOf(d, {
      meshId: d.admission.meshId,
      admitted: !!d.admission.token,
      caps: d.admission.token ? [...d.admission.token.cap] : [],
      engines: d.engines.describe(),
      blenders: d.engines.blenders(),
      slots: { total: d.config.slots, busy: d.activity.size },
      renderPaused: d.renderPaused(),
      freeDiskBytes: d.freeDiskBytes(),
      peerCount: d.admission.admittedPeers().length,
      rules: d.rules.view(),
      tags: d.config.tags,
    })

  api.route('GET', '/v1/node', nodeInfo)
  registerNodeRoutes(api, d)
  api.route('GET', '/v1/peers', () =>
    peersOf(d).map((p) => ({ ...p, admitted: d.admission.isAdmitted(p.peerId) })),
  )

  // ----- jobs ----------------------------------------------------------------------------
  api.route('GET', '/v1/jobs', (req) => {
    const states = req.query.get('state')?.split(',').filter(Boolean)
    if (states && !states.every((s) => JOB_STATES.includes(s as Api.JobState)))
      throw new InvalidInputError(`state must be among ${JOB_STATES.join(', ')}`, {
        field: 'state',
      })
    return d.jobs.list(states as Api.JobState[] | undefined)
  })
  api.route('POST', '/v1/jobs', (req) =>
    d.jobs.submit(withPoolTags(obj(req.body), d.config.submitTags), req.signal),
  )
  api.route('POST', '/v1/jobs/plan', (req) =>
    d.jobs.plan(withPoolTags(obj(req.body), d.config.submitTags), req.signal),
  )
  api.route('GET', '/v1/jobs/:id', (req) => d.jobs.detail(req.params.id))
  api.route('POST', '/v1/jobs/:id/cancel', (req) => d.jobs.cancel(req.params.id))
  api.route('POST', '/v1/jobs/:id/pause', (req) => d.jobs.pause(req.params.id))
  api.route('POST', '/v1/jobs/:id/resume', (req) => d.jobs.resume(req.params.id))
  api.route('POST', '/v1/jobs/:id/retry', (req) => {
    const b = obj(req.body)
    if (b.frames !== undefined && typeof b.frames !== 'string')
      throw new InvalidInputError('frames must be a frame spec like 1-10,20', { field: 'frames' })
    const unblock = b.unblock
    if (
      unblock !== undefined &&
      unblock !== true &&
      (typeof unblock !== 'string' || !/^[1-9A-HJ-NP-Za-km-z]{1,128}$/.test(unblock))
    )
      throw new InvalidInputError('unblock must be true or a peer id (or a unique prefix)', {
        field: 'unblock',
      })
    if (unblock !== undefined && b.frames !== undefined)
      throw new InvalidInputError('give frames or unblock, not both', { field: 'unblock' })
    return d.jobs.retry(req.params.id, {
      frames: b.frames as string | undefined,
      ...(unblock !== undefined ? { unblock } : {}),
    })
  })
  api.route('POST', '/v1/jobs/:id/priority', (req) => {
    const p = optInt(obj(req.body).priority, 'priority', Api_PRIORITY_MIN, Api_PRIORITY_MAX)
    if (p === undefined) throw new InvalidInputError('priority is required', { field: 'priority' })
    return d.jobs.setPriority(req.params.id, p)
  })
  api.route('DELETE', '/v1/jobs/:id', (req) => d.jobs.remove(req.params.id))
  api.route('POST', '/v1/jobs/:id/fetch', (req) => {
    const b = obj(req.body)
    if (typeof b.out !== 'string')
      throw new InvalidInputError('out must be an absolute path', { field: 'out' })
    return d.jobs.fetch(req.params.id, { out: b.out, zip: b.zip === true }, req.signal)
  })
  api.route('GET', '/v1/jobs/:id/logs', async (req) => {
    const frame = optInt(req.query.get('frame'), 'frame', -1_048_574, 1_048_574)
    const tail = optInt(req.query.get('tail'), 'tail', 1, 1_000_000)
    const jobId = d.jobs.resolveId(req.params.id)
    if (!['1', 'true'].includes(req.query.get('follow') ?? ''))
      return new ApiText(await d.jobs.logs(jobId, { frame, tail }, req.signal))
    return new ApiStream(async (write, signal) => {
      // A frame rendering on another node: its lines come live from that node.
      const holder =
        frame === undefined ? undefined : d.jobs.detail(jobId).frames.find((f) => f.frame === frame)
      if (
        holder?.node &&
        holder.node !== d.peerId &&
        (holder.state === 'rendering' || holder.state === 'claimed')
      ) {
        for await (const line of d.liveLogs.follow(holder.node, jobId, frame, signal)) write(line)
        return
      }
      try {
        const existing = await d.jobs.logs(jobId, { frame, tail }, signal)
        for (const line of existing.split('\n')) if (line) write(line)
      } catch {
        // Nothing finished yet: live lines follow.
      }
      const sub = d.events.subscribe(
        (e) =>
          (e.type === 'log-line' &&
            e.jobId === jobId &&
            (frame === undefined || e.frame === frame)) ||
          (e.type === 'job-updated' && e.job.jobId === jobId),
      )
      signal.addEventListener('abort', () => sub.close(), { once: true })
      for await (const e of sub) {
        if (e.type === 'log-line') write(e.line)
        else if (e.type === 'job-updated') {
          const ended = ['done', 'failed', 'canceled'].includes(e.job.state)
          const frameDone =
            frame !== undefined &&
            d.jobs.detail(jobId).frames.find((f) => f.frame === frame)?.state === 'done'
          if (ended || frameDone) break
        }
      }
    }, 'text/plain; charset=utf-8')
  })
  const frameParam = (req: { params: Record<string, string> }) => {
    const f = optInt(req.params.frame, 'frame', -1_000_000_000, 1_000_000_000)
    if (f === undefined) throw new InvalidInputError('give a frame number', { field: 'frame' })
    return f
  }
  const thumbAs = (as: string | null) => {
    if (as !== null && as !== 'png')
      throw new InvalidInputError('as must be png (or absent: the thumbnail as stored)', {
        field: 'as',
      })
    return as === 'png'
  }
  const previewResult = (p: Preview) =>
    p.bytes
      ? new ApiBytes(p.bytes, p.contentType)
      : new ApiFile(p.path!, p.contentType, { cleanup: p.cleanup, downloadName: p.downloadName })
  api.route('GET', '/v1/jobs/:id/frames/:frame/thumb', async (req) =>
    previewResult(
      await d.jobs.thumbnail(req.params.id, frameParam(req), req.signal, {
        png: thumbAs(req.query.get('as')),
      }),
    ),
  )
  api.route('GET', '/v1/jobs/:id/frames/:frame/image', async (req) =>
    previewResult(await d.jobs.frameImage(req.params.id, frameParam(req), req.signal)),
  )
  api.route('GET', '/v1/jobs/:id/preview', async (req) =>
    previewResult(await d.jobs.previewVideo(req.params.id)),
  )
  api.route('GET', '/v1/jobs/:id/zip', async (req) =>
    previewResult(await d.jobs.zip(req.params.id, req.signal)),
  )
  api.route('POST', '/v1/scenes/inspect', (req) => {
    const b = obj(req.body)
    return d.jobs.inspect({ path: b.path as string }, req.signal)
  })

  // ----- admission -------------------------------------------------------------------------
  api.route('GET', '/v1/tokens', async () => {
    const own = (await d.tokens.ownTokens()).map((t) => tokenInfo(d, t, true))
    const issued = (await d.tokens.issuedTokens())
      .filter((t) => !own.some((o) => o.id === t.id))
      .map((t) => tokenInfo(d, t, false))
    return [...own, ...issued]
  })
  api.route('POST', '/v1/tokens', async (req) => {
    requireAdmin(d)
    const b = obj(req.body)
    if (typeof b.peer !== 'string')
      throw new InvalidInputError(
        'peer must be a peer id (rmesh id prints it on the new machine)',
        { field: 'peer' },
      )
    const caps = capsOf(b.caps, ['render'])
    const ttl = optInt(b.expiresInMs, 'expiresInMs', 60_000, 10 * 365 * 86_400_000)
    const maxQueued = optInt(b.maxQueued, 'maxQueued', 0, 1_000_000)
    const token = await d.issuer.issue({
      audience: b.peer,
      caps,
      ttlSeconds: ttl === undefined ? undefined : Math.floor(ttl / 1000),
      limits: maxQueued === undefined ? undefined : { maxQueuedJobs: maxQueued },
    })
    await d.tokens.recordIssued(token)
    // Publishing the token lets every node authorize the new machine's entries at once.
    await d.log.append(MESH_LOG as LogId, 'admit', { token: token.bytes })
    d.events.publish({ type: 'tokens-changed' })
    return issuedToken(token, memberAddrsOf(d, b.peer))
  })
  api.route('POST', '/v1/tokens/invite', async (req) => {
    requireAdmin(d)
    const b = obj(req.body)
    const caps = capsOf(b.caps, ['render'])
    const ttl = optInt(b.expiresInMs, 'expiresInMs', 60_000, 7 * 86_400_000) ?? 3_600_000
    const meshId = d.admission.meshId
    if (!meshId) throw new RmeshError('ERR_NOT_ADMITTED', 'this node belongs to no mesh yet')
    const addrs = d.libp2p.getMultiaddrs().map((a) => a.toString())
    const invite = await createInvite(
      { nodeKey: d.privateKey, issuer: d.issuer, meshId, clock: d.clock },
      {
        caps,
        expiresInSeconds: Math.floor(ttl / 1000),
        addrs,
        members: memberAddrsOf(d).filter((a) => !a.endsWith(`/p2p/${d.peerId}`)),
      },
    )
    const res: Api.InviteResponse = {
      id: Buffer.from(invite.nnc).toString('hex'),
      invite: formatInvite(invite),
      caps: invite.cap as Api.Cap[],
      expires: invite.exp * 1000,
    }
    return res
  })
  api.route('POST', '/v1/tokens/:id/revoke', async (req) => {
    requireAdmin(d)
    const id = req.params.id
    if (!/^[A-Za-z0-9]{10,128}$/.test(id))
      throw new InvalidInputError('give a token id (rmesh token list) or a peer id', {
        field: 'id',
      })
    const all = [...(await d.tokens.issuedTokens()), ...(await d.tokens.ownTokens())]
    const t = all.find((x) => x.id === id || x.aud === id) ?? (await d.tokens.getToken(id))
    const known =
      t !== undefined || d.presence.peers().has(id) || d.admission.tokenOf(id) !== undefined
    if (!known)
      throw new NotFoundError(`token or peer ${id} (rmesh token list and rmesh peers show the ids)`)
    // Revoking by token id cuts that token; by peer id, every token of that machine.
    const target = t?.id ?? id
    await d.log.append(MESH_LOG as LogId, REVOKE_KIND, { target })
    await d.admission.revoke(target)
    d.events.publish({ type: 'tokens-changed' })
    const token = t ?? d.admission.tokenOf(id)
    if (token) return tokenInfo(d, token, false)
    const info: Api.TokenInfo = {
      id: target,
      audience: id,
      issuer: '',
      caps: [],
      notBefore: 0,
      expires: null,
      revoked: true,
      self: false,
    }
    return info
  })
  api.route('POST', '/v1/tokens/renew', async (req) => {
    const current = d.admission.token
    if (!current)
      throw new RmeshError(
        'ERR_NOT_ADMITTED',
        'this node holds no token to renew; ask an admin for one (rmesh join <token>)',
      )
    const ttl = optInt(obj(req.body).expiresInMs, 'expiresInMs', 60_000, 10 * 365 * 86_400_000)
    if (!(await d.issuer.grantable()).length)
      throw new RmeshError(
        'ERR_FORBIDDEN',
        'only an admin node can renew its own token; ask an admin: rmesh token issue --peer <this id>',
      )
    const token = await d.issuer.issue({
      audience: d.peerId,
      caps: current.cap,
      ttlSeconds: ttl === undefined ? undefined : Math.floor(ttl / 1000),
      limits: current.lim,
    })
    await d.adoptToken(token.bytes)
    return issuedToken(token)
  })
  api.route('POST', '/v1/join', async (req) => {
    const code = obj(req.body).code
    if (typeof code !== 'string' || code.length === 0 || code.length > 32_768)
      throw new InvalidInputError('code must be a token or an invite string', { field: 'code' })
    if (code.trim().startsWith(INVITE_STRING_PREFIX)) {
      const redeemed = await redeemInvite(d.libp2p, code.trim(), { signal: req.signal })
      await d.adoptToken(redeemed.token.bytes)
      keepMembers(d, redeemed.memberAddrs)
      const res: Api.JoinResponse = {
        kind: 'invite',
        tokenId: redeemed.token.id,
        meshId: redeemed.meshId,
        caps: [...redeemed.token.cap],
        expires: redeemed.token.exp * 1000,
      }
      return res
    }
    const split = splitTokenCode(code)
    const token = parseTokenString(split.token)
    if (token.aud !== d.peerId) {
      throw new RmeshError(
        'ERR_TOKEN_WRONG_AUDIENCE',
        `this token is for ${token.aud}, not this node (${d.peerId}); ask for one issued to this node's id (rmesh id)`,
      )
    }
    await d.adoptToken(token.bytes)
    keepMembers(d, split.addrs)
    const res: Api.JoinResponse = {
      kind: 'token',
      tokenId: token.id,
      meshId: token.mesh,
      caps: [...token.cap],
      expires: token.exp * 1000,
    }
    return res
  })

  // ----- live events and metrics ----------------------------------------------------------
  api.route(
    'GET',
    '/v1/events',
    (req) =>
      new ApiStream(async (write, signal) => {
        const logsOf = req.query.get('logs')
        const sub = d.events.subscribe(
          (e) => e.type !== 'log-line' || (logsOf !== null && e.jobId === logsOf),
        )
        write(JSON.stringify({ type: 'node', seq: 0, time: d.clock.wall(), node: nodeInfo() }))
        const ping = setInterval(
          () => write(JSON.stringify({ type: 'ping', seq: 0, time: d.clock.wall() })),
          EVENT_PING_INTERVAL_MS,
        )
        signal.addEventListener('abort', () => sub.close(), { once: true })
        try {
          for await (const e of sub) write(JSON.stringify(e))
        } finally {
          clearInterval(ping)
        }
      }),
  )
  api.route(
    'GET',
    '/metrics',
    async (req) =>
      new ApiText(
        await renderMetrics(d, { gc: req.query.get('gc') === '1' }),
        'text/plain; version=0.0.4',
      ),
  )
}

/** Dial the members a join code named and keep those links (the peer book remembers them). */
function keepMembers(d: DaemonView, addrs: string[]): void {
  for (const [peer, list] of byPeer(addrs)) if (peer !== d.peerId) d.dialer.keep(peer, list)
}

const Api_PRIORITY_MIN = 0
const Api_PRIORITY_MAX = 100
