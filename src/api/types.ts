/**
 * The control API contract: every request and response body and every event of the event
 * stream, as JSON. The daemon (src/api/server.ts) serves it; the CLI and the dashboard use
 * only this (through src/api/client.ts).
 *
 * Transport: HTTP/1.1 over a Unix socket at `<dataDir>/rmesh.sock` (mode 0600: only the
 * local user). Bodies are JSON (`content-type: application/json`) unless noted; requests
 * over 1 MiB are refused with 413 ERR_TOO_LARGE before parsing. Paths are versioned (`/v1`).
 *
 * Invariants:
 * - An error is always `{ error: { code, message, details? } }` (ApiErrorBody) with the
 *   HTTP status of API_ERROR_STATUS[code] (500 for a code not listed). `code` is stable;
 *   `message` says what to do next.
 * - Times are milliseconds since the Unix epoch (wall clock, informational); durations are
 *   milliseconds. Peer ids are libp2p peer id strings. Paths on disk are absolute: the CLI
 *   resolves them, the daemon reads them (the CLI and its daemon share a machine).
 * - Fields marked optional (`?`) may be absent; `null` means "known to be none".
 * - New fields may be added to any object; clients ignore fields they do not know.
 */

import type { JobStatus } from '../jobs/job-state.js'
import type { DeviceRequest } from '../jobs/devices.js'

export const API_VERSION = 'v1'
export const API_PREFIX = '/v1'
export const SOCKET_FILE = 'rmesh.sock'
/** Largest request body the server accepts. */
export const MAX_REQUEST_BYTES = 1024 * 1024
/** Largest single NDJSON line (event or streamed log line) a client accepts. */
export const MAX_EVENT_LINE_BYTES = 1024 * 1024

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/** Error codes the server returns, with their HTTP status. */
export const API_ERROR_STATUS = {
  ERR_INVALID_INPUT: 400, // bad body, query or path parameter (details.field names it)
  ERR_DECODE: 400, // body is not JSON
  ERR_NOT_FOUND: 404, // unknown job, token, frame or route
  ERR_METHOD_NOT_ALLOWED: 405,
  ERR_NOT_ADMITTED: 403, // this node holds no valid token (run `rmesh join`)
  ERR_FORBIDDEN: 403, // this node's token lacks the capability (details.need: Cap)
  ERR_CONFLICT: 409, // e.g. cancel a finished job, reuse a spent invite, delete while running
  ERR_TOO_LARGE: 413,
  ERR_QUOTA: 429, // maxQueuedJobs of the token reached
  ERR_LOGIN_REQUIRED: 401, // web UI beyond loopback without a session (rmesh web open)
  ERR_LOGIN: 401, // web UI: wrong password
  ERR_INTERNAL: 500,
  ERR_ENGINE: 502, // the engine (Blender, ffmpeg) failed, e.g. while inspecting a scene
  ERR_UNAVAILABLE: 503, // daemon starting or stopping; retry shortly
  ERR_TIMEOUT: 504, // the daemon waited on a peer (e.g. invite redemption) too long
} as const

export type ApiErrorCode = keyof typeof API_ERROR_STATUS

export interface ApiErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown> }
}

// ---------------------------------------------------------------------------------------
// Shared vocabulary
// ---------------------------------------------------------------------------------------

export type Cap = 'submit' | 'render' | 'admin'
export const CAPS: readonly Cap[] = ['submit', 'render', 'admin']

/**
 * The reducer's job state, as the API reports it (one definition, jobs/job-state.ts):
 * paused: `rmesh pause` (running chunks finish, no new one); waiting: for its `after` jobs.
 */
export type JobState = JobStatus
export const JOB_STATES: readonly JobState[] = [
  'queued',
  'rendering',
  'paused',
  'waiting',
  'done',
  'failed',
  'canceled',
]
export const TERMINAL_JOB_STATES: readonly JobState[] = ['done', 'failed', 'canceled']

/** open: nobody holds it; claimed: leased, engine not started yet. */
export type FrameState = 'open' | 'claimed' | 'rendering' | 'done' | 'failed'
export const FRAME_STATES: readonly FrameState[] = [
  'open',
  'claimed',
  'rendering',
  'done',
  'failed',
]

