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

def rmesh_each_ref():
    # Every file reference of the loaded data, linked libraries' data included:
    # (kind, name, owner library or None, path as stored, mode, setter or None, extra).
    # mode: file | sequence (frames by the digits of the name) | udim (extra: the image)
    # | dir (a cache folder, optional) | files (a folder; extra: the file names in it).
    out = []
    def setter(obj, attr):
        def put(v):
            setattr(obj, attr, v)
        return put
    for lib in bpy.data.libraries:
        # A library's path is relative to the main file, indirect libraries' too.
        if lib.packed_file is None:
            out.append(('library', lib.name, None, lib.filepath, 'file', setter(lib, 'filepath'), None))
    for im in bpy.data.images:
        if im.packed_file is None and im.source in ('FILE', 'SEQUENCE', 'MOVIE', 'TILED'):
            mode = {'SEQUENCE': 'sequence', 'TILED': 'udim'}.get(im.source, 'file')
            out.append(('image', im.name, im.library, im.filepath, mode, setter(im, 'filepath'), im))
    for clip in bpy.data.movieclips:
        mode = 'sequence' if clip.source == 'SEQUENCE' else 'file'
        out.append(('movieclip', clip.name, clip.library, clip.filepath, mode, setter(clip, 'filepath'), None))
    for snd in bpy.data.sounds:
        if snd.packed_file is None:
            out.append(('sound', snd.name, snd.library, snd.filepath, 'file', setter(snd, 'filepath'), None))
    for font in bpy.data.fonts:
        if font.packed_file is None:
            out.append(('font', font.name, font.library, font.filepath, 'file', setter(font, 'filepath'), None))
    for vol in getattr(bpy.data, 'volumes', []):
        if vol.packed_file is None:
            mode = 'sequence' if vol.is_sequence else 'file'
            out.append(('volume', vol.name, vol.library, vol.filepath, mode, setter(vol, 'filepath'), None))
    for cache in bpy.data.cache_files:
        mode = 'sequence' if cache.is_sequence else 'file'
        out.append(('cache', cache.name, cache.library, cache.filepath, mode, setter(cache, 'filepath'), None))
    blend = os.path.splitext(os.path.basename(bpy.data.filepath))[0]
    def point_cache(ob, pc):
        if pc is None:
            return
        if pc.use_external:
            out.append(('pointcache', ob.name, ob.library, pc.filepath, 'dir', setter(pc, 'filepath'), None))
        elif pc.use_disk_cache:
            out.append(('pointcache', ob.name, ob.library, '//blendcache_' + blend, 'dir', None, None))
    for ob in bpy.data.objects:
        for m in ob.modifiers:
            if m.type == 'FLUID' and m.fluid_type == 'DOMAIN' and m.domain_settings is not None:
                ds = m.domain_settings
                out.append(('fluidcache', ob.name, ob.library, ds.cache_directory, 'dir', setter(ds, 'cache_directory'), None))
            elif m.type == 'MESH_CACHE':
                out.append(('meshcache', ob.name, ob.library, m.filepath, 'file', setter(m, 'filepath'), None))
            elif m.type == 'OCEAN' and getattr(m, 'is_cached', False):
                out.append(('oceancache', ob.name, ob.library, m.filepath, 'dir', setter(m, 'filepath'), None))
            elif m.type == 'DYNAMIC_PAINT' and m.canvas_settings is not None:
                for surf in m.canvas_settings.canvas_surfaces:
                    point_cache(ob, surf.point_cache)
            elif hasattr(m, 'point_cache'):
                point_cache(ob, m.point_cache)
        for ps in ob.particle_systems:
            point_cache(ob, ps.point_cache)
    for sc in bpy.data.scenes:
        rbw = sc.rigidbody_world
        if rbw is not None and rbw.point_cache is not None and (rbw.point_cache.use_disk_cache or rbw.point_cache.use_external):
            pc = rbw.point_cache
            raw = pc.filepath if pc.use_external else '//blendcache_' + blend
            out.append(('pointcache', sc.name, sc.library, raw, 'dir', setter(pc, 'filepath') if pc.use_external else None, None))
        if sc.sequence_editor is not None:
            for st in sc.sequence_editor.sequences_all:
                if st.type == 'MOVIE':
                    out.append(('strip', st.name, sc.library, st.filepath, 'file', setter(st, 'filepath'), None))
                elif st.type == 'IMAGE':
                    names = [e.filename for e in st.elements]
                    out.append(('strip', st.name, sc.library, st.directory, 'files', setter(st, 'directory'), names))
    for coll in (bpy.data.materials, bpy.data.lights, bpy.data.worlds, bpy.data.node_groups):
        for idb in coll:
            nt = idb if coll is bpy.data.node_groups else getattr(idb, 'node_tree', None)
            if nt is None:
                continue
            for n in nt.nodes:
                if n.bl_idname in ('ShaderNodeTexIES', 'ShaderNodeScript') and getattr(n, 'mode', '') == 'EXTERNAL':
                    kind = 'ies' if n.bl_idname == 'ShaderNodeTexIES' else 'script'
                    out.append((kind, idb.name + '/' + n.name, idb.library, n.filepath, 'file', setter(n, 'filepath'), None))
    return [r for r in out if r[3] and r[3] != '<builtin>']

