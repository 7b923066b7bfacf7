/**
 * Typed errors with stable names and codes.
 *
 * Invariant: callers branch on `code` (or `instanceof`), never on message text. A code,
 * once published, keeps its meaning; messages may be reworded freely. Every message
 * should say what to do next where the user can do something.
 */
export class RmeshError extends Error {
  readonly code: string
  readonly details?: Record<string, unknown>

  constructor(
    code: string,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'RmeshError'
    this.code = code
    this.details = options?.details
  }

  toJSON(): { code: string; message: string; details?: Record<string, unknown> } {
    return {
      code: this.code,
      message: this.message,
      ...(this.details ? { details: this.details } : {}),
    }
  }
}

/** Input from outside (a peer, a flag, an API request) that fails validation. */
export class InvalidInputError extends RmeshError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('ERR_INVALID_INPUT', message, { details })
    this.name = 'InvalidInputError'
  }
}

/** A message or entry larger than the limit of its kind; raised before decoding. */
export class TooLargeError extends RmeshError {
  constructor(what: string, size: number, limit: number) {
    super('ERR_TOO_LARGE', `${what} is ${size} bytes, over the limit of ${limit}`, {
      details: { size, limit },
    })
    this.name = 'TooLargeError'
  }
}

/** Bytes that are not the CBOR (or shape) they claim to be. */
export class DecodeError extends RmeshError {
  constructor(what: string, cause?: unknown) {
    super('ERR_DECODE', `${what} could not be decoded`, { cause })
    this.name = 'DecodeError'
  }
}

export class NotFoundError extends RmeshError {
  constructor(what: string, details?: Record<string, unknown>) {
    super('ERR_NOT_FOUND', `${what} not found`, { details })
    this.name = 'NotFoundError'
  }
}

export class TimeoutError extends RmeshError {
  constructor(what: string, ms: number) {
    super('ERR_TIMEOUT', `${what} timed out after ${ms} ms`, { details: { ms } })
    this.name = 'TimeoutError'
  }
}

export class AbortedError extends RmeshError {
  constructor(what = 'operation') {
    super('ERR_ABORTED', `${what} was aborted`)
    this.name = 'AbortedError'
  }
}

export function isRmeshError(err: unknown, code?: string): err is RmeshError {
  return err instanceof RmeshError && (code === undefined || err.code === code)
}

/** A short, safe description of any thrown value, for logs. */
export function describeError(err: unknown): string {
  if (err instanceof RmeshError) return `${err.code}: ${err.message}`
  if (err instanceof Error) return `${err.name}: ${err.message}`
  return String(err)
}