/** Output image formats (the daemon maps them to the engine's names, e.g. OPEN_EXR). */
export type OutputFormat = 'png' | 'exr' | 'exr-multilayer' | 'jpeg' | 'tiff'
export const OUTPUT_FORMATS: readonly OutputFormat[] = [
  'png',
  'exr',
  'exr-multilayer',
  'jpeg',
  'tiff',
]

/** h264, h265 → MP4, vp9 → WebM, av1 → MP4. */
export type VideoCodec = 'h264' | 'h265' | 'vp9' | 'av1'
export const VIDEO_CODECS: readonly VideoCodec[] = ['h264', 'h265', 'vp9', 'av1']

/** Scene file extensions the daemon can render (lower case, with the dot). */
export const SCENE_EXTENSIONS: readonly string[] = ['.blend']

export const PRIORITY_MIN = 0
export const PRIORITY_MAX = 100
/** Higher runs first. */
export const PRIORITY_DEFAULT = 50

export interface EngineInfo {
  name: string // 'blender', 'ffmpeg', or a templated engine's name
  version: string // '3.4.1'
}

export interface BlenderInfo {
  version: string
  /** The executable. */
  path: string
  /** `kinds`: cpu, cuda, optix, hip, oneapi, metal (cpu always); `names`: its GPUs. */
  devices?: { kinds: string[]; names: string[] }
}

/** POST /v1/node/detect: what this node found, once every Blender's devices are known. */
export interface DetectResponse {
  engines: EngineInfo[]
  blenders: BlenderInfo[]
}

export interface Slots {
  total: number
  busy: number
}

/** One piece of work a node is doing right now. */
export interface WorkInfo {
  jobId: string
  jobName: string
  chunk: number
  frames: number[]
  /** Frame being rendered now, if the engine reported it. */
  frame?: number
  /** 0..1 within the current frame, if the engine reports it. */
  progress?: number
  /** 'render' or 'encode' (the video task). */
  kind: 'render' | 'encode'
}

// ---------------------------------------------------------------------------------------
// GET /v1/node → NodeInfo
// ---------------------------------------------------------------------------------------

export interface NodeInfo {
  peerId: string
  name: string // host name unless configured
  version: string // rmesh version
  /** Full multiaddrs ending in /p2p/<peerId>. */
  addresses: string[]
  /** Absent before `rmesh init` / `rmesh join`. */
  meshId?: string
  /** True when this node holds a valid token (it serves and is served). */
  admitted: boolean
  /** Capabilities of this node's token; [] when not admitted. */
  caps: Cap[]
  engines: EngineInfo[]
  /**
   * Every Blender this node found (PATH, config `blenderPaths`, `blenderReleasesDir`), newest
   * first, with the Cycles devices each sees (absent until its detection finished).
   */
  blenders?: BlenderInfo[]
  slots: Slots
  /**
   * Why this node takes no new renders now, when it does not: no render capability,
   * slots set to 0, or less free disk than --min-free-disk (it resumes once space is freed).
   */
  renderPaused?: string
  /** Free space on the data directory's disk, bytes (checked every 5 s). */
  freeDiskBytes?: number
  dataDir: string
  uptimeMs: number
  /** Peers currently connected and admitted. */
  peerCount: number
  /** How machines beyond this LAN reach this node (net/reachability.ts). */
  reachability?: ReachabilityInfo
  /** This node's own rules and the state they put it in (see NodeRulesView). */
  rules?: NodeRulesView
  /** Its scheduling tags (config `tags`). */
  tags?: string[]
}

// ---------------------------------------------------------------------------------------
// A node's own rules (`rmesh node …`), kept on the node (<dataDir>/node-rules.json):
//   GET  /v1/node/rules          → NodeRulesView
//   POST /v1/node/pause          PauseRequest → NodeRulesView
//   POST /v1/node/resume         {} → NodeRulesView
//   POST /v1/node/schedule       ScheduleRequest → NodeRulesView (400 for a schedule that does not parse)
//   POST /v1/node/idle           IdleRequest → NodeRulesView
//   POST /v1/node/limits         LimitsRequest → NodeRulesView
//   POST /v1/node/detect         {} → DetectResponse (finds the Blenders and their devices again)
// ---------------------------------------------------------------------------------------

