/**
 * Dependency tracing with Blender's own Python: every file a scene needs, with the path as
 * the scene (or the linked library that holds the data-block) names it, where Blender
 * looks for it, and the files that are there (image sequences, UDIM tiles and cache
 * folders expanded) or missing. Linked libraries are followed recursively: Blender loads
 * their data when it opens the scene, and each data-block resolves relative to its library.
 *
 * Invariants: the scene is opened with `--disable-autoexec` (its own scripts never run)
 * and is never saved; the listing goes through a JSON file in a private temporary folder
 * (a large project would not fit one stdout line); what comes back is checked for shape and
 * bounded before anyone uses it.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { MAX_TREE_FILES } from '../blobs/file-tree.js'
import { INSPECT_BODY, withOptions } from './blender-scripts.js'
import { runScript } from './blender-run.js'
import { type DependencyRef, type DependencyTrace, EngineError, type SceneInfo } from './types.js'

const MAX_TRACE_BYTES = 256 << 20
const MODES = ['file', 'sequence', 'udim', 'dir', 'files'] as const

/** The tracer: writes `{scene, refs}` to RMESH_OPTS.out (see DependencyRef for the fields). */
export function traceScript(out: string, root: string): string {
  return withOptions(
    String.raw`
import re
rmesh_emit('LOADED')
RMESH_LIMIT = int(RMESH_OPTS['limit'])
rmesh_count = [0]

def rmesh_found(files, missing, p):
    if os.path.isfile(p):
        rmesh_count[0] += 1
        if rmesh_count[0] > RMESH_LIMIT:
            rmesh_emit('TOOMANY', {'limit': RMESH_LIMIT})
            raise SystemExit(5)
        files.append(p)
    else:
        missing.append(p)

def rmesh_expand(absp, mode, extra):
    files, missing = [], []
    if mode == 'sequence':
        d, base = os.path.split(absp)
        m = re.match(r'^(.*?)(\d+)(\D*)$', base)
        if m is None:
            rmesh_found(files, missing, absp)
        else:
            pat = re.compile('^' + re.escape(m.group(1)) + r'\d+' + re.escape(m.group(3)) + '$')
            try:
                names = sorted(os.listdir(d))
            except OSError:
                names = []
            for n in names:
                if pat.match(n) and os.path.isfile(os.path.join(d, n)):
                    rmesh_found(files, missing, os.path.join(d, n))
            if not files:
                missing.append(absp)
    elif mode == 'udim':
        tiles = [t.number for t in extra.tiles] or [1001]
        for t in tiles:
            if '<UDIM>' in absp:
                p = absp.replace('<UDIM>', str(t))
            elif '<UVTILE>' in absp:
                p = absp.replace('<UVTILE>', 'u%d_v%d' % ((t - 1001) % 10 + 1, (t - 1001) // 10 + 1))
            else:
                p = re.sub(r'1\d\d\d(?=\D*$)', str(t), absp)
            rmesh_found(files, missing, p)
    elif mode == 'dir':
        # A cache folder is optional: without a bake, Blender simulates while rendering.
        if os.path.isdir(absp):
            for dp, dns, fns in os.walk(absp):
                dns.sort()
                for fn in sorted(fns):
                    rmesh_found(files, missing, os.path.join(dp, fn))
    elif mode == 'files':
        for n in extra or []:
            rmesh_found(files, missing, os.path.join(absp, n))
    else:
        rmesh_found(files, missing, absp)
    return files, missing

root = RMESH_OPTS['root']
refs = []
for kind, name, owner, raw, mode, put, extra in rmesh_each_ref():
    absp = rmesh_abs(raw, owner)
    files, missing = rmesh_expand(absp, mode, extra)
    refs.append({'kind': kind, 'name': name, 'owner': owner.filepath if owner is not None else None,
                 'path': raw, 'absPath': absp, 'key': rmesh_ref_key(raw, owner, root),
                 'mode': mode, 'files': files, 'missing': missing})
with open(RMESH_OPTS['out'], 'w') as f:
    json.dump({'scene': os.path.normpath(bpy.data.filepath), 'refs': refs}, f)
rmesh_emit('TRACED', {'refs': len(refs)})
${INSPECT_BODY}`,
    { out, root, limit: MAX_TREE_FILES },
  )
}

const isStr = (x: unknown): x is string => typeof x === 'string' && !x.includes('\u0000')
const strList = (x: unknown): x is string[] => Array.isArray(x) && x.every(isStr)

/** Checks the tracer's JSON; throws ERR_SCENE_INVALID on anything unexpected. */
export function parseTrace(text: string): DependencyTrace {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    throw new EngineError('ERR_SCENE_INVALID', 'the dependency listing is not JSON')
  }
  const doc = raw as { scene?: unknown; refs?: unknown }
  if (!doc || !isStr(doc.scene) || !Array.isArray(doc.refs))
    throw new EngineError('ERR_SCENE_INVALID', 'the dependency listing has no scene or refs')
  const refs: DependencyRef[] = doc.refs.map((r: Record<string, unknown>) => {
    const ok =
      r &&
      isStr(r.kind) &&
      isStr(r.name) &&
      (r.owner === null || isStr(r.owner)) &&
      isStr(r.path) &&
      isStr(r.absPath) &&
      isStr(r.key) &&
      MODES.includes(r.mode as (typeof MODES)[number]) &&
      strList(r.files) &&
      strList(r.missing)
    if (!ok) throw new EngineError('ERR_SCENE_INVALID', 'a dependency in the listing is malformed')
    return r as unknown as DependencyRef
  })
  const files = refs.reduce((n, r) => n + r.files.length, 0)
  if (files > MAX_TREE_FILES)
    throw new EngineError('ERR_SCENE_INVALID', `the scene uses over ${MAX_TREE_FILES} files`)
  return { scene: doc.scene, refs }
}

/**
 * Lists every file `scenePath` needs; `root` is the project root the remap keys use. The
 * same Blender run reads the scene's metadata (`info`), so a submit starts Blender once.
 */
export async function traceDependencies(
  blender: string,
  scenePath: string,
  options: { root: string; signal?: AbortSignal; timeoutMs?: number },
): Promise<DependencyTrace> {
  const dir = await mkdtemp(join(tmpdir(), 'rmesh-trace-'))
  try {
    const out = join(dir, 'trace.json')
    const { markers, outcome } = await runScript(
      blender,
      resolve(scenePath),
      traceScript(out, resolve(options.root)),
      options,
    )
    if (markers.has('TOOMANY'))
      throw new EngineError('ERR_SCENE_INVALID', `${scenePath} uses over ${MAX_TREE_FILES} files`)
    if (!markers.has('TRACED') || (await stat(out).catch(() => undefined)) === undefined) {
      throw new EngineError(
        'ERR_SCENE_INVALID',
        `Blender could not list the files of ${scenePath}`,
        {
          details: { logTail: outcome.tail },
        },
      )
    }
    if ((await stat(out)).size > MAX_TRACE_BYTES)
      throw new EngineError('ERR_SCENE_INVALID', `the file listing of ${scenePath} is too large`)
    const info = markers.get('JSON') as SceneInfo | undefined
    const trace = parseTrace(await readFile(out, 'utf8'))
    return info && typeof info === 'object' ? { ...trace, info } : trace
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
