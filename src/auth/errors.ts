/**
 * Typed errors of admission. Every refusal has its own stable code so callers, logs and
 * the CLI branch on `code`; the message is for the person reading it and may change.
 */
import { RmeshError } from '../util/errors.js'

export type TokenErrorCode =
  | 'ERR_TOKEN_MALFORMED'
  | 'ERR_TOKEN_SIGNATURE'
  | 'ERR_TOKEN_EXPIRED'
  | 'ERR_TOKEN_NOT_YET_VALID'
  | 'ERR_TOKEN_WRONG_MESH'
  | 'ERR_TOKEN_WRONG_AUDIENCE'
  | 'ERR_TOKEN_REVOKED'
  | 'ERR_TOKEN_CAPABILITY'
  | 'ERR_TOKEN_DELEGATION'

export class TokenError extends RmeshError {
  declare readonly code: TokenErrorCode
  constructor(
    code: TokenErrorCode,
    message: string,
    details?: Record<string, unknown>,
    cause?: unknown,
  ) {
    super(code, message, { details, cause })
    this.name = 'TokenError'
  }
}

export type MeshErrorCode = 'ERR_MESH_EXISTS' | 'ERR_MESH_NOT_FOUND' | 'ERR_MESH_KEY'

export class MeshError extends RmeshError {
  declare readonly code: MeshErrorCode
  constructor(code: MeshErrorCode, message: string, cause?: unknown) {
    super(code, message, { cause })
    this.name = 'MeshError'
  }
}

export type InviteErrorCode =
  | 'ERR_INVITE_MALFORMED'
  | 'ERR_INVITE_SIGNATURE'
  | 'ERR_INVITE_EXPIRED'
  | 'ERR_INVITE_USED'
  | 'ERR_INVITE_WRONG_INVITER'
  | 'ERR_INVITE_NOT_ADMIN'
  | 'ERR_INVITE_UNREACHABLE'
  | 'ERR_INVITE_REFUSED'

export class InviteError extends RmeshError {
  declare readonly code: InviteErrorCode
  constructor(
    code: InviteErrorCode,
    message: string,
    details?: Record<string, unknown>,
    cause?: unknown,
  ) {
    super(code, message, { details, cause })
    this.name = 'InviteError'
  }
}

export type AdmissionErrorCode =
  | 'ERR_AUTH_PENDING'
  | 'ERR_AUTH_NOT_ADMITTED'
  | 'ERR_AUTH_NO_TOKEN'
  | 'ERR_AUTH_UNKNOWN_KIND'
  | 'ERR_AUTH_HANDSHAKE'

export class AdmissionError extends RmeshError {
  declare readonly code: AdmissionErrorCode
  constructor(
    code: AdmissionErrorCode,
    message: string,
    details?: Record<string, unknown>,
    cause?: unknown,
  ) {
    super(code, message, { details, cause })
    this.name = 'AdmissionError'
  }
}
