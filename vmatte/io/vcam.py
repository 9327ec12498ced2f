"""Live sinks: a virtual camera (pyvirtualcam) that call apps pick up, a preview window, a recorder.

Each sink has send(frame) taking RGB uint8 [H,W,3] or RGBA [H,W,4] (transparent background), and
close() that runs once. The virtual camera cannot carry alpha: RGBA frames are put over a chroma
green so OBS and friends can key it out.
"""
from __future__ import annotations

import logging
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import VmatteError
from .closing import CloseOnce

log = logging.getLogger(__name__)

__all__ = ["MODPROBE", "VirtualCamera", "PreviewWindow", "Recorder", "NullSink", "flatten_rgba",
           "loopback_devices", "PREVIEW_KEYS"]

MODPROBE = 'sudo modprobe v4l2loopback devices=1 video_nr=10 card_label="vmatte" exclusive_caps=1'
CHROMA_GREEN = (0, 177, 64)
# Preview key -> action for the live loop.
PREVIEW_KEYS = {"b": "blur", "c": "color", "i": "image", "t": "none", "q": "quit", "+": "smooth+",
                "=": "smooth+", "-": "smooth-"}


def flatten_rgba(frame: np.ndarray, color=CHROMA_GREEN) -> np.ndarray:
    """RGBA uint8 [H,W,4] -> RGB [H,W,3] over a flat colour; RGB passes through."""
    if frame.ndim == 3 and frame.shape[2] == 4:
        a = frame[..., 3].astype(np.float32) * np.float32(1 / 255)
        bg = np.empty(frame.shape[:2] + (3,), np.uint8)
        bg[...] = np.asarray(color, np.uint8)
        return cv2.blendLinear(np.ascontiguousarray(frame[..., :3]), bg, a, 1.0 - a)
    return frame


def loopback_devices() -> list[tuple[str, str]]:
    """(/dev/videoN, card label) for every v4l2loopback device (Linux sysfs); empty elsewhere."""
    root = Path("/sys/devices/virtual/video4linux")
    out = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            try:
                label = (d / "name").read_text().strip()
            except OSError:
                label = ""
            out.append((f"/dev/{d.name}", label))
    return out


def _install_hint() -> str:
    if sys.platform.startswith("linux"):
        return f"create a loopback camera: {MODPROBE} (install it with: sudo apt install v4l2loopback-dkms)"
    if sys.platform == "darwin":
        return "install OBS Studio (28+), start its Virtual Camera once, then stop it, and run vmatte again"
    return "install OBS Studio (start its Virtual Camera once) or Unity Capture, then run vmatte again"


class VirtualCamera(CloseOnce):
    """A virtual webcam through pyvirtualcam: v4l2loopback on Linux, OBS / Unity Capture elsewhere.

    fmt: "auto" sends I420 on v4l2loopback (converted by OpenCV's SIMD code: the native format most
    call apps read, so pyvirtualcam copies it as is) and RGB elsewhere (the backend converts);
    "rgb", "i420" or "yuyv" force one. Frames are not paced here: the camera drives the rate.
    """

    def __init__(self, width: int, height: int, fps: float = 30.0, *, device: str | None = None,
                 backend: str | None = None, fmt: str = "auto"):
        if fmt not in ("auto", "rgb", "i420", "yuyv"):
            raise VmatteError(f"unknown virtual camera format {fmt!r}; use auto, rgb, i420 or yuyv")
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.device, self.backend, self.fmt = device, backend, fmt
        self._cam: Any = None
        self._closed = False
        self.frames = 0

    def _pick_format(self, backend: str | None) -> str:
        if self.fmt != "auto":
            return self.fmt
        linux = backend == "v4l2loopback" or (backend is None and sys.platform.startswith("linux"))
        even = self.width % 2 == 0 and self.height % 2 == 0
        return "i420" if linux and even else "rgb"

    def __enter__(self) -> "VirtualCamera":
        try:
            import pyvirtualcam
        except ImportError:
            raise VmatteError("pyvirtualcam is not installed; pip install 'vmatte[cam]' (or pip install pyvirtualcam), "
                              "or pass --no-vcam") from None
        backend = self.backend or ("v4l2loopback" if sys.platform.startswith("linux") else None)
        self._kind = self._pick_format(backend)
        pf = {"rgb": pyvirtualcam.PixelFormat.RGB, "i420": pyvirtualcam.PixelFormat.I420,
              "yuyv": pyvirtualcam.PixelFormat.YUYV}[self._kind]
        try:
            self._cam = pyvirtualcam.Camera(self.width, self.height, self.fps, fmt=pf, device=self.device,
                                            backend=backend)
        except Exception as e:  # pyvirtualcam raises RuntimeError with every backend's reason
            raise VmatteError(self._explain(str(e))) from None
        log.info("virtual camera %s (%s) %dx%d@%.0f fps, %s", self._cam.device, self._cam.backend,
                 self.width, self.height, self.fps, self._kind)
        return self

    def _explain(self, msg: str) -> str:
        low = msg.lower()
        first = msg.strip().splitlines()[0] if msg.strip() else "unknown error"
        if "no v4l2 loopback device" in low or ("not a video output device" in low and not self.device):
            return f"no virtual camera device (v4l2loopback) found; {_install_hint()}"
        if "busy" in low or "in use" in low or "resource" in low:
            return (f"virtual camera {self.device or ''} is in use by another program ({first}); close the other "
                    f"virtual camera app (OBS, another vmatte) or pick another device with --vcam-device")
        if "not a video output device" in low or "not a v4l2 device" in low:
            return (f"{self.device} is not a loopback camera ({first}); pass --vcam-device with one listed by "
                    f"`vmatte doctor`, or {MODPROBE}")
        if "not installed" in low or "obs" in low or "unity" in low:
            return f"no virtual camera backend is available ({first}); {_install_hint()}"
        return f"cannot open the virtual camera ({first}); {_install_hint()}"

    @property
    def name(self) -> str:
        return str(self._cam.device) if self._cam is not None else "virtual camera"

    def send(self, frame: np.ndarray) -> None:
        rgb = flatten_rgba(frame)
        if rgb.shape[:2] != (self.height, self.width):
            rgb = cv2.resize(rgb, (self.width, self.height), interpolation=cv2.INTER_AREA)
        if self._kind == "i420":
            out = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)  # [H*3/2, W]
        elif self._kind == "yuyv":
            out = _rgb_to_yuyv(rgb)
        else:
            out = np.ascontiguousarray(rgb)
        self._cam.send(out)
        self.frames += 1

    def _release(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            cam.close()


def _rgb_to_yuyv(rgb: np.ndarray) -> np.ndarray:
    """RGB [H,W,3] -> packed YUYV [H,W,2] (BT.601, via OpenCV's YUV 4:4:4 then chroma pairing)."""
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV)  # [H,W,3]
    h, w = yuv.shape[:2]
    out = np.empty((h, w, 2), np.uint8)
    out[..., 0] = yuv[..., 0]
    out[:, 0::2, 1] = yuv[:, 0::2, 1]
    out[:, 1::2, 1] = yuv[:, 1::2, 2]
    return out