/**
 * active: takes work; paused: its owner paused it; draining: paused with --drain, its current
 * chunk still rendering; off-schedule: outside its schedule's hours (local time); idle-wait:
 * idle-only, its user is at the machine.
 */
export type NodeRuleState = 'active' | 'paused' | 'draining' | 'off-schedule' | 'idle-wait'

export interface NodeRulesView {
  state: NodeRuleState
  /** Why it takes no new work, when it does not. */
  reason?: string
  pause?: 'drain' | 'now'
  /** `source`: set on this node (rmesh node schedule set) or from config.json / flags. */
  schedule?: { text: string; open: boolean; source: 'node' | 'config'; nextChange?: number }
  idle?: { minutes: number; loadPercent: number; source: 'node' | 'config'; userIdleMs?: number }
  /** Applied to each render as it starts: Blender threads, niceness, address-space MiB. */
  limits: { threads?: number; nice?: number; memoryMiB?: number }
}

export interface PauseRequest {
  /** drain (default): finish the current chunk, take no more; now: hand every lease back at once. */
  mode?: 'drain' | 'now'
}

export interface ScheduleRequest {
  /** e.g. "mon-fri 19:00-08:00, sat-sun all"; null clears it (also the config's). */
  schedule: string | null
}

export interface IdleRequest {
  /** Render only once the user has been idle this long (1–1440); null turns idle-only off. */
  minutes: number | null
  /** Without a session's idle time, other processes' CPU share (1–100 %) that counts as use. Default 25. */
  loadPercent?: number
}

/** Each 1–1024 threads, 0–19 niceness, 256+ MiB; null clears one (back to config or none). */
export interface LimitsRequest {
  threads?: number | null
  nice?: number | null
  memoryMiB?: number | null
}

/**
 * public: AutoNAT verified a public address (or --relay-service on a public address);
 * private: only private addresses; unknown: a public address not (yet) verified.
 */
export interface ReachabilityInfo {
  reachability: 'public' | 'private' | 'unknown'
  publicAddrs: string[]
  /** This node's relayed addresses, one per relay holding a reservation for it. */
  relayedAddrs: string[]
  /** Relays holding a reservation for this node. */
  relays: string[]
  /** Whether this node serves relay reservations to members. */
  relayService: boolean
  servedReservations: number
  /** Set when nobody beyond this LAN can reach this node: what to do about it. */
  warning?: string
}

/** direct: a plain TCP connection; relayed: through a relay; hole-punched: upgraded by DCUtR. */
export type PeerVia = 'direct' | 'relayed' | 'hole-punched'

// ---------------------------------------------------------------------------------------
// GET /v1/peers → PeerInfo[]   (every peer seen this run, including gone ones, not self)
// ---------------------------------------------------------------------------------------

/**
 * idle: heard recently with a free slot; busy: every slot in use; paused: takes no new work
 * for a passing reason (see `paused`; it resumes by itself); gone: stopped heartbeating.
 */
export type PeerState = 'idle' | 'busy' | 'paused' | 'gone'

export interface PeerInfo {
  peerId: string
  name: string
  /** Full multiaddrs ending in /p2p/<peerId>; the connected one first. */
  addresses: string[]
  /** How this node is connected to the peer now (absent when not connected). */
  via?: PeerVia
  engines: EngineInfo[]
  slots: Slots
  state: PeerState
  connected: boolean
  admitted: boolean
  work: WorkInfo[]
  /** 1-minute load average divided by CPU count (0..∞), null when unknown. */
  load: number | null
  /** Free disk in the peer's data directory, bytes; null when unknown. */
  freeDiskBytes: number | null
  /** Why it takes no new work now, while state is 'paused' (e.g. its data disk is nearly full). */
  paused?: string
  /** Milliseconds since this node last heard the peer (its own monotonic clock). */
  lastSeenMs: number
  version?: string
  /** Its scheduling tags (pools: `rmesh peers --by-tag`). */
  tags?: string[]
  /** The render devices each of its engine versions sees (presence `devices`). */
  devices?: { engine: string; version: string; kinds: string[]; names?: string[] }[]
  /** Its own rules as its presence tells them (absent: none, and active). */
  rules?: { state: NodeRuleState; schedule?: string; idleMinutes?: number; next?: number }
}

