/**
 * The `n` form: scene path (Tab completes from the file system), frames prefilled from the
 * scene's metadata (POST /v1/scenes/inspect), chunk, format, video, priority, pack. It
 * validates with the CLI's own validator (cli/validate.ts) before submitting.
 */
import { readdir } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import { Box, Text, useInput } from 'ink'
import { useReducer, useRef, useState } from 'react'
import type { ApiClient } from '../../src/api/client.js'
import type { SubmitResponse } from '../../src/api/types.js'
import { describeError, isRmeshError } from '../../src/util/errors.js'
import { buildSubmitRequest, resolvePath } from '../validate.js'
import { useTheme } from './theme.js'

export interface FormValues {
  scene: string
  frames: string
  chunk: string
  format: string
  video: string
  priority: string
  pack: string
}

const FIELDS: { key: keyof FormValues; label: string; hint: string }[] = [
  { key: 'scene', label: 'Scene', hint: 'path to a .blend (Tab completes)' },
  { key: 'frames', label: 'Frames', hint: "'1-250' or '1-10,20'" },
  { key: 'chunk', label: 'Chunk', hint: 'frames per task' },
  { key: 'format', label: 'Format', hint: 'png, exr, jpeg, … (empty: scene)' },
  { key: 'video', label: 'Video', hint: 'h264, vp9, av1 or empty' },
  { key: 'priority', label: 'Priority', hint: '0-100' },
  {
    key: 'pack',
    label: 'Pack',
    hint: 'y/n: pack assets into the scene (they travel as files otherwise)',
  },
]

/** Completes the last path segment to the longest common prefix of matching entries. */
export async function completePath(cwd: string, typed: string): Promise<string> {
  const abs = resolvePath(cwd, typed || '.')
  const dir = typed.endsWith('/') ? abs : dirname(abs)
  const prefix = typed.endsWith('/') ? '' : basename(abs)
  let entries: { name: string; dir: boolean }[]
  try {
    entries = (await readdir(dir, { withFileTypes: true }))
      .filter((e) => e.name.startsWith(prefix) && (e.isDirectory() || e.name.endsWith('.blend')))
      .map((e) => ({ name: e.name, dir: e.isDirectory() }))
  } catch {
    return typed
  }
  if (entries.length === 0) return typed
  let common = entries[0].name
  for (const e of entries) while (!e.name.startsWith(common)) common = common.slice(0, -1)
  const head = typed.endsWith('/') ? typed : typed.slice(0, typed.length - prefix.length)
  const single = entries.length === 1
  return head + common + (single && entries[0].dir ? '/' : '')
}

export function SubmitForm(props: {
  client: ApiClient
  cwd: string
  onDone: (res: SubmitResponse) => void
  onCancel: () => void
  initial?: Partial<FormValues>
}) {
  const { color } = useTheme()
  // Values and the active field live in refs, changed synchronously by each key: keys that
  // arrive faster than React re-renders (a paste, a fast typist) then act on the latest
  // state instead of the state of the last render.
  const valuesRef = useRef<FormValues>({
    scene: '',
    frames: '',
    chunk: '1',
    format: '',
    video: '',
    priority: '50',
    pack: 'n',
    ...props.initial,
  })
  const fieldRef = useRef(0)
  const [, rerender] = useReducer((n: number) => n + 1, 0)
  const setValues = (change: (v: FormValues) => FormValues) => {
    valuesRef.current = change(valuesRef.current)
    rerender()
  }
  const values = valuesRef.current
  const field = fieldRef.current
  const [message, setMessage] = useState<{ text: string; error: boolean } | undefined>()
  const busyRef = useRef(false)
  const setBusy = (b: boolean) => {
    busyRef.current = b
    rerender()
  }
  const busy = busyRef.current
  const submitIndex = FIELDS.length

  const inspect = async (scene: string) => {
    if (!scene.endsWith('.blend')) return
    try {
      const info = await props.client.inspect({ path: resolvePath(props.cwd, scene) })
      setValues((v) => ({
        ...v,
        frames: v.frames || `${info.frameStart}-${info.frameEnd}`,
        format: v.format || (typeof info.format === 'string' ? info.format.toLowerCase() : ''),
      }))
      setMessage({
        text: `scene: ${info.frameStart}-${info.frameEnd} @ ${info.fps} fps, ${info.resolution.x}×${info.resolution.y}, ${info.renderEngine}`,
        error: false,
      })
    } catch (err) {
      setMessage({ text: describeError(err), error: true })
    }
  }

  const submit = async () => {
    setBusy(true)
    try {
      const values = valuesRef.current
      const req = await buildSubmitRequest(
        {
          scene: values.scene,
          frames: values.frames.trim() || undefined,
          chunk: values.chunk.trim() || undefined,
          format: values.format.trim() || undefined,
          video: values.video.trim() || undefined,
          priority: values.priority.trim() || undefined,
          pack: /^y/i.test(values.pack),
        },
        props.cwd,
      )
      const res = await props.client.submit(req)
      props.onDone(res)
    } catch (err) {
      setMessage({ text: isRmeshError(err) ? err.message : describeError(err), error: true })
      setBusy(false)
    }
  }

  const move = (to: number) => {
    if (fieldRef.current === 0 && to !== 0) void inspect(valuesRef.current.scene)
    fieldRef.current = Math.max(0, Math.min(submitIndex, to))
    rerender()
  }

  useInput((input, key) => {
    const field = fieldRef.current
    if (busyRef.current) return
    if (key.escape) return props.onCancel()
    if (key.upArrow || (key.tab && key.shift)) return move(field - 1)
    if (key.downArrow) return move(field + 1)
    if (key.tab) {
      if (field === 0) {
        void completePath(props.cwd, valuesRef.current.scene).then((scene) =>
          setValues((v) => ({ ...v, scene })),
        )
        return
      }
      return move(field + 1)
    }
    if (key.return) {
      if (field === submitIndex) return void submit()
      return move(field + 1)
    }
    if (field === submitIndex) return
    const k = FIELDS[field].key
    if (key.backspace || key.delete) {
      setValues((v) => ({ ...v, [k]: v[k].slice(0, -1) }))
      return
    }
    if (input && !key.ctrl && !key.meta) setValues((v) => ({ ...v, [k]: v[k] + input }))
  })

  return (
    <Box flexDirection="column" borderStyle="round" paddingX={1}>
      <Text bold>New job</Text>
      {FIELDS.map((f, i) => (
        <Text key={f.key} wrap="truncate-end">
          <Text inverse={i === field}>{f.label.padEnd(9)}</Text> {values[f.key]}
          {i === field ? <Text inverse> </Text> : null} <Text dimColor>{f.hint}</Text>
        </Text>
      ))}
      <Text inverse={field === submitIndex} color={color('green')}>
        {busy ? ' submitting… ' : ' [ Submit ] '}
      </Text>
      {message ? (
        <Text color={color(message.error ? 'red' : 'gray')} wrap="truncate-end">
          {message.text}
        </Text>
      ) : null}
      <Text dimColor>↑/↓ move · Tab complete · Enter next/submit · Esc close</Text>
    </Box>
  )
}
