/**
 * Reading a job's products: its history or a frame's render log (`rmesh logs`), and its
 * outputs copied into a folder or a ZIP (`rmesh fetch`).
 *
 * Invariants: files are written only under the absolute destination the local caller gave,
 * with names made from frame numbers (never a peer's name); staging folders are removed
 * whatever happens.
 */
import { randomBytes } from 'node:crypto'
import { access, mkdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, isAbsolute, join } from 'node:path'
import type * as Api from '../api/types.js'
import { safeExtension } from '../blobs/safe-name.js'
import { jobLogId } from '../log/types.js'
import { withDeadline } from '../util/abort.js'
import { InvalidInputError, NotFoundError } from '../util/errors.js'
import { frameFileName, type ServiceContext } from './context.js'
import { writeZip } from './zip.js'

const LOGS_DEADLINE_MS = 30_000
const FETCH_DEADLINE_MS = 60 * 60_000

export interface JobFetch {
  logs(idOrPrefix: string, q: Api.LogsQuery, signal?: AbortSignal): Promise<string>
  fetch(idOrPrefix: string, req: Api.FetchRequest, signal?: AbortSignal): Promise<Api.FetchResponse>
}

export function createJobFetch(ctx: ServiceContext): JobFetch {
  const { c, jobOf, resolveId } = ctx
  return {
    logs(id, q, callerSignal) {
      return withDeadline(LOGS_DEADLINE_MS, callerSignal, async (signal) => {
        const s = jobOf(resolveId(id))
        if (q.frame === undefined) {
          const entries = await c.log.entries(jobLogId(s.jobId))
          return `${entries.map((e) => `${new Date(e.wall).toISOString()} ${e.author.slice(-8)} ${e.kind} ${JSON.stringify(e.body).slice(0, 200)}`).join('\n')}\n`
        }
        const ch = s.chunks.find((x) => x.frames.includes(q.frame!))
        if (!ch) throw new NotFoundError(`frame ${q.frame} in job ${s.jobId}`)
        const logCid =
          ch.log ??
          (
            [...ch.failures].reverse().find((f) => (f as { log?: string }).log) as
              | { log?: string }
              | undefined
          )?.log
        if (!logCid)
          throw new NotFoundError(
            `a log for frame ${q.frame} yet (it has not finished an attempt; use --follow to watch it live)`,
          )
        const dest = join(tmpdir(), `rmesh-log-${randomBytes(6).toString('hex')}`)
        try {
          await ctx.materialize(
            logCid,
            [ch.completedBy, ...ch.failures.map((f) => f.node)].filter(
              (x): x is NonNullable<typeof x> => !!x,
            ),
            dest,
            `job-collected/${s.jobId}`,
            signal,
          )
          let text = await readFile(dest, 'utf8')
          if (q.tail)
            text = `${text
              .split('\n')
              .slice(-q.tail - 1)
              .join('\n')}`
          return text
        } finally {
          await rm(dest, { force: true })
        }
      })
    },
    fetch(id, req, callerSignal) {
      return withDeadline(FETCH_DEADLINE_MS, callerSignal, async (signal) => {
        const s = jobOf(resolveId(id))
        if (!req || typeof req.out !== 'string' || !isAbsolute(req.out))
          throw new InvalidInputError('out must be an absolute path', { field: 'out' })
        const staging = req.zip
          ? join(tmpdir(), `rmesh-fetch-${randomBytes(6).toString('hex')}`)
          : req.out
        await mkdir(staging, { recursive: true })
        const files: { name: string; path: string }[] = []
        const missing: number[] = []
        try {
          for (const ch of s.chunks) {
            if (ch.state !== 'done' || !ch.outputs) {
              if (ch.kind === 'frames') missing.push(...ch.frames)
              continue
            }
            for (const o of ch.outputs) {
              const name =
                ch.kind === 'encode'
                  ? ctx.videoName(s)
                  : frameFileName(o.frame, safeExtension(o.name))
              const path = join(staging, name)
              try {
                await access(path)
              } catch {
                await ctx.materialize(
                  o.manifest,
                  ch.completedBy ? [ch.completedBy] : [],
                  path,
                  `job-collected/${s.jobId}`,
                  signal,
                )
              }
              files.push({ name, path })
            }
          }
          let bytes = 0
          if (req.zip) {
            await mkdir(dirname(req.out), { recursive: true })
            bytes = (await writeZip(req.out, files)).bytes
          } else {
            for (const f of files) bytes += (await stat(f.path)).size
          }
          return { jobId: s.jobId, out: req.out, files: files.length, bytes, missing }
        } finally {
          if (req.zip) await rm(staging, { recursive: true, force: true })
        }
      })
    },
  }
}
