/**
 * The latest finished frame's thumbnail in the dashboard, where the terminal can show images
 * (./images). The layout reserves a fixed box (this component: blank cells of a known size);
 * the image is drawn over it by the overlay after Ink writes each frame.
 *
 * Invariants: at most one thumbnail fetch in flight (a newer frame aborts the older), each
 * bounded by the client's timeout; a thumbnail that cannot be had or decoded shows a short
 * text in the box instead, never an error on the screen's status line; the overlay is told
 * to show nothing when this box unmounts.
 */
import { Box, type DOMElement, Text } from 'ink'
import { useEffect, useRef, useState } from 'react'
import type { ApiClient } from '../../src/api/client.js'
import type { ImageOverlay } from './images/overlay.js'
import {
  type CellPx,
  type ImageProtocol,
  prepareImage,
  type PreparedImage,
} from './images/protocols.js'

export interface TerminalImages {
  protocol: ImageProtocol
  overlay: ImageOverlay
  cell?: CellPx
}

export interface ThumbTarget {
  jobId: string
  frame: number
  /** The thumbnail's CID: a new one means a new image. */
  thumb: string
}

/** Top-left cell of an Ink element within the whole frame. */
function cellOf(el: DOMElement): { row: number; col: number } {
  let row = 0
  let col = 0
  for (let n: DOMElement | undefined = el; n; n = n.parentNode) {
    row += n.yogaNode?.getComputedTop() ?? 0
    col += n.yogaNode?.getComputedLeft() ?? 0
  }
  return { row: Math.round(row), col: Math.round(col) }
}

export function Thumbnail(props: {
  client: ApiClient
  images: TerminalImages
  target: ThumbTarget
  cols: number
  rows: number
  frameRows: number
}) {
  const { client, images, target, cols, rows, frameRows } = props
  const ref = useRef<DOMElement>(null)
  const [image, setImage] = useState<PreparedImage | undefined>()
  const [note, setNote] = useState('loading…')
  const { jobId, frame, thumb } = target
  const { protocol, cell } = images

  // biome-ignore lint/correctness/useExhaustiveDependencies: thumb: a re-rendered frame is a new image
  useEffect(() => {
    const controller = new AbortController()
    client.thumbnailPng(jobId, frame, { signal: controller.signal }).then(
      (png) => {
        if (controller.signal.aborted) return
        try {
          setImage(prepareImage(protocol, png, cols, rows, { cell }))
        } catch {
          setImage(undefined)
          setNote('(thumbnail unreadable)')
        }
      },
      () => {
        if (controller.signal.aborted) return
        setImage(undefined)
        setNote('(no thumbnail)')
      },
    )
    return () => controller.abort()
  }, [client, jobId, frame, thumb, protocol, cols, rows, cell])

  // After every commit: the box may have moved (resize, panels growing).
  useEffect(() => {
    if (!image || !ref.current) {
      images.overlay.show(undefined)
      return
    }
    const at = cellOf(ref.current)
    images.overlay.show({ image, row: at.row, col: at.col, frameRows })
  })
  useEffect(() => () => images.overlay.show(undefined), [images.overlay])

  return (
    <Box ref={ref} width={cols} height={rows} flexShrink={0} flexDirection="column">
      {image ? null : (
        <Text dimColor wrap="truncate-end">
          {note}
        </Text>
      )}
    </Box>
  )
}
