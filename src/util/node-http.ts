/**
 * node:http's functions, loaded with require() rather than an ES import.
 *
 * An ES `import { createServer } from 'node:http'` builds the module's namespace by reading
 * every export, and three of them (WebSocket, CloseEvent, MessageEvent) are lazy getters
 * that load undici, and with it http2, tls and assert: ~2.1 MiB more heap and ~12 MiB more
 * resident memory in a daemon that uses none of them. require() returns the same module
 * object without reading its exports, so they stay unloaded.
 *
 * Invariant: rmesh takes node:http's values from here only (types may still be imported
 * from 'node:http': a type-only import emits no code). test/unit/util/node-http.test.ts
 * checks that loading this module leaves undici unloaded.
 */
import type * as Http from 'node:http'
import { createRequire } from 'node:module'

const http = createRequire(import.meta.url)('node:http') as typeof Http

export const createServer: typeof Http.createServer = http.createServer
export const request: typeof Http.request = http.request
