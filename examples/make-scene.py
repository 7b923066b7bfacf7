# Builds rmesh's tiny animated example scene, reproducibly.
#
#   blender -b --factory-startup --python examples/make-scene.py -- out.blend
#
# Invariants: the scene is the same on every run (no randomness, fixed seed); it renders
# with Cycles on the CPU at 8 samples with denoising off everywhere (Debian's Blender has
# no OpenImageDenoise, and a denoised render would fail there); it references exactly one
# external image, `texture.png`, written next to the .blend and referenced by a relative
# path (`//texture.png`), so packing and missing-asset handling have something to work on.
import os
import sys

import bpy

argv = sys.argv[sys.argv.index('--') + 1:] if '--' in sys.argv else []
if len(argv) < 1:
    print('usage: blender -b --factory-startup --python make-scene.py -- out.blend', file=sys.stderr)
    sys.exit(2)
out = os.path.abspath(argv[0])
out_dir = os.path.dirname(out)
os.makedirs(out_dir, exist_ok=True)
tex_path = os.path.join(out_dir, 'texture.png')

# Start from an empty file so the factory startup's cube/light/camera do not leak in.
bpy.ops.wm.read_homefile(use_empty=True)
scene = bpy.context.scene
scene.name = 'rmesh-example'

# --- texture: an 8x8 checkerboard, written as PNG next to the .blend -------------------
size = 8
img = bpy.data.images.new('rmesh-checker', width=size, height=size, alpha=False)
pixels = []
for y in range(size):
    for x in range(size):
        on = (x + y) % 2 == 0
        pixels += [0.9, 0.5, 0.1, 1.0] if on else [0.1, 0.2, 0.8, 1.0]
img.pixels = pixels
img.filepath_raw = tex_path
img.file_format = 'PNG'
img.save()
bpy.data.images.remove(img)

# --- render settings ----------------------------------------------------------------
scene.render.engine = 'CYCLES'
scene.cycles.device = 'CPU'
scene.cycles.samples = 8
scene.cycles.preview_samples = 8
scene.cycles.use_adaptive_sampling = False
scene.cycles.seed = 0
scene.cycles.use_denoising = False
scene.cycles.use_preview_denoising = False
scene.render.resolution_x = 64
scene.render.resolution_y = 64
scene.render.resolution_percentage = 100
scene.render.fps = 24
scene.render.fps_base = 1.0
scene.frame_start = 1
scene.frame_end = 24
scene.frame_step = 1
scene.render.image_settings.file_format = 'PNG'
scene.render.image_settings.color_mode = 'RGB'
scene.render.use_file_extension = True
scene.render.filepath = '//render/frame_#####'
for layer in scene.view_layers:
    layer.cycles.use_denoising = False

world = bpy.data.worlds.new('rmesh-world')
world.color = (0.05, 0.05, 0.05)
scene.world = world

# --- objects ------------------------------------------------------------------------
bpy.ops.mesh.primitive_cube_add(size=1.5, location=(0, 0, 0))
cube = bpy.context.active_object
cube.name = 'rmesh-cube'
mat = bpy.data.materials.new('rmesh-checker-mat')
mat.use_nodes = True
nodes = mat.node_tree.nodes
bsdf = nodes.get('Principled BSDF')
tex = nodes.new('ShaderNodeTexImage')
tex.image = bpy.data.images.load(tex_path)
tex.image.filepath = '//texture.png'
tex.interpolation = 'Closest'
mat.node_tree.links.new(tex.outputs['Color'], bsdf.inputs['Base Color'])
cube.data.materials.append(mat)

# One full turn over the 24 frames, so every frame differs.
cube.rotation_euler = (0.3, 0.0, 0.0)
cube.keyframe_insert(data_path='rotation_euler', frame=1)
cube.rotation_euler = (0.3, 0.0, 6.2831853)
cube.keyframe_insert(data_path='rotation_euler', frame=25)
for fc in cube.animation_data.action.fcurves:
    for kp in fc.keyframe_points:
        kp.interpolation = 'LINEAR'

bpy.ops.object.light_add(type='SUN', location=(3, -3, 5))
light = bpy.context.active_object
light.name = 'rmesh-sun'
light.data.energy = 4.0
light.rotation_euler = (0.6, 0.2, 0.8)

bpy.ops.object.camera_add(location=(3.2, -3.2, 2.4))
cam = bpy.context.active_object
cam.name = 'rmesh-camera'
direction = cube.location - cam.location
cam.rotation_euler = direction.to_track_quat('-Z', 'Y').to_euler()
scene.camera = cam

bpy.ops.wm.save_as_mainfile(filepath=out, compress=False, relative_remap=True)
print('RMESH_SCENE_SAVED ' + out)
