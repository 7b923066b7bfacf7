import { ensureExampleScene } from '../../../src/engines/example-scene.js'
import { inspectScene, renderChunk, createPersistentBlender } from '../../../src/engines/blender.js'
import { test } from 'vitest'
test('smoke', async () => {
const s = await ensureExampleScene('/tmp/rmcache')
console.log(s)
let t = Date.now()
console.log(JSON.stringify(await inspectScene('blender', s.scenePath)), Date.now() - t)
t = Date.now()
const r = await renderChunk({ blender: 'blender' }, { scenePath: s.scenePath, frames: [1, 2, 3], workDir: '/tmp/rmw/a', format: 'PNG', params: {} }, { signal: new AbortController().signal, onProgress: (p) => { if (p.samples?.done === 8 || p.message.startsWith('saved')) console.log(p) } })
console.log(r, Date.now() - t)
t = Date.now()
const pb = await createPersistentBlender(s.scenePath, { blender: 'blender', logPath: '/tmp/rmw/p.log' })
console.log('ready', Date.now() - t)
for (const f of [1, 2, 3]) {
  t = Date.now()
  const r2 = await pb.render({ frames: [f], workDir: '/tmp/rmw/b', format: 'PNG' }, { signal: new AbortController().signal })
  console.log(r2, Date.now() - t)
}
await pb.close()
console.log('closed', pb.alive())
}, 120000)
