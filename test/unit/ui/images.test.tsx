/**
 * The dashboard's terminal images: the PNG decoder (against ffmpeg's own decode of the same
 * file), the sixel / kitty / iTerm2 sequences (recorded expected output), detection from
 * the environment, the stdout overlay, and the dashboard reserving a box and placing the
 * latest finished frame's thumbnail in it.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { crc32, deflateSync } from 'node:zlib'
import { render } from 'ink-testing-library'
import { afterAll, describe, expect, it } from 'vitest'
import { Dashboard } from '../../../cli/ui/App.js'
import { detectImages } from '../../../cli/ui/images/detect.js'
import { createImageOverlay, type Placement } from '../../../cli/ui/images/overlay.js'
import { decodePng, fitRgba, type Rgba } from '../../../cli/ui/images/png.js'
import {
  atCell,
  fitCells,
  itermImage,
  kittyDelete,
  kittyPlace,
  kittyTransmit,
  prepareImage,
} from '../../../cli/ui/images/protocols.js'
import { encodeSixel, quantize } from '../../../cli/ui/images/sixel.js'
import { latestThumb, initialState, reduce } from '../../../cli/ui/state.js'
import { makeTheme, ThemeContext } from '../../../cli/ui/theme.js'
import { makePreview } from '../../../src/engines/thumbnail.js'
import { isRmeshError } from '../../../src/util/errors.js'
import { createFakeClient, detail } from './fake-client.js'

const dir = mkdtempSync(join(tmpdir(), 'rmesh-img-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** A PNG of 8-bit RGB(A) rows, each row with the given filter type (the pixels unfiltered). */
function makePng(w: number, h: number, px: number[], channels: 3 | 4, filter = 0): Uint8Array {
  const chunk = (type: string, data: Uint8Array) => {
    const head = Buffer.alloc(8)
    head.writeUInt32BE(data.length)
    head.write(type, 4, 'latin1')
    const crc = Buffer.alloc(4)
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])))
    return Buffer.concat([head, data, crc])
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(w)
  ihdr.writeUInt32BE(h, 4)
  ihdr.set([8, channels === 3 ? 2 : 6, 0, 0, 0], 8)
  const stride = w * channels
  const raw: number[] = []
  for (let y = 0; y < h; y++) {
    raw.push(filter)
    for (let x = 0; x < stride; x++) {
      const v = px[y * stride + x]
      const left = x >= channels ? px[y * stride + x - channels] : 0
      const up = y > 0 ? px[(y - 1) * stride + x] : 0
      raw.push((v - (filter === 1 ? left : filter === 2 ? up : 0)) & 0xff)
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.from(raw))),
    chunk('IEND', Buffer.alloc(0)),
  ])
}

const RED_BLUE = makePng(
  3,
  2,
  [255, 0, 0, 255, 0, 0, 0, 0, 255, 255, 0, 0, 0, 0, 255, 0, 0, 255],
  3,
)

