import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { afterEach, describe, expect, it } from 'vitest'
import { createMesh, isMeshId, loadMeshOwner, meshIdOf } from '../../../src/auth/mesh.js'
import { createTokenStore } from '../../../src/auth/token-store.js'
import { fixture, ownerToken } from './helpers.js'

describe('mesh and token store', () => {
  const dirs: string[] = []
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
  })
  const tmp = async () => {
    const d = await mkdtemp(join(tmpdir(), 'rmesh-auth-unit-'))
    dirs.push(d)
    return d
  }

  it('creates a mesh once (0600), loads it, refuses to overwrite', async () => {
    const dir = await tmp()
    await expect(loadMeshOwner(dir)).rejects.toMatchObject({ code: 'ERR_MESH_NOT_FOUND' })
    const m = await createMesh(dir)
    expect(isMeshId(m.meshId)).toBe(true)
    expect(m.meshId).toBe(meshIdOf(m.ownerPublicKey))
    expect((await stat(join(dir, 'mesh.key'))).mode & 0o777).toBe(0o600)
    await expect(createMesh(dir)).rejects.toMatchObject({ code: 'ERR_MESH_EXISTS' })
    expect((await loadMeshOwner(dir)).meshId).toBe(m.meshId)
  })

  it('stores tokens, revocations survive reopen, invite nonces are single-use under concurrency', async () => {
    const path = join(await tmp(), 'db')
    const f = await fixture()
    const t = await ownerToken(f, f.nodeId, ['render'])
    let db = new Level<string, unknown>(path)
    let store = await createTokenStore(db)
    await store.addOwnToken(t.bytes)
    expect((await store.ownTokens()).map((x) => x.id)).toEqual([t.id])
    expect((await store.getToken(t.id))?.id).toBe(t.id)
    expect(await store.revoke(t.id)).toBe(true)
    expect(await store.revoke(t.id)).toBe(false)
    const nonce = new Uint8Array(16).fill(1)
    const results = await Promise.all(
      Array.from({ length: 10 }, () => store.consumeInviteNonce(nonce, 1)),
    )
    expect(results.filter(Boolean)).toHaveLength(1)
    await db.close()
    db = new Level<string, unknown>(path)
    store = await createTokenStore(db)
    expect(store.isRevoked(t.id)).toBe(true)
    expect(await store.consumeInviteNonce(nonce, 1)).toBe(false)
    await db.close()
  })
})
