// `rmesh addon pack`: the zip Blender installs holds the add-on's modules under rmesh_submit/.
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { packAddon } from '../../../cli/commands/addon.js'

describe('rmesh addon pack', () => {
  it('writes the add-on zip with its modules under rmesh_submit/', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rmesh-addon-'))
    try {
      const r = await packAddon(join(dir, 'a.zip'))
      expect(r.files).toEqual(['rmesh_submit/__init__.py', 'rmesh_submit/client.py'])
      const zip = await readFile(r.path)
      expect(zip.subarray(0, 4).toString('hex')).toBe('504b0304')
      for (const f of r.files) expect(zip.includes(Buffer.from(f))).toBe(true)
      // The module Blender loads declares itself for 3.4 and up.
      expect(zip.toString('latin1')).toContain('"blender": (3, 4, 0)')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