describe('PNG decoder', () => {
  it('decodes what ffmpeg wrote exactly as ffmpeg decodes it (every filter, RGB and RGBA)', () => {
    for (const [fmt, pix] of [
      ['rgb24', 'rgb24'],
      ['rgba', 'rgba'],
      ['gray', 'gray'],
      ['rgb48be', 'rgb48be'],
    ]) {
      const png = join(dir, `${fmt}.png`)
      execFileSync('ffmpeg', [
        '-loglevel',
        'error',
        '-y',
        '-f',
        'lavfi',
        '-i',
        'testsrc2=size=64x40',
        '-vf',
        'scale=61:37',
        '-frames:v',
        '1',
        '-pix_fmt',
        pix,
        '-pred',
        'mixed',
        png,
      ])
      const raw = execFileSync('ffmpeg', [
        '-loglevel',
        'error',
        '-i',
        png,
        '-f',
        'rawvideo',
        '-pix_fmt',
        'rgba',
        '-',
      ])
      const img = decodePng(readFileSync(png))
      expect([img.width, img.height]).toEqual([61, 37])
      // 16-bit keeps the high byte; ffmpeg rounds: allow 1.
      const diff = img.data.reduce((m, v, i) => Math.max(m, Math.abs(v - raw[i])), 0)
      expect(diff, fmt).toBeLessThanOrEqual(fmt === 'rgb48be' ? 1 : 0)
    }
  })
  it("decodes the PNG the daemon makes of a JPEG thumbnail (thumb?as=png's conversion)", async () => {
    const jpg = join(dir, 'thumb.jpg')
    execFileSync('ffmpeg', [
      '-loglevel',
      'error',
      '-y',
      '-f',
      'lavfi',
      '-i',
      'testsrc2=size=256x144',
      '-frames:v',
      '1',
      jpg,
    ])
    expect(await makePreview(jpg, join(dir, 'thumb.png'), 'JPEG')).toBe(true)
    const img = decodePng(readFileSync(join(dir, 'thumb.png')))
    expect([img.width, img.height]).toEqual([256, 144])
  })
  it('undoes sub and up filters of its own PNG', () => {
    const px = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]
    for (const filter of [0, 1, 2]) {
      const img = decodePng(makePng(2, 2, px, 3, filter))
      expect([...img.data]).toEqual([
        10, 20, 30, 255, 40, 50, 60, 255, 70, 80, 90, 255, 100, 110, 120, 255,
      ])
    }
  })
  it('refuses garbage with a DecodeError', () => {
    const good = RED_BLUE
    const cases: Uint8Array[] = [
      new Uint8Array(0),
      Buffer.from('GIF89a not a png'),
      good.subarray(0, 20),
      good.subarray(0, good.length - 20),
      Buffer.concat([good.subarray(0, 33), Buffer.from('garbage in the data chunk')]),
      new Uint8Array(5 * 1024 * 1024),
    ]
    const huge = Buffer.from(good)
    huge.writeUInt32BE(100_000, 16) // width 100k × 2: over the pixel limit
    cases.push(huge)
    for (const c of cases) {
      let err: unknown
      try {
        decodePng(c)
      } catch (e) {
        err = e
      }
      expect(isRmeshError(err, 'ERR_DECODE')).toBe(true)
    }
  })
  it('fits an image into a pixel box, averaging when it shrinks, repeating when it grows', () => {
    const img: Rgba = { width: 4, height: 2, data: new Uint8Array(32).fill(200) }
    for (let i = 3; i < 32; i += 4) img.data[i] = 255
    img.data[3] = 0 // a transparent pixel goes over black
    const small = fitRgba(img, 2, 10)
    expect([small.width, small.height]).toEqual([2, 1])
    expect(small.data[0]).toBe(150)
    const big = fitRgba(img, 100, 100)
    expect([big.width, big.height]).toEqual([100, 50])
    expect([big.data[0], big.data[99 * 4]]).toEqual([0, 200])
  })
})

describe('sixel', () => {
  it('quantizes by median cut and encodes bands, runs and colour layers (recorded)', () => {
    const img = decodePng(RED_BLUE)
    expect(quantize(img).palette).toEqual([
      [0, 0, 255],
      [255, 0, 0],
    ])
    expect(encodeSixel(img)).toBe('\x1bP0;1;0q"1;1;3;2#0;2;0;0;100#1;2;100;0;0#0?AB$#1B@\x1b\\')
  })
  it('run-length encodes and moves to the next band every 6 rows', () => {
    const w = 10
    const h = 7
    const img: Rgba = { width: w, height: h, data: new Uint8Array(w * h * 4).fill(255) }
    expect(encodeSixel(img)).toBe('\x1bP0;1;0q"1;1;10;7#0;2;100;100;100#0!10~-#0!10@\x1b\\')
  })
  it('keeps at most 255 colours for a photo-like image', () => {
    const w = 64
    const h = 64
    const data = new Uint8Array(w * h * 4)
    for (let i = 0; i < w * h; i++) data.set([(i * 7) & 255, (i * 13) & 255, i & 255, 255], i * 4)
    const q = quantize({ width: w, height: h, data })
    expect(q.palette.length).toBe(255)
    expect(Math.max(...q.indices)).toBeLessThan(255)
  })
})

