// What `rmesh submit` checks before the daemon sees the request: the project root and
// --allow-missing (cli/validate.ts).
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { buildSubmitRequest } from '../../../cli/validate.js'

let dir = ''
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true })
})

describe('submit request', () => {
  it('takes --project-root relative to the working folder; it must hold the scene', async () => {
    dir = await mkdtemp(join(tmpdir(), 'rmesh-cli-root-'))
    await mkdir(join(dir, 'shots'))
    await mkdir(join(dir, 'other'))
    await writeFile(join(dir, 'shots', 'a.blend'), 'BLENDER')
    const req = await buildSubmitRequest(
      { scene: 'shots/a.blend', projectRoot: '.', allowMissing: true },
      dir,
    )
    expect(req).toMatchObject({
      scenePath: join(dir, 'shots', 'a.blend'),
      projectRoot: dir,
      allowMissing: true,
    })
    await expect(
      buildSubmitRequest({ scene: 'shots/a.blend', projectRoot: 'other' }, dir),
    ).rejects.toMatchObject({
      code: 'ERR_USAGE',
      message: expect.stringContaining('does not hold'),
    })
    await expect(
      buildSubmitRequest({ scene: 'shots/a.blend', projectRoot: 'nope' }, dir),
    ).rejects.toMatchObject({ code: 'ERR_USAGE', message: expect.stringContaining('not a folder') })
    const plain = await buildSubmitRequest({ scene: 'shots/a.blend' }, dir)
    expect('projectRoot' in plain || 'allowMissing' in plain).toBe(false)
  })
})