def rmesh_abs(raw, owner):
    return os.path.normpath(bpy.path.abspath(raw, library=owner))

def rmesh_ref_key(raw, owner, root):
    # What the file tree's remap table is keyed by (protocols/file-tree.md), computed the
    # same way at submit and on the renderer: an absolute path as the scene names it, else
    # the resolved path relative to the project root.
    if not raw.startswith('//'):
        return os.path.normpath(raw)
    return os.path.relpath(rmesh_abs(raw, owner), root)

def rmesh_remap(o):
    # The renderer's copy of the paths, pointed into the job's file tree in memory (the
    # file on disk is never saved): libraries first, each reload bringing its linked data.
    path = o.get('remapFile')
    if not path:
        return
    with open(path) as f:
        spec = json.load(f)
    root = spec['root']
    table = spec['remap']
    if not table:
        return
    n = 0
    for _ in range(64):
        moved = False
        for lib in list(bpy.data.libraries):
            t = table.get(rmesh_ref_key(lib.filepath, None, root))
            if t and rmesh_abs(lib.filepath, None) != os.path.join(root, t):
                lib.filepath = os.path.join(root, t)
                lib.reload()
                n += 1
                moved = True
                break
        if not moved:
            break
    for kind, name, owner, raw, mode, put, extra in rmesh_each_ref():
        if kind == 'library' or put is None:
            continue
        t = table.get(rmesh_ref_key(raw, owner, root))
        if t:
            put(os.path.join(root, t) + ('/' if mode in ('files', 'dir') else ''))
            n += 1
    rmesh_emit('REMAPPED', {'count': n})

def rmesh_external_files():
    out = []
    for kind, name, owner, raw, mode, put, extra in rmesh_each_ref():
        if mode == 'dir':
            continue
        absp = rmesh_abs(raw, owner)
        probe = absp.replace('<UDIM>', '1001').replace('<UVTILE>', 'u1_v1')
        if mode == 'files':
            probe = os.path.join(absp, extra[0]) if extra else absp
        out.append({'kind': kind, 'name': name, 'path': raw, 'absPath': absp,
                    'exists': os.path.exists(probe)})
    return out

RMESH_GPU_KINDS = ('OPTIX', 'CUDA', 'HIP', 'ONEAPI', 'METAL')

def rmesh_cycles_prefs():
    try:
        return bpy.context.preferences.addons['cycles'].preferences
    except Exception:
        return None

def rmesh_gpus(prefs, kind):
    # The devices of one compute type as Cycles' own preferences list them (it adds the CPU
    # to every list: only the kind's own devices count). A type this build lacks raises.
    try:
        return [d for d in prefs.get_devices_for_type(kind) if d.type == kind]
    except Exception:
        return []

def rmesh_devices():
    # What this Blender can render with: its GPUs per compute type (jobs/devices.ts kinds).
    prefs = rmesh_cycles_prefs()
    out = {'blender': bpy.app.version_string, 'devices': []}
    if prefs is None:
        out['error'] = 'no cycles add-on'
        return out
    for kind in RMESH_GPU_KINDS:
        for d in rmesh_gpus(prefs, kind):
            out['devices'].append({'name': d.name, 'type': d.type, 'id': d.id})
    return out

