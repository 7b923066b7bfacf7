/**
 * The peer book: peers this node has been connected to, with the addresses they were
 * reached at, kept in LevelDB so a restarted daemon redials its mesh without waiting
 * for discovery.
 *
 * Invariants:
 *  - only addresses we have connected to or that a peer announced for itself (signed
 *    presence) are stored; a peer never writes another peer's entry;
 *  - a record is written when its addresses change or its lastSeen is older than
 *    REFRESH_MS, not on every heartbeat (each heartbeat of each peer was a LevelDB write).
 */
import type { Level } from 'level'

export interface PeerRecord {
  peerId: string
  addrs: string[]
  /** Wall-clock ms when last connected; for pruning only. */
  lastSeen: number
}

type Db = Level<string, unknown>

export interface PeerBook {
  remember(peerId: string, addrs: string[], now: number): Promise<void>
  forget(peerId: string): Promise<void>
  all(): Promise<PeerRecord[]>
}

const MAX_ADDRS = 16
/** lastSeen is for pruning only: a day-old peer book is still current to within this. */
export const REFRESH_MS = 10 * 60_000
/** Peers whose last write is remembered; beyond this a heartbeat may write again. */
const MAX_REMEMBERED = 4096

export function createPeerBook(db: Db): PeerBook {
  const sub = db.sublevel<string, string>('peers', { valueEncoding: 'utf8' })
  // Peer → what was last written for it (its addresses, joined) and when.
  const written = new Map<string, { addrs: string; at: number }>()
  return {
    async remember(peerId, addrs, now) {
      const clean = [
        ...new Set(addrs.filter((a) => typeof a === 'string' && a.length < 256)),
      ].slice(0, MAX_ADDRS)
      if (clean.length === 0) return
      const key = clean.join(' ')
      const last = written.get(peerId)
      if (last && last.addrs === key && now - last.at < REFRESH_MS) return
      if (!last && written.size >= MAX_REMEMBERED) written.clear()
      await sub.put(peerId, JSON.stringify({ peerId, addrs: clean, lastSeen: now }))
      written.set(peerId, { addrs: key, at: now })
    },
    async forget(peerId) {
      written.delete(peerId)
      await sub.del(peerId)
    },
    async all() {
      const out: PeerRecord[] = []
      for await (const [, value] of sub.iterator()) {
        try {
          const rec = JSON.parse(value) as PeerRecord
          if (typeof rec.peerId === 'string' && Array.isArray(rec.addrs)) out.push(rec)
        } catch {
          // A corrupt record is skipped; discovery will find the peer again.
        }
      }
      return out
    },
  }
}
