"""Live frame sources: a camera through OpenCV, or a video file played as if it were a camera.

Both yield `Captured` frames (RGB uint8 [H,W,3] plus the time the frame arrived) from a blocking
read(), so the live loop can run them in a capture thread and measure frame-in to frame-out latency.
A camera that disappears mid-stream (USB unplugged, driver reset) is reopened with bounded retries
and exponential backoff before giving up with a VmatteError.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from ..errors import VmatteError
from .closing import CloseOnce

log = logging.getLogger(__name__)

__all__ = ["Captured", "CameraSource", "FileCamera", "open_camera", "parse_device", "list_video_devices"]


@dataclass
class Captured:
    """One live frame: RGB uint8 [H,W,3], its sequence number and arrival time (time.perf_counter)."""

    index: int
    rgb: np.ndarray
    t: float


def parse_device(device: int | str) -> int | str:
    """'0' / 0 -> 0 (camera index); '/dev/video2' stays a path."""
    if isinstance(device, int):
        return device
    s = str(device).strip()
    return int(s) if s.isdigit() else s


def list_video_devices() -> list[str]:
    """The /dev/video* nodes on Linux (sorted by number); empty elsewhere."""
    if not sys.platform.startswith("linux"):
        return []
    devs = [p for p in Path("/dev").glob("video*") if p.name[5:].isdigit()]
    return [str(p) for p in sorted(devs, key=lambda p: int(p.name[5:]))]


def _default_capture(device: int | str) -> Any:
    """cv2.VideoCapture with the V4L2 backend on Linux (the default elsewhere)."""
    if sys.platform.startswith("linux"):
        return cv2.VideoCapture(device, cv2.CAP_V4L2)
    if sys.platform == "win32":
        return cv2.VideoCapture(device, cv2.CAP_DSHOW)
    return cv2.VideoCapture(device)


class CameraSource(CloseOnce):
    """A webcam by index (0) or device path (/dev/video0), read through OpenCV.

    Requests width x height at fps with MJPG (USB cameras give 720p30 only in MJPG), then checks the
    size the driver really gave and raises if it differs. read() blocks until the next frame.
    When reads fail, the device is reopened up to `retries` times, waiting backoff, 2*backoff, ...
    (capped at 5 s) between tries. `capture_factory` (device -> cv2.VideoCapture-like) is for tests.
    """

    def __init__(self, device: int | str = 0, width: int = 1280, height: int = 720, fps: float = 30.0, *,
                 fourcc: str | None = "MJPG", retries: int = 5, backoff: float = 0.5,
                 strict_size: bool = True, capture_factory: Callable[[int | str], Any] | None = None):
        self.device = parse_device(device)
        self.req_width, self.req_height, self.req_fps = int(width), int(height), float(fps)
        self.fourcc = fourcc
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.strict_size = strict_size
        self._factory = capture_factory or _default_capture
        self._cap: Any = None
        self._closed = False
        self._index = 0
        self.reconnects = 0
        self.width = self.height = 0
        self.fps = self.req_fps

    # -- opening ---------------------------------------------------------------------------------
    def _name(self) -> str:
        return f"camera {self.device}"

    def _open_once(self) -> Any:
        """Open and configure the device; raises VmatteError saying why it failed."""
        dev = self.device
        if isinstance(dev, str) and not Path(dev).exists():
            found = ", ".join(list_video_devices()) or "none"
            raise VmatteError(f"{self._name()} not found (video devices here: {found}); "
                              f"pass --camera with one of them or plug a camera in")
        if (self._factory is _default_capture and isinstance(dev, int) and sys.platform.startswith("linux")
                and not list_video_devices()):
            raise VmatteError(self._open_failure())  # nothing to open: skip OpenCV's warnings
        cap = self._factory(dev)
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            raise VmatteError(self._open_failure())
        if self.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.req_width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.req_height)
        cap.set(cv2.CAP_PROP_FPS, self.req_fps)
        try:  # keep the driver's queue short so frames are fresh (not every backend supports it)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        except Exception:  # pragma: no cover - backend specific
            pass
        ok, bgr = cap.read()
        if not ok or bgr is None:
            cap.release()
            raise VmatteError(f"{self._name()} opened but gives no frames; it is probably in use by another "
                              f"application (close it) or needs permission (add yourself to the 'video' group)")
        h, w = bgr.shape[:2]
        if (w, h) != (self.req_width, self.req_height):
            msg = (f"{self._name()} gave {w}x{h}, not the requested {self.req_width}x{self.req_height}; "
                   f"pass a size it supports, e.g. --width {w} --height {h} (list them with v4l2-ctl --list-formats-ext)")
            if self.strict_size:
                cap.release()
                raise VmatteError(msg)
            log.warning(msg)
        self.width, self.height = w, h
        got_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = got_fps if got_fps > 0 else self.req_fps
        log.info("%s open: %dx%d at %.1f fps", self._name(), w, h, self.fps)
        return cap

    def _open_failure(self) -> str:
        devs = list_video_devices()
        if sys.platform.startswith("linux") and not devs:
            return (f"no camera found ({self._name()} does not open and there is no /dev/video*); plug a camera in, "
                    f"or use --file demo.mp4 to play a video as the camera")
        if isinstance(self.device, int) and sys.platform.startswith("linux") and f"/dev/video{self.device}" not in devs:
            return (f"{self._name()} does not exist (video devices here: {', '.join(devs)}); pass --camera with one of them")
        return (f"{self._name()} does not open: it is busy (another app such as a browser or call app is using it; "
                f"close it) or you lack permission (sudo usermod -aG video $USER, then log in again)")

    def __enter__(self) -> "CameraSource":
        self._cap = self._open_once()
        return self

    def _release(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    # -- reading ---------------------------------------------------------------------------------
    def _reconnect(self, stop: threading.Event | None) -> None:
        """Reopen after a failed read: bounded retries with backoff; raises when it stays gone."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        delay = self.backoff
        last = ""
        for attempt in range(1, self.retries + 1):
            log.warning("%s stopped giving frames; reconnect %d/%d in %.1f s", self._name(), attempt, self.retries, delay)
            if stop is not None:
                if stop.wait(delay):
                    raise _Stopped()
            else:
                time.sleep(delay)
            try:
                self._cap = self._open_once()
                self.reconnects += 1
                log.warning("%s reconnected", self._name())
                return
            except VmatteError as e:
                last = str(e)
            delay = min(delay * 2, 5.0)
        raise VmatteError(f"{self._name()} disconnected and did not come back after {self.retries} tries ({last}); "
                          f"check the cable or whether another app took it, then start again")

    def read(self, stop: threading.Event | None = None) -> Captured | None:
        """Block until the next frame; reconnects when the camera disappears. None once closed/stopped."""
        while not self._closed:
            if self._cap is None:
                raise RuntimeError("use CameraSource inside a `with` block")
            ok, bgr = self._cap.read()
            t = time.perf_counter()
            if ok and bgr is not None:
                self._index += 1
                return Captured(self._index - 1, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), t)
            if stop is not None and stop.is_set():
                return None
            try:
                self._reconnect(stop)
            except _Stopped:
                return None
        return None