describe('kitty and iTerm2 sequences', () => {
  it('are recorded byte for byte', () => {
    const png = new Uint8Array([1, 2, 3])
    expect(kittyTransmit(7, png)).toBe('\x1b_Ga=t,f=100,t=d,i=7,q=2,m=0;AQID\x1b\\')
    expect(kittyPlace(7, 20, 6)).toBe('\x1b_Ga=p,i=7,p=1,c=20,r=6,C=1,q=2\x1b\\')
    expect(kittyDelete(7)).toBe('\x1b_Ga=d,d=I,i=7,q=2\x1b\\')
    expect(itermImage(png, 20, 6)).toBe(
      '\x1b]1337;File=inline=1;size=3;width=20;height=6;preserveAspectRatio=1:AQID\x07',
    )
    expect(atCell('IMG', 5, 30, 20)).toBe('\x1b7\x1b[15A\r\x1b[30CIMG\x1b8')
    expect(atCell('IMG', 20, 0, 20)).toBe('\x1b7\rIMG\x1b8')
  })
  it('kitty sends payloads over 4096 base64 bytes in chunks', () => {
    const seq = kittyTransmit(1, new Uint8Array(4000)) // 5336 base64 bytes
    const parts = seq.split('\x1b\\').filter(Boolean)
    expect(parts.length).toBe(2)
    expect(parts[0]).toMatch(/^\x1b_Ga=t,f=100,t=d,i=1,q=2,m=1;[A]{4096}$/)
    expect(parts[1]).toMatch(/^\x1b_Gm=0;A{1238}==$/)
  })
  it('fits an image in cells keeping its aspect (8×16 px cells by default)', () => {
    expect(fitCells(256, 144, 40, 12)).toEqual({ cols: 40, rows: 11 })
    expect(fitCells(100, 400, 40, 12)).toEqual({ cols: 6, rows: 12 })
    const p = prepareImage('sixel', RED_BLUE, 4, 4)
    expect(p.draw.startsWith('\x1bP0;1;0q"1;1;24;16')).toBe(true) // within 4×1 cells of 8×16 px
    expect(prepareImage('kitty', RED_BLUE, 4, 4, { id: 9 }).setup).toContain('i=9')
  })
})

describe('detection', () => {
  it('follows the terminal, an explicit choice wins, tmux and unknown terminals get none', () => {
    const p = (env: Record<string, string>, flag?: string) => detectImages(env, flag).protocol
    expect(p({ TERM: 'xterm-kitty' })).toBe('kitty')
    expect(p({ TERM: 'xterm-256color', KITTY_WINDOW_ID: '1' })).toBe('kitty')
    expect(p({ TERM: 'xterm-ghostty', TERM_PROGRAM: 'ghostty' })).toBe('kitty')
    expect(p({ TERM: 'xterm-256color', TERM_PROGRAM: 'iTerm.app' })).toBe('iterm')
    expect(p({ TERM: 'xterm-256color', TERM_PROGRAM: 'WezTerm' })).toBe('iterm')
    expect(p({ TERM: 'foot' })).toBe('sixel')
    expect(p({ TERM: 'mlterm' })).toBe('sixel')
    expect(p({ TERM: 'xterm-256color', KONSOLE_VERSION: '230805' })).toBe('sixel')
    expect(p({ TERM: 'xterm-256color' })).toBe('off')
    expect(p({ TERM: 'dumb', KITTY_WINDOW_ID: '1' })).toBe('off')
    expect(p({ TERM: 'tmux-256color', KITTY_WINDOW_ID: '1', TMUX: '/tmp/x' })).toBe('off')
    expect(p({ TERM: 'screen' })).toBe('off')
    expect(p({ TERM: 'tmux-256color', TMUX: '/tmp/x', RMESH_IMAGES: 'kitty' })).toBe('kitty')
    expect(p({ TERM: 'xterm-kitty', RMESH_IMAGES: 'off' })).toBe('off')
    expect(p({ TERM: 'xterm-kitty', RMESH_IMAGES: 'off' }, 'SIXEL')).toBe('sixel')
    expect(p({ TERM: 'xterm-kitty', RMESH_IMAGES: '' })).toBe('kitty')
  })
  it('refuses an unknown mode with a typed error naming where it came from', () => {
    for (const [env, flag, field] of [
      [{ RMESH_IMAGES: 'png' }, undefined, 'RMESH_IMAGES'],
      [{}, 'yes', '--images'],
    ] as const) {
      let err: unknown
      try {
        detectImages(env, flag)
      } catch (e) {
        err = e
      }
      expect(isRmeshError(err, 'ERR_INVALID_INPUT')).toBe(true)
      expect((err as { details: { field: string } }).details.field).toBe(field)
    }
  })
})

