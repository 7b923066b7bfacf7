/**
 * The pure job reducer: a job log's entries → the job's state. This module is its public
 * face; the parts are job-state.ts (the state and its reads), fold-rules.ts (what each
 * entry kind does), job-fold.ts (batch and incremental folds) and queue.ts (across jobs).
 *
 * Invariants (protocols/job-entries.md, "Reducer rules"):
 *  - deterministic: the state depends only on the set of entries (folded in
 *    compareEntries order) and the injected `isAdmin` predicate, never on arrival order,
 *    time or randomness;
 *  - total: an entry with an unknown kind, an invalid body or an unauthorised author is
 *    ignored, never thrown on;
 *  - at most one holder per chunk (a chunk has a holder only in state 'claimed');
 *  - done never reverts, except by the submitter's reject of that exact attempt: once a
 *    chunk is done no other entry changes its outputs (later completes only count as
 *    duplicates); a reject naming the chunk's completedAttempt, not yet acked, reopens it;
 *  - wall clocks never decide anything (createdAt and queue tie-breaks are informational);
 *  - a job's state is a fold of its own log only: job order across jobs (`after`) enters
 *    it through the submitter's `ready`/`abort` entries (service/dependency-gate.ts).
 */
export { validateJobState } from './fold-rules.js'
export { JobFold, MAX_CHECKPOINTS, reduceJob } from './job-fold.js'
export * from './job-state.js'
export * from './queue.js'