def rmesh_device(scene, want):
    # The job's device (want: cpu, gpu or a kind) or, without one, what the scene says,
    # falling back to the CPU when this node has no GPU: only a job that asks for a device
    # fails without it (and eligibility keeps it from nodes that lack it).
    if not hasattr(scene, 'cycles'):
        return
    strict = want is not None
    if want is None:
        want = 'gpu' if scene.cycles.device == 'GPU' else 'cpu'
    prefs = rmesh_cycles_prefs()
    if want != 'cpu' and prefs is not None:
        for kind in (RMESH_GPU_KINDS if want == 'gpu' else (want.upper(),)):
            gpus = rmesh_gpus(prefs, kind)
            if not gpus:
                continue
            try:
                prefs.compute_device_type = kind
            except TypeError:
                continue
            ids = set(d.id for d in gpus)
            for d in prefs.devices:
                d.use = d.id in ids
            scene.cycles.device = 'GPU'
            rmesh_emit('DEVICE', {'kind': kind.lower(), 'names': [d.name for d in gpus]})
            return
        if strict:
            rmesh_emit('NODEVICE', {'want': want})
            raise SystemExit(5)
    scene.cycles.device = 'CPU'
    rmesh_emit('DEVICE', {'kind': 'cpu'})

def rmesh_prepare(o):
    # Reaching this line proves the scene loaded: Blender skips --python-expr otherwise.
    rmesh_emit('LOADED')
    rmesh_remap(o)
    missing = [f for f in rmesh_external_files() if not f['exists']]
    if missing and not o.get('allowMissing'):
        rmesh_emit('MISSING', missing)
        raise SystemExit(4)
    scene = bpy.context.scene
    scene.render.use_file_extension = True
    # Debian's Blender has no OpenImageDenoise: a denoised render fails, so denoising is
    # off everywhere, compositor Denoise nodes included.
    rmesh_device(scene, o.get('device'))
    if hasattr(scene, 'cycles'):
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

export function withOptions(body: string, options: unknown): string {
  return `${PRELUDE}\nRMESH_OPTS = json.loads(${JSON.stringify(JSON.stringify(options ?? {}))})\n${body}`
}

/**
 * How a render prepares the scene: the overrides, and the job's file tree (`remapFile`, a
 * JSON `{root, remap: {key: treePath}}` written by the worker; see rmesh_remap).
 */
export interface PrepareOptions {
  samples?: number
  resolutionPercentage?: number
  remapFile?: string
  /** Render even when files are missing (the job was submitted with allowMissing). */
  allowMissing?: boolean
  /**
   * The job's device (`requirements.device`): cpu, gpu (any kind) or one kind. Absent: as the
   * scene says (its Cycles device), on the CPU when this node has no GPU.
   */
  device?: string
}

/**
 * Runs before `-o/-F/-f`: remaps the paths into the job's file tree, forces the render
 * settings, refuses a scene with missing files (unless allowMissing).
 */
export function renderSetupScript(options: PrepareOptions): string {
  return withOptions('rmesh_prepare(RMESH_OPTS)\n', options)
}

/**
 * The Cycles devices this Blender sees, emitted as `RMESH_DEVICES {blender, devices: [{name,
 * type, id}], error?}` (parsed by blender-devices.ts). Runs without a scene.
 */
export function devicesScript(): string {
  return withOptions("rmesh_emit('DEVICES', rmesh_devices())\n", {})
}

/** The scene's metadata, emitted as `RMESH_JSON` (Python; the tracer emits it too). */
export const INSPECT_BODY = `
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
    'fpsInt': r.fps,
    'fpsBase': r.fps_base,
    'renderEngine': r.engine,
    'outputFormat': r.image_settings.file_format,
    'camera': scene.camera.name if scene.camera else None,
    'externalFiles': files,
    'missingFiles': [f['path'] for f in files if not f['exists']],
    'blenderVersion': bpy.app.version_string,
})
`

export function inspectScript(): string {
  return withOptions(`rmesh_emit('LOADED')\n${INSPECT_BODY}`, {})
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
export function serverScript(options: PrepareOptions): string {
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
