import { it } from 'vitest'
import { SimMesh } from '/work/main/test/sim/mesh.js'
it('prof', async () => {
  const mesh = new SimMesh({ seed: 5, nodes: 20, loss: 0.05, latencyMs: [1, 50] })
  await mesh.start()
  await mesh.submit(mesh.nodes[0], { jobId: 'simjob22', frames: Array.from({ length: 200 }, (_, i) => i + 1) })
  const t0 = performance.now()
  let steps = 0
  for (let i = 0; i < 40; i++) {
    await mesh.runFor(1000)
    const s = mesh.state(mesh.nodes[0], 'simjob22')!
    console.log(i, (performance.now() - t0).toFixed(0), s.state, s.framesDone, mesh.rendersStarted, mesh.nodes[0].replica.allEntries().length)
    if (mesh.allDone('simjob22')) break
  }
}, 120000)
