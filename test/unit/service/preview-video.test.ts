import { describe, expect, it } from 'vitest'
import { previewVideoArgs } from '../../../src/service/preview-video.js'

describe('preview video arguments', () => {
  it('are a small, one-thread H.264 of the numbered frames (recorded); EXR gets the sRGB curve', () => {
    expect(previewVideoArgs('/t', '.png', '24000/1001', '/t/p.mp4')).toEqual([
      '-hide_banner',
      '-loglevel',
      'error',
      '-nostdin',
      '-y',
      '-framerate',
      '24000/1001',
      '-i',
      '/t/%06d.png',
      '-vf',
      "scale=-2:'2*trunc(min(360,ih)/2)':flags=bilinear,format=yuv420p",
      '-c:v',
      'libx264',
      '-preset',
      'veryfast',
      '-crf',
      '28',
      '-threads',
      '1',
      '-movflags',
      '+faststart',
      '-an',
      '-f',
      'mp4',
      '/t/p.mp4',
    ])
    const exr = previewVideoArgs('/t', '.exr', '25', '/t/p.mp4')
    expect(exr.slice(5, 11)).toEqual([
      '-framerate',
      '25',
      '-apply_trc',
      'iec61966_2_1',
      '-i',
      '/t/%06d.exr',
    ])
  })
})
