"""The rmesh control API (HTTP/JSON on the daemon's Unix socket) for the add-on.

No bpy here: it runs (and is tested) in any Python 3.7+. Every call has a timeout; every
failure is an RmeshError with a stable `code` (the daemon's, or ERR_NO_DAEMON when no
daemon listens) and a message that says what to do next.
"""
import http.client
import json
import os
import socket
import sys

SOCKET_NAME = "rmesh.sock"
DEFAULT_TIMEOUT_S = 10.0
# A submit imports the scene and may pack it: it can take a while.
SUBMIT_TIMEOUT_S = 600.0
FINISHED = ("done", "failed", "canceled")


class RmeshError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def default_data_dir():
    """The daemon's data directory, as cli/paths.ts chooses it."""
    env = os.environ.get("RMESH_DIR")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Application Support", "rmesh")
    if sys.platform == "win32":
        return os.path.join(os.environ.get("LOCALAPPDATA", os.path.join(home, "AppData", "Local")), "rmesh")
    xdg = os.environ.get("XDG_DATA_HOME", "")
    return os.path.join(xdg if xdg.startswith("/") else os.path.join(home, ".local", "share"), "rmesh")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("rmesh", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class Client:
    def __init__(self, data_dir=None):
        self.data_dir = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else default_data_dir()
        self.socket_path = os.path.join(self.data_dir, SOCKET_NAME)

    def call(self, method, path, body=None, timeout=DEFAULT_TIMEOUT_S):
        if not os.path.exists(self.socket_path):
            raise RmeshError(
                "ERR_NO_DAEMON",
                "no rmesh daemon is running (no socket at %s): start one with `rmesh daemon`"
                " or set the data folder in the add-on's preferences" % self.socket_path,
            )
        conn = _UnixConnection(self.socket_path, timeout)
        try:
            data = None if body is None else json.dumps(body).encode("utf-8")
            headers = {"content-type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            res = conn.getresponse()
            text = res.read().decode("utf-8", "replace")
        except (ConnectionRefusedError, FileNotFoundError):
            raise RmeshError(
                "ERR_NO_DAEMON",
                "no rmesh daemon answers at %s: start one with `rmesh daemon`" % self.socket_path,
            )
        except socket.timeout:
            raise RmeshError("ERR_TIMEOUT", "the rmesh daemon did not answer %s %s in %ss" % (method, path, timeout))
        except OSError as e:
            raise RmeshError("ERR_NO_DAEMON", "cannot reach the rmesh daemon at %s: %s" % (self.socket_path, e))
        finally:
            conn.close()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        if res.status >= 400:
            err = (parsed or {}).get("error", {}) if isinstance(parsed, dict) else {}
            raise RmeshError(err.get("code", "ERR_HTTP_%d" % res.status), err.get("message", text[:300]))
        return parsed

    def submit(self, request):
        return self.call("POST", "/v1/jobs", request, timeout=SUBMIT_TIMEOUT_S)

    def job(self, job_id):
        return self.call("GET", "/v1/jobs/%s" % job_id)


def build_request(scene_path, opts):
    """A SubmitRequest (src/api/types.ts) from the panel's options (a dict)."""
    req = {"scenePath": os.path.abspath(scene_path)}
    frames = (opts.get("frames") or "").strip()
    if frames:
        req["frames"] = frames
    for key in ("step", "chunk", "priority"):
        if opts.get(key) is not None:
            req[key] = int(opts[key])
    if opts.get("format"):
        req["format"] = opts["format"]
    video = opts.get("video") or "none"
    if video != "none":
        req["video"] = video
        if opts.get("bitrate_kbps"):
            req["bitrateKbps"] = int(opts["bitrate_kbps"])
        elif opts.get("crf") is not None and opts.get("crf") >= 0:
            req["crf"] = int(opts["crf"])
        if opts.get("passes") == 2:
            req["passes"] = 2
        if opts.get("hdr"):
            req["hdr"] = "hlg"
        elif opts.get("bit_depth") == 10:
            req["bitDepth"] = 10
        if opts.get("frame_rate"):
            req["frameRate"] = opts["frame_rate"]
    tags = [t.strip() for t in (opts.get("tags") or "").split(",") if t.strip()]
    if tags:
        req["tags"] = tags
    device = opts.get("device") or "any"
    if device != "any":
        req["device"] = device
    version = opts.get("blender_version")
    if opts.get("any_blender"):
        req["anyBlender"] = True
    elif version:
        req["require"] = ["blender>=%d.%d <%d.%d" % (version[0], version[1], version[0], version[1] + 1)]
    if opts.get("pack"):
        req["pack"] = True
    if opts.get("name"):
        req["name"] = opts["name"]
    return req


def frame_rate_of(fps, fps_base):
    """Blender's fps / fps_base as an exact rational string (24000/1001 for NTSC)."""
    if abs(fps_base - 1.001) < 1e-6:
        return "%d/1001" % (fps * 1000)
    if abs(fps_base - 1.0) < 1e-9:
        return str(int(fps))
    return "%d/1000" % round(fps * 1000 / fps_base)


def progress_text(job):
    done, total = job.get("framesDone", 0), job.get("framesTotal", 0)
    text = "%s: %d/%d frames" % (job.get("state", "?"), done, total)
    if job.get("framesFailed"):
        text += ", %d failed" % job["framesFailed"]
    video = job.get("video")
    if video:
        text += ", video %s" % video.get("state", "?")
    if job.get("reason") and job.get("state") in ("failed", "canceled"):
        text += " (%s)" % job["reason"]
    return text


def is_finished(job):
    if job.get("state") in ("failed", "canceled"):
        return True
    return job.get("state") == "done" and job.get("localComplete", True) is not False