// ---------------------------------------------------------------------------------------
// Jobs
//   GET  /v1/jobs                 → JobSummary[]  (newest first; ?state=rendering,queued filters)
//   GET  /v1/jobs/:id             → JobDetail     (404 ERR_NOT_FOUND)
//   POST /v1/jobs                 SubmitRequest → SubmitResponse
//   POST /v1/jobs/plan            SubmitRequest → SubmitPlan (submit --dry-run: nothing is stored)
//   POST /v1/jobs/:id/cancel      {} → JobSummary (409 when already terminal)
//   POST /v1/jobs/:id/retry       RetryRequest → RetryResponse
//   POST /v1/jobs/:id/priority    PriorityRequest → JobSummary
//   POST /v1/jobs/:id/pause       {} → JobSummary (409 when ended or already paused)
//   POST /v1/jobs/:id/resume      {} → JobSummary (409 when not paused)
//   DELETE /v1/jobs/:id           → DeleteResponse (409 while queued/rendering: cancel first)
//   GET  /v1/jobs/:id/logs        text/plain; see LogsQuery
//   POST /v1/jobs/:id/fetch       FetchRequest → FetchResponse
//   GET  /v1/jobs/:id/frames/:frame/thumb  → image/jpeg or image/png (404 until done, or
//                                 when its renderer made no thumbnail: FrameInfo.thumb);
//                                 ?as=png converts a JPEG one to PNG (the dashboard's images)
//   GET  /v1/jobs/:id/frames/:frame/image  → the full-size frame (PNG/JPEG as rendered; EXR
//                                 tone-mapped to PNG); 404 until the frame is done
//   GET  /v1/jobs/:id/zip         → application/zip of every output so far (attachment)
//   GET  /v1/jobs/:id/preview     → video/mp4: a preview of the frames so far, made by the
//                                 submitting node while the job renders (JobDetail.preview)
// A job id in a path may be a unique prefix of at least 6 characters (404 when none matches,
// 409 ERR_CONFLICT with details.matches when several do).
// ---------------------------------------------------------------------------------------

export interface JobSummary {
  jobId: string
  name: string
  state: JobState
  priority: number
  framesDone: number
  framesFailed: number
  framesRendering: number
  framesTotal: number
  /** Distinct peers holding a lease on this job now. */
  nodesRendering: number
  /** Peer id of the submitting node. */
  submitter: string
  /** True when this node submitted the job (it writes the outputs locally). */
  mine: boolean
  /** Where outputs are written, for jobs submitted by this node. */
  outDir?: string
  /**
   * Outputs present in outDir (this node's jobs only). The CLI considers a job finished
   * when state is 'done' and localComplete is true (every frame and the video are in outDir).
   */
  framesLocal?: number
  localComplete?: boolean
  /** Estimated milliseconds to the end; absent when unknown. */
  etaMs?: number
  /** Frames per minute over the last minutes; 0 when nothing finished recently. */
  framesPerMinute: number
  createdAt: number
  /** When the job reached a terminal state. */
  endedAt?: number
  /** Why the job failed or was canceled, or what it waits for. */
  reason?: string
  /** Jobs that must be done before this one starts (`submit --after`). */
  after?: string[]
}

export interface FrameInfo {
  frame: number
  state: FrameState
  /** Peer id of the node holding or having rendered it; null when open. */
  node: string | null
  /** Attempts started so far (0 while never claimed). */
  attempts: number
  /** Render time of the successful attempt (or of the running one so far). */
  renderMs?: number
  /** 0..1 while rendering, when the engine reports it. */
  progress?: number
  /** Last failure reason. */
  error?: string
  /** Peer id of the node whose attempt failed with `error`. */
  errorNode?: string
  /** Absolute paths of this frame's files in outDir, once written there (own jobs only). */
  outputs?: string[]
  /**
   * CID of the frame's thumbnail (a JPEG or PNG of at most 256 px), once done, when its
   * renderer made one: GET /v1/jobs/:id/frames/:frame/thumb serves it.
   */
  thumb?: string
}

export interface ChunkInfo {
  index: number
  frames: number[]
  state: FrameState
  node: string | null
  attempt: number
}

