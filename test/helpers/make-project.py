# Builds the tiny project of the scene-files tests (issue 21), reproducibly:
#
#   blender -b --factory-startup --python test/helpers/make-project.py -- BASE [--missing]
#
# BASE/shot/          the project root (the scene's folder)
#   scene.blend       64x64, Cycles at 4 samples, denoising off, frames 1-3, an orthographic
#                     camera looking at five emissive planes, each showing one dependency:
#   tex/rel.png       by a relative path (//tex/rel.png)
#   lib/lib.blend     a linked library whose material uses //libtex.png (lib/libtex.png)
#   seq/seq_000N.png  an image sequence, frame N of the scene shows image N
#   tex/link.png      a symlink that climbs out of the root, to BASE/elsewhere/linked.png
# BASE/outside/abs.png  by an absolute path, outside the project root
# With --missing, also a plane whose texture //tex/gone.png does not exist.
import os
import sys

import bpy

argv = sys.argv[sys.argv.index('--') + 1:]
base = os.path.abspath(argv[0])
with_missing = '--missing' in argv
shot = os.path.join(base, 'shot')
for d in ('shot/tex', 'shot/lib', 'shot/seq', 'outside', 'elsewhere'):
    os.makedirs(os.path.join(base, d), exist_ok=True)


def png(path, rgb, size=8):
    img = bpy.data.images.new(os.path.basename(path), width=size, height=size, alpha=False)
    px = []
    for y in range(size):
        for x in range(size):
            k = 1.0 if (x + y) % 2 == 0 else 0.4
            px += [rgb[0] * k, rgb[1] * k, rgb[2] * k, 1.0]
    img.pixels = px
    img.filepath_raw = path
    img.file_format = 'PNG'
    img.save()
    bpy.data.images.remove(img)


png(os.path.join(shot, 'tex/rel.png'), (0.9, 0.2, 0.2))
png(os.path.join(shot, 'lib/libtex.png'), (0.2, 0.9, 0.2))
png(os.path.join(base, 'outside/abs.png'), (0.2, 0.2, 0.9))
png(os.path.join(base, 'elsewhere/linked.png'), (0.9, 0.9, 0.2))
for n, rgb in enumerate([(0.9, 0.5, 0.1), (0.1, 0.9, 0.9), (0.9, 0.1, 0.9)], start=1):
    png(os.path.join(shot, 'seq/seq_%04d.png' % n), rgb)
link = os.path.join(shot, 'tex/link.png')
if os.path.lexists(link):
    os.remove(link)
os.symlink('../../elsewhere/linked.png', link)


def emissive(name, image):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nt = mat.node_tree
    for n in list(nt.nodes):
        nt.nodes.remove(n)
    out = nt.nodes.new('ShaderNodeOutputMaterial')
    em = nt.nodes.new('ShaderNodeEmission')
    tex = nt.nodes.new('ShaderNodeTexImage')
    tex.image = image
    tex.interpolation = 'Closest'
    nt.links.new(tex.outputs['Color'], em.inputs['Color'])
    nt.links.new(em.outputs['Emission'], out.inputs['Surface'])
    return mat, tex


# No scene.blend1 backups next to the saved files.
bpy.context.preferences.filepaths.save_version = 0

# --- the library: one material with its own texture, relative to the library -----------
bpy.ops.wm.read_homefile(use_empty=True)
lib_path = os.path.join(shot, 'lib/lib.blend')
bpy.ops.wm.save_as_mainfile(filepath=lib_path)
img = bpy.data.images.load(os.path.join(shot, 'lib/libtex.png'))
img.filepath = '//libtex.png'
mat, _ = emissive('LibMat', img)
mat.use_fake_user = True
bpy.ops.wm.save_as_mainfile(filepath=lib_path, relative_remap=True)

# --- the scene ------------------------------------------------------------------------
bpy.ops.wm.read_homefile(use_empty=True)
scene_path = os.path.join(shot, 'scene.blend')
bpy.ops.wm.save_as_mainfile(filepath=scene_path)
scene = bpy.context.scene
scene.render.engine = 'CYCLES'
scene.cycles.device = 'CPU'
scene.cycles.samples = 4
scene.cycles.use_adaptive_sampling = False
scene.cycles.seed = 0
scene.cycles.use_denoising = False
scene.render.resolution_x = 64
scene.render.resolution_y = 64
scene.render.resolution_percentage = 100
scene.frame_start = 1
scene.frame_end = 3
scene.render.image_settings.file_format = 'PNG'
scene.render.image_settings.color_mode = 'RGB'
for layer in scene.view_layers:
    layer.cycles.use_denoising = False

with bpy.data.libraries.load('//lib/lib.blend', link=True, relative=True) as (src, dst):
    dst.materials = ['LibMat']
lib_mat = dst.materials[0]

rel = bpy.data.images.load('//tex/rel.png')
absolute = bpy.data.images.load(os.path.join(base, 'outside/abs.png'))
absolute.filepath = os.path.join(base, 'outside/abs.png')
linked = bpy.data.images.load('//tex/link.png')
seq = bpy.data.images.load('//seq/seq_0001.png')
seq.source = 'SEQUENCE'

planes = [('rel', emissive('RelMat', rel)[0]), ('abs', emissive('AbsMat', absolute)[0]),
          ('lib', lib_mat), ('link', emissive('LinkMat', linked)[0])]
seq_mat, seq_tex = emissive('SeqMat', seq)
seq_tex.image_user.frame_duration = 3
seq_tex.image_user.frame_start = 1
seq_tex.image_user.frame_offset = 0
seq_tex.image_user.use_auto_refresh = True
planes.append(('seq', seq_mat))
if with_missing:
    gone = bpy.data.images.new('gone', 4, 4)
    gone.source = 'FILE'
    gone.filepath = '//tex/gone.png'
    planes.append(('gone', emissive('GoneMat', gone)[0]))

for i, (name, mat) in enumerate(planes):
    bpy.ops.mesh.primitive_plane_add(size=0.9, location=((i % 3) - 1.0, 0.5 - (i // 3), 0))
    ob = bpy.context.active_object
    ob.name = 'plane-' + name
    ob.data.materials.append(mat)

bpy.ops.object.camera_add(location=(0, 0, 5))
cam = bpy.context.active_object
cam.data.type = 'ORTHO'
cam.data.ortho_scale = 3.2
scene.camera = cam
world = bpy.data.worlds.new('w')
world.color = (0, 0, 0)
scene.world = world

bpy.ops.wm.save_as_mainfile(filepath=scene_path, relative_remap=False)
print('RMESH_PROJECT_SAVED ' + scene_path)
