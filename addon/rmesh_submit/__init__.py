"""rmesh: render the open .blend on the local rmesh daemon's mesh (Render Properties > rmesh).

The file is saved first (the daemon reads it from disk), packed into a copy if asked (the
daemon packs; the artist's file is not changed), and submitted with the scene's frame range
and the panel's options through the daemon's control API (client.py). The panel then shows
the job's progress, polled once a second. Works with Blender 3.4 through 4.x.
"""
import time

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, PointerProperty, StringProperty

from . import client

bl_info = {
    "name": "rmesh render farm",
    "author": "rmesh",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "Properties > Render > rmesh",
    "description": "Submit the open file to the rmesh peer-to-peer render farm and follow its progress",
    "category": "Render",
}

POLL_S = 1.0
VIDEO_ITEMS = [
    ("none", "None", "Frames only"),
    ("h264", "H.264 (MP4)", "libx264"),
    ("h265", "H.265 (MP4)", "libx265; 10-bit and HLG HDR"),
    ("vp9", "VP9 (WebM)", "libvpx-vp9"),
    ("av1", "AV1 (MP4)", "SVT-AV1, or libaom for 2 passes"),
]
DEVICE_ITEMS = [
    ("any", "As the scene says", "Any node; a GPU scene uses a node's GPU, else its CPU"),
    ("gpu", "Any GPU", "Only nodes with a CUDA, OptiX, HIP, oneAPI or Metal device"),
    ("optix", "OptiX", ""),
    ("cuda", "CUDA", ""),
    ("hip", "HIP", ""),
    ("oneapi", "oneAPI", ""),
    ("metal", "Metal", ""),
    ("cpu", "CPU", ""),
]
FORMAT_ITEMS = [
    ("scene", "Scene's", "The format set in Output Properties"),
    ("png", "PNG", ""),
    ("exr", "OpenEXR", "Linear frames; needed for HDR video"),
    ("jpeg", "JPEG", ""),
]


def _prefs(context):
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon else None


def _client(context):
    prefs = _prefs(context)
    return client.Client(prefs.data_dir if prefs and prefs.data_dir else None)


class RMESH_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__
    data_dir: StringProperty(
        name="Data folder",
        description="The rmesh daemon's data folder (empty: $RMESH_DIR or ~/.local/share/rmesh)",
        subtype="DIR_PATH",
        default="",
    )

    def draw(self, context):
        self.layout.prop(self, "data_dir")


class RMESH_Settings(bpy.types.PropertyGroup):
    frames: StringProperty(name="Frames", description="e.g. 1-10,20 (empty: the scene's frame range)", default="")
    chunk: IntProperty(name="Chunk", description="Frames per task", default=1, min=1, max=10000)
    format: EnumProperty(name="Format", items=FORMAT_ITEMS, default="scene")
    video: EnumProperty(name="Video", items=VIDEO_ITEMS, default="none")
    crf: IntProperty(name="Quality (CRF)", description="Lower is better; -1: the encoder's default", default=-1, min=-1, max=63)
    bitrate_kbps: IntProperty(name="Bitrate (kbit/s)", description="0: use the CRF", default=0, min=0, max=1000000)
    passes: IntProperty(name="Passes", default=1, min=1, max=2)
    bit_depth: EnumProperty(name="Bit depth", items=[("8", "8-bit", ""), ("10", "10-bit", "")], default="8")
    hdr: BoolProperty(name="HDR (HLG)", description="10-bit HLG video from EXR frames", default=False)
    priority: IntProperty(name="Priority", default=50, min=0, max=100)
    tags: StringProperty(name="Tags", description="Only nodes with all these tags (comma-separated)", default="")
    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="any")
    any_blender: BoolProperty(
        name="Any Blender version",
        description="Let any Blender version render it (default: this Blender's major.minor only)",
        default=False,
    )
    pack: BoolProperty(name="Pack resources", description="Pack external files into a copy of the scene", default=False)
    job_id: StringProperty(name="Job", default="")
    status: StringProperty(name="Status", default="")
    fraction: bpy.props.FloatProperty(default=0.0, min=0.0, max=1.0)


def submit_options(scene):
    s = scene.rmesh
    return {
        "frames": s.frames or "%d-%d" % (scene.frame_start, scene.frame_end),
        "step": scene.frame_step if not s.frames else None,
        "chunk": s.chunk,
        "format": None if s.format == "scene" else s.format,
        "video": s.video,
        "crf": s.crf,
        "bitrate_kbps": s.bitrate_kbps,
        "passes": s.passes,
        "bit_depth": int(s.bit_depth),
        "hdr": s.hdr,
        "frame_rate": client.frame_rate_of(scene.render.fps, scene.render.fps_base),
        "priority": s.priority,
        "tags": s.tags,
        "pack": s.pack,
        "device": s.device,
        "any_blender": s.any_blender,
        # The artist's own Blender: the farm renders with the same major.minor.
        "blender_version": tuple(bpy.app.version[:2]),
    }