export interface VideoInfo {
  codec: VideoCodec
  state: 'waiting' | 'encoding' | 'done' | 'failed'
  node: string | null
  /** Absolute path in outDir once written there. */
  path?: string
  error?: string
}

export interface JobDetail extends JobSummary {
  scene: { path: string; name: string; sizeBytes: number }
  /**
   * The files that travel with the scene (its file tree), when it has one: how many, their
   * bytes, and how many were missing at submit (`allowMissing`: rendered without them;
   * `missingPaths` on the submitter, as the scene names them).
   */
  files?: { count: number; bytes: number; missing: number; missingPaths?: string[] }
  /** Submitted with allowMissing and some files were missing. */
  allowMissing?: boolean
  engine: string
  format: OutputFormat
  chunkSize: number
  require: string[]
  params: Record<string, string | number | boolean>
  frames: FrameInfo[]
  chunks: ChunkInfo[]
  video?: VideoInfo
  /** Peers blocklisted for this job after repeated failures. */
  blocklist: string[]
  /** Each blocklisted peer and the failures that put it there (`rmesh retry --unblock`). */
  blocked: BlockedNode[]
  /** Tags a node must carry to render it (its pool); absent: any node. */
  tags?: string[]
  /** The render device it needs (`--device`); absent: any node, as the scene says. */
  device?: DeviceRequest
  /**
   * On the submitting node: the preview video of the frames so far (H.264, at most 360
   * lines), GET /v1/jobs/:id/preview; absent until one is made.
   */
  preview?: { frames: number; updatedAt: number }
}

export interface BlockedNode {
  node: string
  /** Its failures in this job, oldest first (a reject of its outputs counts as one). */
  failures: { chunk: number; frames: number[]; attempt: number; reason: string }[]
}

export interface SubmitRequest {
  /** Absolute path of the scene on this machine. */
  scenePath: string
  /** Frame spec: '1-250', '1-10,20,30-40', '1-100:5' (see cli/frames.ts). Default: the scene's range. */
  frames?: string
  /** Every Nth frame of each range without its own step. Default 1. */
  step?: number
  /** Frames per chunk (one lease). Default 1. */
  chunk?: number
  /** Default: the scene's format. */
  format?: OutputFormat
  /** Encode a video after the frames. Default none. */
  video?: VideoCodec
  /**
   * How the video is encoded (with `video` only; protocols/job-entries.md has the rules):
   * CRF (h264/h265 0..51, vp9/av1 0..63) or a bitrate in kbit/s; 2 passes (h264/h265 need a
   * bitrate); 8 or 10 bits; HLG HDR from EXR frames (implies 10 bits). The frame rate is
   * the scene's (`fps / fps_base`, exact: 24000/1001) unless `frameRate` is given.
   */
  crf?: number
  bitrateKbps?: number
  passes?: 1 | 2
  bitDepth?: 8 | 10
  hdr?: 'hlg'
  /** `25`, `24000/1001` (1..240 fps). */
  frameRate?: string
  /** PRIORITY_MIN..PRIORITY_MAX, default PRIORITY_DEFAULT. */
  priority?: number
  /** Default: the scene's file name without extension. */
  name?: string
  /** Absolute output folder. Default: `<scene dir>/<scene name>-<jobId prefix>/`. */
  outDir?: string
  /** Pack external assets into the .blend before import (default: they travel as files). */
  pack?: boolean
  /**
   * Absolute folder the job's file tree is relative to (default: the scene's folder); files
   * outside it travel too, under `_external/`. Must hold the scene.
   */
  projectRoot?: string
  /** Render although some files the scene uses cannot be found (marked on the job). */
  allowMissing?: boolean
  /** Keep the job's blocks after it ends (no GC) so it can be retried later. */
  persistent?: boolean
  /**
   * Requirements on the renderer, e.g. ['blender>=3.4'], ['blender>=4.2 <4.3']. Default for a
   * Blender job: the submitter's version, the major.minor of the Blender that read the scene
   * here (`>=3.4 <3.5`), unless `anyBlender`.
   */
  require?: string[]
  /** Any Blender version may render it (no default version requirement). */
  anyBlender?: boolean
  /**
   * The render device (Blender jobs): `cpu`, `gpu` (any GPU kind) or one of `optix`, `cuda`,
   * `hip`, `oneapi`, `metal`. Only nodes with it render the job. Default: none (any node; it
   * renders as the scene says, on the CPU where the node has no GPU).
   */
  device?: DeviceRequest
  /** Engine parameters (templated engines), validated by the daemon. */
  params?: Record<string, string | number | boolean>
  /** Engine name; default by extension ('blender' for .blend). */
  engine?: string
  /**
   * Tags a node must carry to render it (a pool). Default: the submitting node's config
   * `submitTags`; [] asks for no tag even then.
   */
  tags?: string[]
  /** Job ids (or unique prefixes) that must be done first: the job waits, then starts. */
  after?: string[]
}