function fakeStdout() {
  const writes: string[] = []
  const s = { columns: 100, rows: 30, isTTY: true, write: (c: string) => writes.push(c) > 0 }
  return { s: s as unknown as NodeJS.WriteStream, writes }
}

describe('overlay', () => {
  const image = { setup: 'SETUP', draw: 'DRAW', teardown: 'DEL', cols: 4, rows: 2 }
  it('passes Ink through untouched while no image shows, and redraws after each frame', () => {
    const { s, writes } = fakeStdout()
    const o = createImageOverlay(s)
    expect(o.stdout.columns).toBe(100)
    o.stdout.write('frame\nlines\n')
    expect(writes).toEqual(['frame\nlines\n'])
    writes.length = 0
    const at: Placement = { image, row: 3, col: 10, frameRows: 29 }
    o.show(at)
    expect(writes).toEqual(['SETUP', '\x1b7\x1b[26A\r\x1b[10CDRAW\x1b8'])
    writes.length = 0
    o.show({ ...at }) // same place, same image: nothing
    o.stdout.write('\x1b[?2026h') // synchronized-output marker: no redraw
    o.stdout.write('next\nframe\n')
    expect(writes).toEqual(['\x1b[?2026h', 'next\nframe\n', '\x1b7\x1b[26A\r\x1b[10CDRAW\x1b8'])
    writes.length = 0
    o.show(undefined)
    o.stdout.write('a\nb\n')
    expect(writes).toEqual(['DEL', 'a\nb\n'])
    o.close()
  })
})

describe('dashboard with images', () => {
  it('the latest finished frame is the one the stream last reported done', () => {
    let s = reduce(initialState(0), { type: 'detail', job: detail() })
    const d = s.detail!
    expect(latestThumb(s)).toBeUndefined() // the fake job's frames have no thumbnails
    const frames = d.frames.map((f) => (f.state === 'done' ? { ...f, thumb: `cid${f.frame}` } : f))
    s = reduce(s, { type: 'detail', job: { ...d, frames } })
    const done = frames.filter((f) => f.state === 'done')
    expect(latestThumb(s)?.frame).toBe(done[done.length - 1].frame)
    s = reduce(s, {
      type: 'event',
      now: 0,
      event: { type: 'frame-updated', seq: 1, jobId: d.jobId, frame: done[0] },
    } as never)
    expect(latestThumb(s)?.frame).toBe(done[0].frame)
  })
  it('reserves a box beside the frames and places the thumbnail there; none without images', async () => {
    const base = detail()
    const job = {
      ...base,
      frames: base.frames.map((f) => (f.state === 'done' ? { ...f, thumb: 'cidX' } : f)),
    }
    const client = createFakeClient({ jobs: [job] })
    client.on('thumbnailPng', () => RED_BLUE)
    const shown: (Placement | undefined)[] = []
    const overlay = { stdout: process.stdout, show: (p?: Placement) => shown.push(p), close() {} }
    const app = render(
      <ThemeContext.Provider value={makeTheme(false)}>
        <Dashboard
          client={client}
          cwd={dir}
          reconnectMs={20}
          images={{ protocol: 'iterm', overlay }}
        />
      </ThemeContext.Provider>,
    )
    const end = Date.now() + 2000
    while (!shown.some((p) => p) && Date.now() < end) await new Promise((r) => setTimeout(r, 10))
    const p = shown.find((x) => x) as Placement
    expect(p.image.draw).toContain('\x1b]1337;File=inline=1')
    expect(p.col).toBeGreaterThan(40) // right of the frame grid
    expect(p.row).toBeGreaterThan(3) // below the header, peers and jobs
    expect(client.calls.some((c) => c.method === 'thumbnailPng')).toBe(true)
    app.unmount()
    expect(shown[shown.length - 1]).toBeUndefined()
  })
})