class PreviewWindow(CloseOnce):
    """An OpenCV window showing the output; poll() returns the action of a pressed key (PREVIEW_KEYS)."""

    def __init__(self, title: str = "vmatte (b blur, c colour, i image, t none, +/- smoothing, q quit)"):
        self.title = title
        self._open = False
        self._closed = False
        self._checker: np.ndarray | None = None

    def __enter__(self) -> "PreviewWindow":
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise VmatteError("cannot open a preview window: this OpenCV has no GUI support (opencv-python-headless); "
                              "pip uninstall opencv-python-headless && pip install opencv-python, or drop --preview") from None
        self._open = True
        return self

    def _show_rgba(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        if self._checker is None or self._checker.shape[:2] != (h, w):
            yy, xx = np.mgrid[0:h, 0:w]
            c = np.where(((yy // 16) + (xx // 16)) % 2 == 0, 200, 150).astype(np.uint8)
            self._checker = np.dstack([c, c, c])
        a = frame[..., 3].astype(np.float32) * np.float32(1 / 255)
        return cv2.blendLinear(np.ascontiguousarray(frame[..., :3]), self._checker, a, 1.0 - a)

    def send(self, frame: np.ndarray) -> None:
        rgb = self._show_rgba(frame) if frame.shape[2] == 4 else frame
        cv2.imshow(self.title, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def poll(self) -> str | None:
        """Process window events; the action for a pressed key, 'quit' when the window was closed."""
        if not self._open:
            return None
        k = cv2.waitKey(1) & 0xFF
        try:
            if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                return "quit"
        except cv2.error:
            return "quit"
        return PREVIEW_KEYS.get(chr(k)) if k != 0xFF else None

    def _release(self) -> None:
        if self._open:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)


class Recorder:
    """Record the live output to a file through vmatte.io.sinks, timed by wall clock.

    Frames carry pts in milliseconds since the first frame, so dropped frames show as held frames
    instead of speeding the recording up. RGBA frames keep alpha when the format can (.mov/.webm).
    """

    def __init__(self, path: str | Path, fps: float = 30.0, *, alpha: bool = False, overwrite: bool = False):
        from .sinks import open_sink, supports_alpha  # the file sink module

        self.path = Path(path)
        self.alpha = alpha and supports_alpha(self.path)
        self._sink = open_sink(self.path, alpha=self.alpha, rate=Fraction(fps).limit_denominator(1001),
                               time_base=Fraction(1, 1000), overwrite=overwrite)
        self._t0: float | None = None
        self._closed = False

    def __enter__(self) -> "Recorder":
        self._sink.__enter__()
        return self

    def send(self, frame: np.ndarray) -> None:
        now = time.perf_counter()
        if self._t0 is None:
            self._t0 = now
        if frame.shape[2] == 4 and not self.alpha:
            frame = flatten_rgba(frame)
        self._sink.write(frame, pts=round((now - self._t0) * 1000), time_base=Fraction(1, 1000))

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._closed:
            return
        self._closed = True
        # A recording stopped by Ctrl-C is still a good recording: keep it.
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self._sink.__exit__(None, None, None)
        else:
            self._sink.__exit__(exc_type, exc, tb)

    def close(self) -> None:
        self.__exit__(None, None, None)


class NullSink:
    """Discards frames (benchmarks, --no-vcam without preview); counts them."""

    def __init__(self) -> None:
        self.frames = 0
        self.last: np.ndarray | None = None

    def __enter__(self) -> "NullSink":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def send(self, frame: np.ndarray) -> None:
        self.frames += 1
        self.last = frame

    def close(self) -> None:
        pass