/**
 * POST /v1/jobs/plan  SubmitRequest → SubmitPlan: `rmesh submit --dry-run`, nothing stored or
 * announced. `stored`: this node's store already holds the file; `holders`: other peers known
 * (gossip) to hold it. `newBytes`: what a submit would store; `unsharedBytes`: bytes of files
 * no other peer is known to hold (what the first renderer would fetch from this node).
 */
export interface SubmitPlan {
  scenePath: string
  projectRoot: string
  files: PlanFile[]
  missing: { path: string; kind: string; name: string; owner: string | null; lookedAt: string }[]
  remapped: number
  totals: { files: number; bytes: number; newBytes: number; unsharedBytes: number }
  allowMissing: boolean
}

export interface PlanFile {
  /** The path as the scene names it (the first reference, when several use the file). */
  path: string
  kind: string
  /** Where it goes in the job's file tree. */
  treePath: string
  /** The file read. */
  source: string
  size: number
  external: boolean
  stored: boolean
  holders: number
}

export interface SubmitResponse {
  jobId: string
  name: string
  framesTotal: number
  outDir: string
}

/**
 * Frames omitted: every failed frame. `unblock`: instead, take a node (a peer id, or true
 * for every node) off the job's blocklist.
 */
export interface RetryRequest {
  frames?: string
  unblock?: string | true
}

export interface RetryResponse {
  jobId: string
  reopened: number[]
  /** With `unblock`: the peers taken off the blocklist. */
  unblocked?: string[]
}

export interface PriorityRequest {
  priority: number
}

export interface DeleteResponse {
  jobId: string
  deleted: true
}

/**
 * GET /v1/jobs/:id/logs
 *   ?frame=N     the render log of frame N (its latest attempt; &attempt=K for another).
 *                Without frame: the job's own history, one line per log entry.
 *   ?follow=1    keep the response open (chunked text/plain) and stream new lines until the
 *                frame (or job) ends, then end the response. Lines come live from the node
 *                rendering the frame.
 *   ?tail=N      only the last N lines of what exists so far.
 * 404 when the job or the frame is unknown, or the frame has no log yet without follow.
 */
export interface LogsQuery {
  frame?: number
  attempt?: number
  follow?: boolean
  tail?: number
}

export interface FetchRequest {
  /** Absolute destination: a folder, or a .zip file path when zip is true. */
  out: string
  zip: boolean
}

export interface FetchResponse {
  jobId: string
  out: string
  files: number
  bytes: number
  /** Frames without output yet (not rendered or not yet pulled). */
  missing: number[]
}

// ---------------------------------------------------------------------------------------
// POST /v1/scenes/inspect  InspectRequest → SceneInfo   (ERR_NOT_FOUND, ERR_INVALID_INPUT
// for an unsupported extension, ERR_ENGINE when Blender cannot read it)
// ---------------------------------------------------------------------------------------

export interface InspectRequest {
  path: string
}

export interface SceneInfo {
  path: string
  engine: string
  sizeBytes: number
  /** Blender version the file was saved with, when known. */
  savedWith?: string
  frameStart: number
  frameEnd: number
  frameStep: number
  fps: number
  resolution: { x: number; y: number; percent: number }
  renderEngine: string // 'CYCLES', 'BLENDER_EEVEE', ...
  format: OutputFormat | string
  camera?: string
  /** External files the scene references that are missing on this machine. */
  missingFiles: string[]
  /** External files that `pack` would embed. */
  externalFiles: number
}

