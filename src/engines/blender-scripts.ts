/**
 * The Python that rmesh runs inside Blender, kept as strings so the build needs no asset
 * copying and every script reaches Blender through `--python-expr` (an argv item).
 *
 * Invariants: scripts talk to rmesh only through stdout lines that start with a marker
 * (`RMESH_<WORD> <json>`); everything else on stdout is Blender's own log. Options reach
 * Python as a JSON string literal (JSON string escapes are valid Python escapes), never
 * by splicing values into code.
 */

const PRELUDE = String.raw`
import bpy, json, os, sys

def rmesh_emit(tag, payload=None):
    line = 'RMESH_' + tag if payload is None else 'RMESH_' + tag + ' ' + json.dumps(payload)
    sys.stdout.write(line + '\n')
    sys.stdout.flush()

def rmesh_external_files():
    out = []
    def add(kind, idb, path):
        if not path or path == '<builtin>':
            return
        lib = getattr(idb, 'library', None)
        absp = os.path.normpath(bpy.path.abspath(path, library=lib))
        probe = absp.replace('<UDIM>', '1001').replace('<UVTILE>', 'u1_v1')
        out.append({'kind': kind, 'name': idb.name, 'path': path, 'absPath': absp,
                    'exists': os.path.exists(probe)})
    for im in bpy.data.images:
        if im.source in ('FILE', 'SEQUENCE', 'MOVIE', 'TILED') and im.packed_file is None:
            add('image', im, im.filepath)
    for lib in bpy.data.libraries:
        if lib.packed_file is None:
            add('library', lib, lib.filepath)
    for snd in bpy.data.sounds:
        if snd.packed_file is None:
            add('sound', snd, snd.filepath)
    for clip in bpy.data.movieclips:
        add('movieclip', clip, clip.filepath)
    for font in bpy.data.fonts:
        if font.packed_file is None:
            add('font', font, font.filepath)
    for vol in getattr(bpy.data, 'volumes', []):
        if vol.packed_file is None:
            add('volume', vol, vol.filepath)
    for cache in bpy.data.cache_files:
        add('cache', cache, cache.filepath)
    return out

def rmesh_prepare(o):
    # Reaching this line proves the scene loaded: Blender skips --python-expr otherwise.
    rmesh_emit('LOADED')
    missing = [f for f in rmesh_external_files() if not f['exists']]
    if missing:
        rmesh_emit('MISSING', missing)
        raise SystemExit(4)
    scene = bpy.context.scene
    scene.render.use_file_extension = True
    # Debian's Blender has no OpenImageDenoise: a denoised render fails, so denoising is
    # off everywhere, compositor Denoise nodes included. Renders run on the CPU.
    if hasattr(scene, 'cycles'):
        scene.cycles.device = 'CPU'
        scene.cycles.use_denoising = False
        if o.get('samples'):
            scene.cycles.samples = int(o['samples'])
    for vl in scene.view_layers:
        if hasattr(vl, 'cycles'):
            vl.cycles.use_denoising = False
    if o.get('samples') and hasattr(scene, 'eevee'):
        scene.eevee.taa_render_samples = int(o['samples'])
    if o.get('resolutionPercentage'):
        scene.render.resolution_percentage = int(o['resolutionPercentage'])
    if scene.node_tree is not None:
        for node in scene.node_tree.nodes:
            if node.bl_idname == 'CompositorNodeDenoise':
                node.mute = True
    rmesh_emit('PREPARED')
    return scene
`

function withOptions(body: string, options: unknown): string {
  return `${PRELUDE}\nRMESH_OPTS = json.loads(${JSON.stringify(JSON.stringify(options ?? {}))})\n${body}`
}

/** Runs before `-o/-F/-f`: forces the render settings, refuses a scene with missing files. */
export function renderSetupScript(options: {
  samples?: number
  resolutionPercentage?: number
}): string {
  return withOptions('rmesh_prepare(RMESH_OPTS)\n', options)
}

export function inspectScript(): string {
  return withOptions(
    `
rmesh_emit('LOADED')
scene = bpy.context.scene
r = scene.render
files = rmesh_external_files()
rmesh_emit('JSON', {
    'sceneName': scene.name,
    'frameStart': scene.frame_start,
    'frameEnd': scene.frame_end,
    'frameStep': scene.frame_step,
    'resolutionX': r.resolution_x,
    'resolutionY': r.resolution_y,
    'resolutionPercentage': r.resolution_percentage,
    'fps': r.fps / r.fps_base,
    'renderEngine': r.engine,
    'outputFormat': r.image_settings.file_format,
    'camera': scene.camera.name if scene.camera else None,
    'externalFiles': files,
    'missingFiles': [f['path'] for f in files if not f['exists']],
    'blenderVersion': bpy.app.version_string,
})
`,
    {},
  )
}

/** Packs every external file into a copy saved at `dest`; the source is left untouched. */
export function packScript(dest: string): string {
  return withOptions(
    `
rmesh_emit('LOADED')
missing = [f for f in rmesh_external_files() if not f['exists']]
if missing:
    rmesh_emit('MISSING', missing)
    raise SystemExit(4)
if len(bpy.data.libraries) > 0:
    bpy.ops.file.pack_libraries()
bpy.ops.file.pack_all()
left = [f for f in rmesh_external_files() if f['kind'] in ('image', 'sound', 'font', 'volume', 'library')]
bpy.ops.wm.save_as_mainfile(filepath=RMESH_OPTS['dest'], copy=True, compress=True)
rmesh_emit('PACKED', {'unpacked': left})
`,
    { dest },
  )
}

/**
 * The persistent render server: loads the scene once, then reads one JSON request per
 * stdin line `{id, frames, out, format}` and renders each frame as a one-frame animation,
 * answering `RMESH_SAVED {id, frame, path}` per frame and `RMESH_DONE {id}` (or
 * `RMESH_ERROR {id, error}`). EOF on stdin or `{cmd: 'quit'}` ends it.
 */
export function serverScript(options: { samples?: number; resolutionPercentage?: number }): string {
  return withOptions(
    `
scene = rmesh_prepare(RMESH_OPTS)
rmesh_emit('READY')
while True:
    line = sys.stdin.readline()
    if not line:
        break
    line = line.strip()
    if not line:
        continue
    req_id = None
    try:
        req = json.loads(line)
        req_id = req.get('id')
        if req.get('cmd') == 'quit':
            break
        scene.render.filepath = req['out']
        scene.render.image_settings.file_format = req['format']
        for f in req['frames']:
            # The same path as 'blender -f N' (an animation render of one frame), so the
            # pixels and the file name match a process-per-chunk render exactly.
            scene.frame_start = int(f)
            scene.frame_end = int(f)
            scene.frame_set(int(f))
            bpy.ops.render.render(animation=True)
            rmesh_emit('SAVED', {'id': req_id, 'frame': f, 'path': scene.render.frame_path(frame=int(f))})
        rmesh_emit('DONE', {'id': req_id})
    except Exception as e:
        rmesh_emit('ERROR', {'id': req_id, 'error': repr(e)})
`,
    options,
  )
}
