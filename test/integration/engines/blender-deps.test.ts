/**
 * The dependency tracer against the real Blender on a scene with one of each kind it knows
 * (built by the Python below): a sound, a movie clip, a VDB volume, a fluid bake folder, a
 * cloth point cache on disk, a mesh cache, sequencer movie and image strips, an external
 * IES file, UDIM tiles (one of them missing), a dynamic paint canvas, a particle system and
 * a rigid body world (which need nothing on disk). Every reference is listed with the path
 * as the scene names it, its files and what is missing; nothing raises.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { traceDependencies } from '../../../src/engines/blender-deps.js'
import { blenderSkipReason } from '../../helpers/faults.js'

const execFileAsync = promisify(execFile)
const skipReason = await blenderSkipReason()

const SCENE_PY = String.raw`
import bpy, os
import sys
d = sys.argv[sys.argv.index('--') + 1]
bpy.context.preferences.filepaths.save_version = 0
bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.wm.save_as_mainfile(filepath=d + '/f.blend')
for sub in ('fluid', 'strip', 'blendcache_f'):
    os.makedirs(os.path.join(d, sub), exist_ok=True)
open(d + '/fluid/data_0001.vdb', 'wb').write(b'x')
open(d + '/blendcache_f/cloth_000001_00.bphys', 'wb').write(b'x')
open(d + '/v.vdb', 'wb').write(b'x')
open(d + '/light.ies', 'w').write('IESNA:LM-63-2002\n')
open(d + '/c.mdd', 'wb').write(b'x')
for n in ('a.png', 'b.png'):
    img = bpy.data.images.new(n, 4, 4); img.filepath_raw = d + '/strip/' + n; img.file_format = 'PNG'; img.save(); bpy.data.images.remove(img)
scene = bpy.context.scene
snd = bpy.data.sounds.load('//s.wav'); snd.use_fake_user = True
clip = bpy.data.movieclips.load(d + '/m.mp4'); clip.use_fake_user = True
vol = bpy.data.volumes.new('vol'); vol.filepath = '//v.vdb'; vol.use_fake_user = True
se = scene.sequence_editor_create()
se.sequences.new_movie('mv', d + '/m.mp4', 1, 1)
st = se.sequences.new_image('im', d + '/strip/a.png', 2, 1)
st.elements.append('b.png')
bpy.ops.mesh.primitive_cube_add()
dom = bpy.context.active_object
fl = dom.modifiers.new('fluid', 'FLUID'); fl.fluid_type = 'DOMAIN'
fl.domain_settings.cache_directory = '//fluid'
bpy.ops.mesh.primitive_plane_add()
cl = bpy.context.active_object
c = cl.modifiers.new('cloth', 'CLOTH'); c.point_cache.use_disk_cache = True
mc = cl.modifiers.new('mc', 'MESH_CACHE'); mc.filepath = '//c.mdd'
dp = cl.modifiers.new('dp', 'DYNAMIC_PAINT'); dp.ui_type = 'CANVAS'
bpy.ops.dpaint.type_toggle(type='CANVAS')
cl.modifiers.new('ps', 'PARTICLE_SYSTEM')
light = bpy.data.lights.new('L', 'POINT'); light.use_nodes = True
ies = light.node_tree.nodes.new('ShaderNodeTexIES'); ies.mode = 'EXTERNAL'; ies.filepath = '//light.ies'
lo = bpy.data.objects.new('L', light); scene.collection.objects.link(lo)
bpy.ops.rigidbody.world_add()
os.makedirs(d + '/tex', exist_ok=True)
for t in (1001, 1002):
    img = bpy.data.images.new('t%d' % t, 4, 4); img.filepath_raw = d + '/tex/wood.%d.png' % t; img.file_format = 'PNG'; img.save(); bpy.data.images.remove(img)
im = bpy.data.images.load(d + '/tex/wood.1001.png')
im.source = 'TILED'
im.filepath = '//tex/wood.<UDIM>.png'
im.tiles.new(tile_number=1011)
im.use_fake_user = True
bpy.ops.wm.save_as_mainfile(filepath=d + '/f.blend')
print('SAVED')
`

describe.skipIf(skipReason)('dependency tracing (real Blender)', () => {
  let dir = ''
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('lists every kind of file a scene can use', { timeout: 120_000 }, async () => {
    dir = await mkdtemp(join(tmpdir(), 'rmesh-trace-kinds-'))
    await execFileAsync('ffmpeg', [
      '-v',
      'error',
      '-f',
      'lavfi',
      '-i',
      'sine=d=0.2',
      join(dir, 's.wav'),
    ])
    await execFileAsync(
      'ffmpeg',
      ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=s=32x32:d=0.2'].concat([
        '-pix_fmt',
        'yuv420p',
        join(dir, 'm.mp4'),
      ]),
    )
    await writeFile(join(dir, 'make.py'), SCENE_PY)
    await execFileAsync(
      'blender',
      [
        '-b',
        '--factory-startup',
        '--python-exit-code',
        '3',
        '--python',
        join(dir, 'make.py'),
        '--',
        dir,
      ],
      { timeout: 120_000 },
    )
    const t = await traceDependencies('blender', join(dir, 'f.blend'), { root: dir })
    expect(t.info?.frameStart).toBe(1)
    const by = (kind: string) => t.refs.filter((r) => r.kind === kind)
    const names = (files: string[]) => files.map((f) => f.slice(dir.length + 1)).sort()
    expect(by('sound').map((r) => [r.path, names(r.files)])).toEqual([['//s.wav', ['s.wav']]])
    expect(names(by('movieclip')[0].files)).toEqual(['m.mp4'])
    expect(by('volume')[0]).toMatchObject({ path: '//v.vdb', key: 'v.vdb', mode: 'file' })
    expect(by('fluidcache')[0]).toMatchObject({ path: '//fluid', mode: 'dir', missing: [] })
    expect(names(by('fluidcache')[0].files)).toContain('fluid/data_0001.vdb')
    expect(names(by('pointcache')[0].files)).toContain('blendcache_f/cloth_000001_00.bphys')
    expect(by('meshcache')[0]).toMatchObject({ path: '//c.mdd', files: [join(dir, 'c.mdd')] })
    const strips = by('strip')
    expect(
      strips.find((s) => s.mode === 'files')?.files.map((f) => f.slice(dir.length + 1)),
    ).toEqual(['strip/a.png', 'strip/b.png'])
    expect(strips.some((s) => s.mode === 'file' && s.files[0] === join(dir, 'm.mp4'))).toBe(true)
    expect(by('ies')[0]).toMatchObject({ path: '//light.ies', key: 'light.ies' })
    const udim = t.refs.find((r) => r.mode === 'udim')!
    expect(udim.path).toBe('//tex/wood.<UDIM>.png')
    expect(names(udim.files)).toEqual(['tex/wood.1001.png', 'tex/wood.1002.png'])
    expect(udim.missing).toEqual([join(dir, 'tex/wood.1011.png')])
  })
})