// ---------------------------------------------------------------------------------------
// Admission
//   GET  /v1/tokens               → TokenInfo[]  (tokens this node issued or holds)
//   POST /v1/tokens               IssueTokenRequest → IssuedToken  (needs admin)
//   POST /v1/tokens/invite        InviteRequest → InviteResponse   (needs admin)
//   POST /v1/tokens/:id/revoke    {} → TokenInfo                   (needs admin)
//   POST /v1/tokens/renew         RenewRequest → IssuedToken  (renews this node's own token)
//   POST /v1/join                 JoinRequest → JoinResponse
// ---------------------------------------------------------------------------------------

export interface TokenInfo {
  id: string
  /** Peer id the token is for. */
  audience: string
  issuer: string
  caps: Cap[]
  notBefore: number
  /** null: never expires. */
  expires: number | null
  revoked: boolean
  maxQueued?: number
  /** True for the token this node itself presents. */
  self: boolean
}

export interface IssueTokenRequest {
  peer: string
  caps: Cap[]
  /** Lifetime; default the daemon's (30 days). */
  expiresInMs?: number
  maxQueued?: number
}

export interface IssuedToken {
  id: string
  /** The printable, copy-pasteable token. */
  token: string
  audience: string
  caps: Cap[]
  expires: number | null
}

export interface InviteRequest {
  caps?: Cap[] // default ['render']
  expiresInMs?: number // default 1 hour
}

export interface InviteResponse {
  id: string
  /** Printable, single-use; contains the inviting node's addresses. */
  invite: string
  caps: Cap[]
  expires: number
}

export interface RenewRequest {
  expiresInMs?: number
}

/** `code` is a token or an invite; the daemon tells which. */
export interface JoinRequest {
  code: string
}

export interface JoinResponse {
  kind: 'token' | 'invite'
  tokenId: string
  meshId: string
  caps: Cap[]
  expires: number | null
}

// ---------------------------------------------------------------------------------------
// GET /v1/events  → application/x-ndjson, one ApiEvent per line, kept open.
//   ?logs=JOBID   also send log-line events of that job (off by default: they are many)
// The first event is always `node` (a snapshot); after that events arrive as things change.
// A `ping` comes every EVENT_PING_INTERVAL_MS so a client can tell a dead stream from a quiet
// one. `seq` increases by one per event on a stream; a gap means events were dropped (a slow
// reader): the client should refetch its snapshot (GET /v1/jobs, /v1/peers).
// ---------------------------------------------------------------------------------------

export const EVENT_PING_INTERVAL_MS = 10_000

interface EventBase {
  seq: number
  time: number
}

export type ApiEvent =
  | (EventBase & { type: 'node'; node: NodeInfo })
  | (EventBase & { type: 'ping' })
  | (EventBase & { type: 'peer-up'; peer: PeerInfo })
  | (EventBase & { type: 'peer-down'; peerId: string })
  /** A presence heartbeat changed what we know of a peer (work, load, slots). */
  | (EventBase & { type: 'presence'; peer: PeerInfo })
  /** A job appeared or changed (counts, state, priority, eta). */
  | (EventBase & { type: 'job-updated'; job: JobSummary })
  | (EventBase & { type: 'job-removed'; jobId: string })
  | (EventBase & { type: 'frame-updated'; jobId: string; frame: FrameInfo })
  | (EventBase & { type: 'video-updated'; jobId: string; video: VideoInfo })
  | (EventBase & { type: 'log-line'; jobId: string; frame: number; node: string; line: string })
  | (EventBase & { type: 'tokens-changed' })
  /** This node's own rules or the state they put it in changed. */
  | (EventBase & { type: 'node-rules'; rules: NodeRulesView })

export type ApiEventType = ApiEvent['type']

/** Distributive Omit so each event variant keeps its own fields. */
export type EventInput = ApiEvent extends infer E
  ? E extends ApiEvent
    ? Omit<E, 'seq' | 'time'>
    : never
  : never

// ---------------------------------------------------------------------------------------
// GET /metrics → text/plain; version=0.0.4 (Prometheus exposition). At least:
//   rmesh_peers_connected, rmesh_jobs{state}, rmesh_frames_rendered_total,
//   rmesh_frame_render_seconds (histogram), rmesh_slots_busy, rmesh_blocks_bytes
// ---------------------------------------------------------------------------------------
