/**
 * The web UI's login: a password set on this node (scrypt, salted, kept hashed in
 * `<dataDir>/web-password.json`, mode 0600) or a one-time link (`rmesh web open`), each
 * giving a session cookie.
 *
 * Invariants: secrets are compared in constant time (timingSafeEqual over hashes of equal
 * length); links are single use and expire after LINK_TTL_MS; sessions expire after
 * SESSION_TTL_MS and are bounded in number; failed password attempts are rate-limited.
 */
import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto'
import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { InvalidInputError, RmeshError } from '../util/errors.js'

const scryptAsync = promisify(scrypt) as (
  pw: string,
  salt: Buffer,
  len: number,
  opts: { N: number; r: number; p: number },
) => Promise<Buffer>

export const PASSWORD_FILE = 'web-password.json'
export const LINK_TTL_MS = 10 * 60_000
export const SESSION_TTL_MS = 12 * 3_600_000
const MAX_SESSIONS = 100
const MAX_FAILURES_PER_MINUTE = 10
const SCRYPT = { N: 16_384, r: 8, p: 1 }

const digest = (s: string) => createHash('sha256').update(s).digest()
const sameSecret = (a: string, b: Buffer) => timingSafeEqual(digest(a), b)

export interface WebAuth {
  setPassword(password: string): Promise<void>
  hasPassword(): Promise<boolean>
  checkPassword(password: string): Promise<boolean>
  /** A fresh one-time login secret. */
  issueLink(): { secret: string; expires: number }
  /** Spend a one-time secret; true once, within its lifetime. */
  redeemLink(secret: string): boolean
  newSession(): string
  isSession(cookieValue: string | undefined): boolean
}

export function createWebAuth(dataDir: string, now: () => number = Date.now): WebAuth {
  const file = join(dataDir, PASSWORD_FILE)
  const links = new Map<string, number>() // sha256(secret) hex → expiry
  const sessions = new Map<string, number>()
  let failures: number[] = []
  const sweep = (m: Map<string, number>) => {
    for (const [k, exp] of m) if (exp <= now()) m.delete(k)
  }
  const readStored = async () => {
    try {
      const j = JSON.parse(await readFile(file, 'utf8'))
      return {
        salt: Buffer.from(String(j.salt), 'base64'),
        hash: Buffer.from(String(j.hash), 'base64'),
      }
    } catch {
      return undefined
    }
  }
  return {
    async setPassword(password) {
      if (typeof password !== 'string' || password.length < 8 || password.length > 1024)
        throw new InvalidInputError('the password must be 8 to 1024 characters', {
          field: 'password',
        })
      const salt = randomBytes(16)
      const hash = await scryptAsync(password, salt, 32, SCRYPT)
      const tmp = `${file}.tmp`
      await writeFile(
        tmp,
        JSON.stringify({
          v: 1,
          kdf: 'scrypt',
          ...SCRYPT,
          salt: salt.toString('base64'),
          hash: hash.toString('base64'),
        }),
        { mode: 0o600 },
      )
      await rename(tmp, file)
      sessions.clear()
    },
    hasPassword: async () => (await readStored()) !== undefined,
    async checkPassword(password) {
      failures = failures.filter((t) => t > now() - 60_000)
      if (failures.length >= MAX_FAILURES_PER_MINUTE)
        throw new RmeshError('ERR_QUOTA', 'too many failed logins; wait a minute and try again')
      const stored = await readStored()
      const ok =
        !!stored &&
        typeof password === 'string' &&
        password.length <= 1024 &&
        timingSafeEqual(await scryptAsync(password, stored.salt, 32, SCRYPT), stored.hash)
      if (!ok) failures.push(now())
      return ok
    },
    issueLink() {
      sweep(links)
      const secret = randomBytes(32).toString('base64url')
      const expires = now() + LINK_TTL_MS
      links.set(digest(secret).toString('hex'), expires)
      return { secret, expires }
    },
    redeemLink(secret) {
      sweep(links)
      if (typeof secret !== 'string' || secret.length > 100) return false
      for (const key of links.keys()) {
        if (sameSecret(secret, Buffer.from(key, 'hex'))) {
          links.delete(key)
          return true
        }
      }
      return false
    },
    newSession() {
      sweep(sessions)
      while (sessions.size >= MAX_SESSIONS) sessions.delete(sessions.keys().next().value!)
      const id = randomBytes(32).toString('base64url')
      sessions.set(digest(id).toString('hex'), now() + SESSION_TTL_MS)
      return id
    },
    isSession(value) {
      if (!value || value.length > 100) return false
      const exp = sessions.get(digest(value).toString('hex'))
      return exp !== undefined && exp > now()
    },
  }
}