class _Stopped(Exception):
    """Internal: the stop event fired while waiting to reconnect."""


class FileCamera(CloseOnce):
    """A video file played as a live camera: looped, paced in real time at its frame rate.

    Frames are scaled to cover width x height and centre-cropped when given (e.g. a demo clip as 720p). Like a
    real camera, it never waits for the reader: when decoding or the reader falls behind, frames
    whose time has passed are skipped (counted in `skipped`). read() returns None at the end when
    loop=False. realtime=False delivers frames as fast as they decode (for offline measurements).
    """

    def __init__(self, path: str | Path, width: int | None = None, height: int | None = None, *,
                 fps: float | None = None, loop: bool = True, realtime: bool = True):
        self.path = Path(path)
        if not self.path.is_file():
            raise VmatteError(f"video file {self.path} not found; check the --file path")
        self.req_size = (int(width), int(height)) if width and height else None
        self.loop, self.realtime = loop, realtime
        self._fps_override = fps
        self._container = None
        self._frames = None
        self._closed = False
        self._index = 0
        self._t0 = 0.0
        self.skipped = 0
        self.loops = 0
        self.width = self.height = 0
        self.fps = 30.0

    def _open(self) -> None:
        import av

        try:
            self._container = av.open(str(self.path))
        except (av.error.FFmpegError, UnicodeDecodeError) as e:
            raise VmatteError(f"cannot open {self.path} as a video ({e}); give a video file to --file") from None
        if not self._container.streams.video:
            self._container.close()
            raise VmatteError(f"no video stream in {self.path}; give a video file to --file")
        vs = self._container.streams.video[0]
        vs.thread_type = "AUTO"
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        self.fps = float(self._fps_override or (float(rate) if rate else 30.0))
        w, h = vs.codec_context.width, vs.codec_context.height
        self.width, self.height = self.req_size or (w, h)
        self._frames = self._container.decode(vs)

    def _close_container(self) -> None:
        c, self._container, self._frames = self._container, None, None
        if c is not None:
            c.close()

    def __enter__(self) -> "FileCamera":
        self._open()
        self._t0 = time.perf_counter()
        return self

    def _release(self) -> None:
        self._close_container()

    def _next_rgb(self) -> np.ndarray | None:
        while True:
            if self._frames is None:
                return None
            try:
                vf = next(self._frames)
            except StopIteration:
                if not self.loop:
                    return None
                self._close_container()
                self._open()
                self.loops += 1
                continue
            rgb = vf.to_ndarray(format="rgb24")
            if self.req_size and (rgb.shape[1], rgb.shape[0]) != self.req_size:
                from ..ops.compose import cover_resize

                rgb = cover_resize(rgb, self.req_size[1], self.req_size[0])  # keep the aspect, crop the rest
            return rgb

    def read(self, stop: threading.Event | None = None) -> Captured | None:
        """The next frame at its due time t0 + index/fps (skipping frames that are already late)."""
        if self._closed:
            return None
        if self._frames is None and self._container is None:
            raise RuntimeError("use FileCamera inside a `with` block")
        period = 1.0 / self.fps
        while True:
            rgb = self._next_rgb()
            if rgb is None:
                return None
            due = self._t0 + self._index * period
            i = self._index
            self._index += 1
            if not self.realtime:
                return Captured(i, rgb, time.perf_counter())
            now = time.perf_counter()
            if now > due + period:  # this frame's slot has passed: a camera would not deliver it now
                self.skipped += 1
                continue
            wait = due - now
            if wait > 0:
                if stop is not None:
                    if stop.wait(wait):
                        return None
                else:
                    time.sleep(wait)
            return Captured(i, rgb, max(due, now))


def open_camera(camera: int | str | None = 0, file: str | Path | None = None, width: int = 1280,
                height: int = 720, fps: float = 30.0, **kw: Any):
    """A FileCamera when `file` is given, else a CameraSource (not yet entered)."""
    if file is not None:
        return FileCamera(file, width, height, loop=kw.pop("loop", True), realtime=kw.pop("realtime", True))
    return CameraSource(0 if camera is None else camera, width, height, fps, **kw)
