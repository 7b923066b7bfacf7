/**
 * Tokens and revocations travel in the mesh log: each admit entry's token is learnt by
 * admission (and its queue limit by the quota book), each revoke entry revokes its target.
 * Entries already stored are replayed at start, so a restarted node knows every limit.
 *
 * Invariants: a malformed body is ignored (the log has already checked the author's
 * capability for the kind); a learnt token lets entries waiting for it be retried.
 */
import type { LogManager } from '../log/log.js'
import { MESH_LOG } from '../log/types.js'
import { ADMIT_KIND, type Admission, REVOKE_KIND } from './admission.js'
import type { QuotaBook } from './quotas.js'

export async function followMeshLog(parts: {
  log: LogManager
  admission: Admission
  quotas: QuotaBook
}): Promise<void> {
  const { log, admission, quotas } = parts
  log.onEntry((entry) => {
    if (entry.log !== MESH_LOG) return
    if (entry.kind === ADMIT_KIND) {
      const t = (entry.body as { token?: Uint8Array }).token
      if (t instanceof Uint8Array) {
        quotas.learn(t)
        void admission
          .learnToken(t)
          .then(() => log.retryPending())
          .catch(() => {})
      }
    } else if (entry.kind === REVOKE_KIND) {
      const target = (entry.body as { target?: unknown }).target
      if (typeof target === 'string' && target.length < 200)
        void admission.revoke(target).catch(() => {})
    }
  })
  for (const e of await log.entries(MESH_LOG)) {
    const t = e.kind === ADMIT_KIND ? (e.body as { token?: unknown }).token : undefined
    if (t instanceof Uint8Array) quotas.learn(t)
  }
}