def _update_status(scene, job):
    s = scene.rmesh
    s.status = client.progress_text(job)
    total = max(1, job.get("framesTotal", 0))
    s.fraction = min(1.0, job.get("framesDone", 0) / total)


def _poll():
    """Timer: refresh every scene's job status; stops when no job is unfinished."""
    busy = False
    for scene in bpy.data.scenes:
        s = scene.rmesh
        if not s.job_id or s.status.startswith(("done", "failed", "canceled")):
            continue
        try:
            job = _client(bpy.context).job(s.job_id)
            _update_status(scene, job)
            busy = busy or not client.is_finished(job)
        except client.RmeshError as e:
            s.status = "%s: %s" % (e.code, e.message)
    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type == "PROPERTIES":
                area.tag_redraw()
    return POLL_S if busy else None


class RMESH_OT_submit(bpy.types.Operator):
    """Save the file and render it on the rmesh mesh"""

    bl_idname = "rmesh.submit"
    bl_label = "Render on rmesh"
    bl_options = {"REGISTER"}

    wait: BoolProperty(
        name="Wait",
        description="Block until the job ends (for scripts and background mode)",
        default=False,
        options={"SKIP_SAVE"},
    )
    timeout: IntProperty(name="Timeout (s)", default=3600, min=1, options={"SKIP_SAVE"})

    def execute(self, context):
        if not bpy.data.filepath:
            self.report({"ERROR"}, "save the .blend file first (rmesh renders the file on disk)")
            return {"CANCELLED"}
        scene = context.scene
        if bpy.data.is_dirty:
            bpy.ops.wm.save_mainfile()
        c = _client(context)
        req = client.build_request(bpy.data.filepath, submit_options(scene))
        try:
            res = c.submit(req)
        except client.RmeshError as e:
            self.report({"ERROR"}, "rmesh: %s: %s" % (e.code, e.message))
            return {"CANCELLED"}
        scene.rmesh.job_id = res["jobId"]
        scene.rmesh.status = "queued: 0/%d frames" % res.get("framesTotal", 0)
        self.report({"INFO"}, "rmesh: submitted %s (%s): %d frames -> %s"
                    % (res.get("name"), res["jobId"], res.get("framesTotal", 0), res.get("outDir")))
        if not self.wait:
            if not bpy.app.timers.is_registered(_poll):
                bpy.app.timers.register(_poll, first_interval=POLL_S)
            return {"FINISHED"}
        return self._wait(c, scene, res["jobId"])

    def _wait(self, c, scene, job_id):
        deadline = time.monotonic() + self.timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                job = c.job(job_id)
            except client.RmeshError as e:
                self.report({"ERROR"}, "rmesh: %s: %s" % (e.code, e.message))
                return {"CANCELLED"}
            _update_status(scene, job)
            if scene.rmesh.status != last:
                last = scene.rmesh.status
                print("rmesh: %s %s" % (job_id, last), flush=True)
            if client.is_finished(job):
                if job.get("state") != "done":
                    self.report({"ERROR"}, "rmesh: job %s %s" % (job_id, last))
                    return {"CANCELLED"}
                self.report({"INFO"}, "rmesh: done: %s" % job.get("outDir"))
                return {"FINISHED"}
            time.sleep(POLL_S)
        self.report({"ERROR"}, "rmesh: job %s still running after %d s" % (job_id, self.timeout))
        return {"CANCELLED"}


class RENDER_PT_rmesh(bpy.types.Panel):
    bl_label = "rmesh"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"

    def draw(self, context):
        layout = self.layout
        s = context.scene.rmesh
        layout.use_property_split = True
        col = layout.column()
        col.prop(s, "frames")
        col.prop(s, "chunk")
        col.prop(s, "format")
        col.prop(s, "priority")
        col.prop(s, "tags")
        col.prop(s, "device")
        col.prop(s, "any_blender")
        col.prop(s, "pack")
        col.prop(s, "video")
        if s.video != "none":
            sub = col.column()
            sub.prop(s, "crf")
            sub.prop(s, "bitrate_kbps")
            sub.prop(s, "passes")
            sub.prop(s, "bit_depth")
            sub.prop(s, "hdr")
        layout.operator(RMESH_OT_submit.bl_idname, icon="RENDER_ANIMATION")
        if s.job_id:
            box = layout.box()
            box.label(text="Job %s" % s.job_id)
            if hasattr(box, "progress"):  # Blender 4.0+
                box.progress(factor=s.fraction, text=s.status)
            else:
                box.label(text=s.status)


CLASSES = (RMESH_AddonPreferences, RMESH_Settings, RMESH_OT_submit, RENDER_PT_rmesh)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.rmesh = PointerProperty(type=RMESH_Settings)


def unregister():
    if bpy.app.timers.is_registered(_poll):
        bpy.app.timers.unregister(_poll)
    del bpy.types.Scene.rmesh
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
