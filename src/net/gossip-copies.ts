/**
 * Counts the copies of gossip messages this node receives beyond the first, by topic.
 *
 * What a message costs a node is paid per copy (a yamux frame, a Noise decryption, a
 * protobuf decode, a seen-cache look-up; issue 17), and gossipsub tells how many copies
 * arrive only to its metrics registry and its peer score. rmesh keeps no libp2p metrics
 * registry, so it listens where the score hears of each duplicate.
 *
 * Invariants:
 *  - observation only: the score's own method runs first, with the same arguments, and
 *    whatever it returns or throws is what gossipsub sees;
 *  - feature-detected: if this gossipsub has no such hook, nothing is installed and the
 *    caller is told (the counter then stays at zero rather than failing the daemon).
 */

interface ScoreWithDuplicates {
  duplicateMessage: (from: string, msgId: string, topic: string) => unknown
}

/** Calls `onDuplicate(topic)` for every copy of a message already seen; false if it cannot. */
export function watchGossipDuplicates(
  pubsub: unknown,
  onDuplicate: (topic: string) => void,
): boolean {
  const score = (pubsub as { score?: Partial<ScoreWithDuplicates> } | undefined)?.score
  const original = score?.duplicateMessage
  if (!score || typeof original !== 'function') return false
  score.duplicateMessage = function (this: unknown, from, msgId, topic) {
    const result = original.call(this, from, msgId, topic)
    onDuplicate(topic)
    return result
  }
  return true
}
