/**
 * Typed rejections of log entries. Every way an entry can be refused has its own class
 * and a stable `code`; join reports them per entry and never throws for peer input.
 */
import { RmeshError } from '../util/errors.js'

export type EntryErrorCode =
  | 'ERR_ENTRY_TOO_LARGE'
  | 'ERR_ENTRY_MALFORMED'
  | 'ERR_ENTRY_VERSION'
  | 'ERR_ENTRY_KIND'
  | 'ERR_ENTRY_SIGNATURE'
  | 'ERR_ENTRY_CLOCK'
  | 'ERR_ENTRY_PARENT'
  | 'ERR_ENTRY_UNAUTHORIZED'
  | 'ERR_ENTRY_PENDING_FULL'

export class EntryError extends RmeshError {
  declare readonly code: EntryErrorCode
  constructor(
    code: EntryErrorCode,
    message: string,
    details?: Record<string, unknown>,
    cause?: unknown,
  ) {
    super(code, message, { details, cause })
    this.name = 'EntryError'
  }
}

/** Larger than MAX_ENTRY_BYTES; refused before any decoding. */
export class EntryTooLargeError extends EntryError {
  constructor(size: number, limit: number) {
    super('ERR_ENTRY_TOO_LARGE', `log entry is ${size} bytes, over the limit of ${limit}`, {
      size,
      limit,
    })
    this.name = 'EntryTooLargeError'
  }
}

/** Not CBOR, or CBOR of the wrong shape (types, lengths, ids, log id syntax). */
export class EntryMalformedError extends EntryError {
  constructor(message: string, details?: Record<string, unknown>, cause?: unknown) {
    super('ERR_ENTRY_MALFORMED', `malformed log entry: ${message}`, details, cause)
    this.name = 'EntryMalformedError'
  }
}

/** A format version this node does not understand (a newer peer); upgrade rmesh. */
export class EntryVersionError extends EntryError {
  constructor(v: unknown) {
    super(
      'ERR_ENTRY_VERSION',
      `log entry format version ${String(v)} is not supported; upgrade rmesh`,
      {
        v: typeof v === 'number' ? v : String(v),
      },
    )
    this.name = 'EntryVersionError'
  }
}

/** A kind this log does not accept (when the manager is given its list of kinds). */
export class EntryKindError extends EntryError {
  constructor(kind: string) {
    super('ERR_ENTRY_KIND', `unknown log entry kind '${kind.slice(0, 40)}'`, {
      kind: kind.slice(0, 40),
    })
    this.name = 'EntryKindError'
  }
}

export class EntrySignatureError extends EntryError {
  constructor(author: string) {
    super(
      'ERR_ENTRY_SIGNATURE',
      `log entry signature does not verify for author ${author.slice(0, 80)}`,
    )
    this.name = 'EntrySignatureError'
  }
}

/** Lamport clock not greater than every parent's: the author's clock went backwards. */
export class EntryClockError extends EntryError {
  constructor(clock: number, parentClock: number) {
    super(
      'ERR_ENTRY_CLOCK',
      `log entry clock ${clock} is not greater than its parent's ${parentClock}`,
      {
        clock,
        parentClock,
      },
    )
    this.name = 'EntryClockError'
  }
}

/** A parent that names another log (the DAG of one log never crosses into another). */
export class EntryParentError extends EntryError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('ERR_ENTRY_PARENT', message, details)
    this.name = 'EntryParentError'
  }
}

/** The authorization hook refused the entry (author lacks the capability, revoked...). */
export class EntryUnauthorizedError extends EntryError {
  constructor(message: string, cause?: unknown) {
    super('ERR_ENTRY_UNAUTHORIZED', message, undefined, cause)
    this.name = 'EntryUnauthorizedError'
  }
}

/** The bounded pending set is full; the entry is dropped and will be fetched again by sync. */
export class EntryPendingFullError extends EntryError {
  constructor() {
    super(
      'ERR_ENTRY_PENDING_FULL',
      'too many log entries are waiting for their parents; entry dropped',
    )
    this.name = 'EntryPendingFullError'
  }
}
