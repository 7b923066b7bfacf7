/**
 * Looking at a job's frames: a done frame's thumbnail (the block its renderer stored next
 * to the output), its full-size image (an EXR tone-mapped to PNG), and the whole job as a
 * ZIP to download.
 *
 * Invariants: every file read or written is chosen here, from the job's state (outputs this
 * node recorded in outDir) or as a fresh temporary name; a request only names a job and a
 * frame number. Blocks fetched from peers are verified by the exchange and pinned under
 * the job (`job-collected/`), so a delete takes them away.
 */
import { withDeadline } from '../util/abort.js'
import { randomBytes } from 'node:crypto'
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { safeExtension } from '../blobs/safe-name.js'
import { makePreview } from '../engines/thumbnail.js'
import type { ChunkOutput } from '../jobs/entries.js'
import type { ChunkState, JobState } from '../jobs/reducer.js'
import { NotFoundError } from '../util/errors.js'
import { frameFileName, type ServiceContext } from './context.js'
import type { JobFetch } from './fetch.js'

/** Bytes or a file the caller streams, then cleans up. */
export interface Preview {
  contentType: string
  bytes?: Uint8Array
  path?: string
  cleanup?: () => Promise<void>
  downloadName?: string
}

export interface JobPreviews {
  /** `png`: a JPEG thumbnail converted to PNG (what terminals' image protocols take). */
  thumbnail(
    idOrPrefix: string,
    frame: number,
    signal?: AbortSignal,
    o?: { png?: boolean },
  ): Promise<Preview>
  frameImage(idOrPrefix: string, frame: number, signal?: AbortSignal): Promise<Preview>
  zip(idOrPrefix: string, signal?: AbortSignal): Promise<Preview>
}

const TYPE_BY_EXT: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
}

export function sniffImageType(bytes: Uint8Array): string {
  return bytes[0] === 0x89 && bytes[1] === 0x50 ? 'image/png' : 'image/jpeg'
}

export function createJobPreviews(ctx: ServiceContext, fetcher: JobFetch): JobPreviews {
  const { c, jobOf, resolveId } = ctx

  const doneOutput = (
    s: JobState,
    frame: number,
  ): { ch: ChunkState; o: ChunkOutput } | undefined => {
    const ch = s.chunks.find((x) => x.kind === 'frames' && x.frames.includes(frame))
    if (!ch) throw new NotFoundError(`frame ${frame} in job ${s.jobId}`)
    const o = ch.state === 'done' ? ch.outputs?.find((x) => x.frame === frame) : undefined
    return o ? { ch, o } : undefined
  }

  const holdersOf = (s: JobState, ch: ChunkState) =>
    [ch.completedBy, s.submitter].filter((x): x is NonNullable<typeof x> => !!x)

  const tempDir = () => mkdtemp(join(tmpdir(), `rmesh-view-${randomBytes(3).toString('hex')}-`))

  return {
    async thumbnail(id, frame, signal, o) {
      const s = jobOf(resolveId(id))
      const done = doneOutput(s, frame)
      if (!done?.o.thumb)
        throw new NotFoundError(
          `a thumbnail of frame ${frame} yet (it shows once the frame is done)`,
        )
      const cid = done.o.thumb.manifest
      if ((await c.blocks.missingBlocks(cid).catch(() => ['?'])).length > 0)
        await withDeadline(10_000, signal, (bounded) =>
          c.exchange.fetchManifest(cid, {
            providers: holdersOf(s, done.ch),
            pinOwner: `job-collected/${s.jobId}`,
            signal: bounded,
          }),
        )
      const m = await c.blocks.getManifest(cid)
      const parts: Uint8Array[] = []
      for (const b of m.blocks) parts.push(await c.blocks.getBlock(b))
      const bytes = Buffer.concat(parts)
      const contentType = sniffImageType(bytes)
      if (!o?.png || contentType === 'image/png') return { contentType, bytes }
      const dir = await tempDir()
      try {
        await writeFile(join(dir, 'thumb.jpg'), bytes)
        if (
          !(await makePreview(join(dir, 'thumb.jpg'), join(dir, 'thumb.png'), 'JPEG', { signal }))
        )
          throw new NotFoundError(`a PNG thumbnail of frame ${frame} (ffmpeg could not convert it)`)
        return { contentType: 'image/png', bytes: await readFile(join(dir, 'thumb.png')) }
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    },

    async frameImage(id, frame, signal) {
      const s = jobOf(resolveId(id))
      const done = doneOutput(s, frame)
      if (!done) throw new NotFoundError(`an image of frame ${frame} yet (it is not done)`)
      const ext = safeExtension(done.o.name)
      const lj = ctx.localJobs.get(s.jobId)
      let source: string | undefined
      if (lj?.written.includes(done.ch.index)) {
        source = join(lj.outDir, frameFileName(frame, ext))
        if (
          !(await access(source).then(
            () => true,
            () => false,
          ))
        )
          source = undefined
      }
      const dir = await tempDir()
      const cleanup = () => rm(dir, { recursive: true, force: true })
      try {
        if (!source) {
          source = join(dir, `frame${ext}`)
          await ctx.materialize(
            done.o.manifest,
            holdersOf(s, done.ch),
            source,
            `job-collected/${s.jobId}`,
            signal,
          )
        }
        if (TYPE_BY_EXT[ext]) return { contentType: TYPE_BY_EXT[ext], path: source, cleanup }
        // EXR (or anything a browser cannot show): tone-mapped to a PNG of full size.
        const png = join(dir, 'view.png')
        if (!(await makePreview(source, png, 'OPEN_EXR', { signal })))
          throw new NotFoundError(`a viewable image of frame ${frame} (ffmpeg could not read it)`)
        return { contentType: 'image/png', path: png, cleanup }
      } catch (err) {
        await cleanup()
        throw err
      }
    },

    async zip(id, signal) {
      const s = jobOf(resolveId(id))
      const dir = await tempDir()
      const out = join(dir, `${s.jobId}.zip`)
      try {
        await fetcher.fetch(s.jobId, { out, zip: true }, signal)
      } catch (err) {
        await rm(dir, { recursive: true, force: true })
        throw err
      }
      return {
        contentType: 'application/zip',
        path: out,
        downloadName: `${s.jobId}.zip`,
        cleanup: () => rm(dir, { recursive: true, force: true }),
      }
    },
  }
}
