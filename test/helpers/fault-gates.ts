/**
 * The two environmental faults the scenarios inject, shared by the test-engine and the
 * real-Blender variants (test/integration/faults/):
 *  - a partition gate: the file every daemon of a mesh reads through
 *    RMESH_TEST_BLOCK_PEERS_FILE (src/net/test-partition.ts), one side per line;
 *  - a small disk: a tmpfs mounted on a daemon's data directory, filled on demand.
 *
 * Invariants: the gate starts open (an empty file), `heal` empties it; `split` and `heal`
 * return once every daemon sees the change on its connections, so a test never measures
 * the 200 ms polling of the gate. A small disk needs root for mount: without it
 * `mountSmallDisk` returns the reason and the caller skips; `unmount` never throws
 * (afterAll must go on removing directories).
 */
import { execFileSync } from 'node:child_process'
import { mkdir, open, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { apiCall, type DaemonProc, makeTempDir, removeDir, waitFor } from './daemons.js'

/** How long a partition lasts: 10 s in `npm test`, the 30 s with RMESH_LONG_TESTS=1. */
export const PARTITION_MS = process.env.RMESH_LONG_TESTS === '1' ? 30_000 : 10_000

interface PeerView {
  peerId: string
  connected: boolean
}

/** Which of `others` the daemon `d` holds an open connection to. */
export async function connectedTo(d: DaemonProc, others: DaemonProc[]): Promise<boolean[]> {
  const peers = (await apiCall<PeerView[]>(d.socket, 'GET', '/v1/peers')).body
  return others.map((o) => peers.some((p) => p.peerId === o.peerId && p.connected))
}

export interface PartitionGate {
  /** Environment for startFaultMesh: every daemon reads this gate. */
  env: Record<string, string>
  /** Wait until every daemon is connected to every other one. */
  waitFullMesh(procs: DaemonProc[], timeoutMs?: number): Promise<void>
  /** Cut `sideA` from `sideB`; returns once no connection crosses the cut. */
  split(sideA: DaemonProc[], sideB: DaemonProc[], timeoutMs?: number): Promise<void>
  /** Open the gate; returns the ms until both sides hold a connection across it again. */
  heal(sideA: DaemonProc[], sideB: DaemonProc[], timeoutMs?: number): Promise<number>
  remove(): Promise<void>
}

export async function createPartitionGate(): Promise<PartitionGate> {
  const dir = await makeTempDir('rmesh-gate-')
  const file = join(dir, 'partition')
  await writeFile(file, '')
  const anyAcross = async (from: DaemonProc[], to: DaemonProc[]) =>
    (await Promise.all(from.map((d) => connectedTo(d, to)))).flat().some(Boolean)
  return {
    env: { RMESH_TEST_BLOCK_PEERS_FILE: file },
    async waitFullMesh(procs, timeoutMs = 20_000) {
      await waitFor(
        async () => {
          for (const d of procs) {
            const view = await connectedTo(
              d,
              procs.filter((o) => o !== d),
            )
            if (!view.every(Boolean)) return false
          }
          return true
        },
        timeoutMs,
        'a full mesh',
      )
    },
    async split(sideA, sideB, timeoutMs = 10_000) {
      const line = (side: DaemonProc[]) => side.map((d) => d.peerId).join(' ')
      await writeFile(file, `${line(sideA)}\n${line(sideB)}\n`)
      await waitFor(
        async () => !(await anyAcross(sideA, sideB)) && !(await anyAcross(sideB, sideA)),
        timeoutMs,
        'the split',
      )
    },
    async heal(sideA, sideB, timeoutMs = 60_000) {
      await writeFile(file, '')
      const at = Date.now()
      await waitFor(
        async () => (await anyAcross(sideA, sideB)) && (await anyAcross(sideB, sideA)),
        timeoutMs,
        'the halves to reconnect',
        200,
      )
      return Date.now() - at
    },
    async remove() {
      await removeDir(dir)
    },
  }
}

export interface SmallDisk {
  dir: string
  /** Fill the disk, leaving `leaveBytes` free (LevelDB still needs a few appends). */
  fill(leaveBytes: number): Promise<void>
  unmount(): void
}

/**
 * Mount a tmpfs of `sizeMiB` on a fresh directory (a daemon's data directory to be).
 * Returns the reason instead where mount is refused (not root, no tmpfs).
 */
export async function mountSmallDisk(sizeMiB: number): Promise<SmallDisk | string> {
  const dir = await makeTempDir()
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0700`, 'tmpfs', dir], {
      stdio: 'pipe',
    })
  } catch (err) {
    await removeDir(dir)
    return `cannot mount a tmpfs (${(err as Error).message.split('\n')[0]})`
  }
  let mounted = true
  return {
    dir,
    async fill(leaveBytes) {
      // Write until the disk refuses (the daemon writes too, so a size measured up front
      // would race it), halving the piece down to a page, then give back `leaveBytes`.
      await mkdir(join(dir, 'filler'), { recursive: true })
      const path = join(dir, 'filler', `fill-${Date.now()}`)
      const fh = await open(path, 'w')
      let written = 0
      try {
        for (let piece = 1024 * 1024; piece >= 4096; ) {
          try {
            written += (await fh.write(Buffer.alloc(piece))).bytesWritten
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
            piece /= 2
          }
        }
        await fh.truncate(Math.max(0, written - leaveBytes))
      } finally {
        await fh.close()
      }
    },
    unmount() {
      if (!mounted) return
      try {
        execFileSync('umount', [dir], { stdio: 'pipe' })
        mounted = false
      } catch (err) {
        console.log(`[faults] could not unmount ${dir}: ${(err as Error).message}`)
      }
    },
  }
}
