"""The live loop: camera -> matting -> temporal smoothing -> compositing -> sinks, with a live policy.

A capture thread reads the camera into a size-1 "latest frame" slot; the calling thread takes the
freshest frame, mattes, smooths, composites and sends it. A new frame replaces an unread one (the
older one is dropped and counted), so the output never lags behind a queue of stale frames; a frame
older than `max_latency` when picked up is swapped for a fresher one if that arrives within a frame or
two (never starving a model slower than max_latency), and an optional fps cap throttles work.
Matting runs in the calling thread so Ctrl-C lands there and a preview window (which OpenCV wants
on the main thread) can be serviced between frames.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Protocol

import cv2
import numpy as np

from .errors import VmatteError

log = logging.getLogger(__name__)

__all__ = ["LatestSlot", "MatteSmoother", "LiveLoop", "LiveStats", "ema", "motion_map", "static_flicker",
           "DEFAULT_KEY_BACKGROUNDS"]

MOTION_WORK_SIDE = 160  # long side (px) at which frame differences are computed
# Preview actions -> --background specs (the "image" entry is filled in by the caller).
DEFAULT_KEY_BACKGROUNDS: dict[str, str | None] = {"blur": "blur", "color": "green", "image": None,
                                                  "none": "transparent"}
SMOOTHING_STEP = 0.1
LATE_WAIT = 0.07  # s to wait for a fresher frame than a late one (about two frames at 30 fps)


class LiveSource(Protocol):
    def read(self, stop: threading.Event | None = None) -> Any: ...


class LiveSink(Protocol):
    def send(self, frame: np.ndarray) -> None: ...


# -- the latest-frame slot --------------------------------------------------------------------------
class LatestSlot:
    """A one-item mailbox: put() replaces an unread item (counting it in `drops`), get() waits."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._has = False
        self._closed = False
        self.drops = 0
        self.puts = 0

    def put(self, item: Any) -> bool:
        """Store `item`; True when it replaced (dropped) an unread one."""
        with self._cond:
            dropped = self._has
            if dropped:
                self.drops += 1
            self._item, self._has = item, True
            self.puts += 1
            self._cond.notify()
            return dropped

    def get(self, timeout: float | None = None) -> Any:
        """The newest item (removing it), or None after `timeout` s or once closed and empty."""
        with self._cond:
            if not self._has and not self._closed:
                self._cond.wait(timeout)
            if not self._has:
                return None
            item, self._item, self._has = self._item, None, False
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


# -- temporal smoothing -----------------------------------------------------------------------------
def ema(prev: np.ndarray, alpha: np.ndarray, weight: float | np.ndarray) -> np.ndarray:
    """weight*prev + (1-weight)*alpha (weight scalar or per pixel [H,W]) -> float32 [H,W].

    weight=0 returns the new matte unchanged; weight near 1 holds the old one (less flicker, more lag).
    """
    a = np.asarray(alpha, np.float32)
    if np.isscalar(weight) or np.ndim(weight) == 0:
        w = float(weight)
        if w <= 0.0:
            return a.copy()
        return cv2.addWeighted(np.asarray(prev, np.float32), w, a, 1.0 - w, 0.0)
    w = np.asarray(weight, np.float32)
    return a + w * (np.asarray(prev, np.float32) - a)


def _grey_small(rgb: np.ndarray, side: int = MOTION_WORK_SIDE) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = min(1.0, side / max(h, w))
    small = rgb if s >= 1.0 else cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) * np.float32(1 / 255)


def motion_map(prev_rgb: np.ndarray, rgb: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Per-pixel scene change in [0,1]: |grey_t - grey_t-1| at low resolution, softened and upsampled.

    size=(H,W) of the result (default: the frame's). Computed at MOTION_WORK_SIDE px on the long side,
    which both saves time and ignores sensor noise.
    """
    d = cv2.absdiff(_grey_small(prev_rgb), _grey_small(rgb))
    d = cv2.GaussianBlur(d, (0, 0), 1.0)
    H, W = size or rgb.shape[:2]
    return cv2.resize(d, (W, H), interpolation=cv2.INTER_LINEAR)


class MatteSmoother:
    """Temporal EMA of the alpha matte against frame-to-frame flicker.

    smoothing in [0,1]: 0 = off (output = current matte), 0.5 = half of the previous matte kept each
    frame, towards 1 = steadier but laggier edges. With motion_adaptive, the weight falls to 0 where
    the frame changes by `motion_scale` (grey level in 0..1) or more, so moving edges do not trail.
    The state resets when the frame size changes.
    """

    def __init__(self, smoothing: float = 0.5, motion_adaptive: bool = True, motion_scale: float = 0.06):
        self.smoothing = smoothing
        self.motion_adaptive = motion_adaptive
        self.motion_scale = float(motion_scale)
        self.reset()

    @property
    def smoothing(self) -> float:
        return self._s

    @smoothing.setter
    def smoothing(self, value: float) -> None:
        v = float(value)
        if not 0.0 <= v <= 1.0:
            raise VmatteError(f"smoothing {v} is out of range; use a value in 0..1 (0 = off, 0.5 = default)")
        self._s = min(v, 0.98)  # 1.0 would freeze the matte forever

    def reset(self) -> None:
        self._prev_alpha: np.ndarray | None = None
        self._prev_rgb: np.ndarray | None = None

    def __call__(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """Smoothed alpha float32 [H,W] for this frame (rgb uint8 [H,W,3] drives the motion map)."""
        alpha = np.asarray(alpha, np.float32)
        prev, prev_rgb = self._prev_alpha, self._prev_rgb
        s = self._s
        if prev is None or prev.shape != alpha.shape or s <= 0.0:
            out = alpha
        elif self.motion_adaptive and prev_rgb is not None and prev_rgb.shape == rgb.shape:
            m = motion_map(prev_rgb, rgb, alpha.shape)  # [H,W] 0..1
            w = np.clip(1.0 - m * np.float32(1.0 / self.motion_scale), 0.0, 1.0) * np.float32(s)
            out = ema(prev, alpha, w)
        else:
            out = ema(prev, alpha, s)
        self._prev_alpha = out
        self._prev_rgb = rgb if self.motion_adaptive else None
        return out


def static_flicker(prev_rgb: np.ndarray, rgb: np.ndarray, prev_alpha: np.ndarray, alpha: np.ndarray,
                   threshold: float = 0.02) -> float:
    """Mean |alpha_t - alpha_t-1| over pixels where the scene does not move (grey change < threshold).

    A matte of a still region should not change; what it does change there is flicker. Returns nan
    when no pixel is static.
    """
    static = motion_map(prev_rgb, rgb, alpha.shape) < threshold  # [H,W] bool
    if not static.any():
        return float("nan")
    d = cv2.absdiff(np.asarray(alpha, np.float32), np.asarray(prev_alpha, np.float32))
    return float(d[static].mean())


# -- stats ------------------------------------------------------------------------------------------
@dataclass
class LiveStats:
    """What a live run did. Latency is frame arrival (capture) to the last sink's send returning."""

    seconds: float = 0.0
    frames_in: int = 0  # frames the camera delivered
    frames_out: int = 0  # frames sent to the sinks
    dropped: int = 0  # replaced in the slot before being processed (stale)
    late: int = 0  # older than max_latency when picked up and replaced by a fresher one
    fps: float = 0.0  # output frames per second
    input_fps: float = 0.0
    latency_ms_p50: float = float("nan")
    latency_ms_p95: float = float("nan")
    latency_ms_max: float = float("nan")
    interrupted: bool = False
    stopped_by: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)  # mean per stage

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (f"{self.fps:.1f} fps out ({self.input_fps:.1f} in), latency p50 {self.latency_ms_p50:.0f} ms "
                f"p95 {self.latency_ms_p95:.0f} ms, dropped {self.dropped + self.late}")


def _pct(values: Iterable[float], q: float) -> float:
    v = np.asarray(list(values), np.float64)
    return float(np.percentile(v, q)) if v.size else float("nan")


# -- the loop ---------------------------------------------------------------------------------------
class LiveLoop:
    """Run a live source through matting and compositing into sinks until stopped.

    source: entered object with read(stop) -> frame with .index, .rgb, .t (perf_counter arrival) or
    None at the end (vmatte.io.camera sources). matte: rgb uint8 [H,W,3] -> alpha float32 [H,W]
    (e.g. Matter(...).matte). sinks: entered objects with send(frame); those with poll() (the
    preview window) are polled for key actions. background: a --background spec or a
    vmatte.backgrounds.Background; switch it while running with set_background() from any thread.
    """

    def __init__(self, source: LiveSource, matte: Callable[[np.ndarray], np.ndarray], sinks: Iterable[LiveSink] = (),
                 *, background: Any = "blur", smoothing: float = 0.5, motion_adaptive: bool = True,
                 fps_cap: float | None = None, max_latency: float = 0.5, max_seconds: float | None = None,
                 max_frames: int | None = None, stats_every: float = 5.0,
                 key_backgrounds: dict[str, Any] | None = None, keep_latencies: int = 100_000):
        self.source = source
        self.matte = matte
        self.sinks = list(sinks)
        self.smoother = MatteSmoother(smoothing, motion_adaptive)
        self.fps_cap = float(fps_cap) if fps_cap else None
        self.max_latency = float(max_latency) if max_latency else None
        self.max_seconds = max_seconds
        self.max_frames = max_frames
        self.stats_every = stats_every
        self.key_backgrounds = dict(DEFAULT_KEY_BACKGROUNDS, **(key_backgrounds or {}))
        self._bg_lock = threading.Lock()
        self._retired: list[Any] = []
        self._background = self._parse(background)
        self._stop = threading.Event()
        self._stop_reason = ""
        self._slot = LatestSlot()
        self._error: BaseException | None = None
        self._eos = threading.Event()
        self.latencies: deque[float] = deque(maxlen=keep_latencies)  # seconds
        self.out_indices: deque[int] = deque(maxlen=keep_latencies)
        self.on_frame: Callable[[Any, np.ndarray, np.ndarray], None] | None = None  # (captured, alpha, out)

    # -- controls (thread-safe) -----------------------------------------------------------------
    @staticmethod
    def _parse(spec: Any) -> Any:
        from .backgrounds import parse_background

        if callable(spec) and not hasattr(spec, "render"):
            return _FnBackground(spec)
        return parse_background(spec)

    @property
    def background(self) -> Any:
        with self._bg_lock:
            return self._background

    def set_background(self, spec: Any) -> None:
        """Switch the background (spec string, Background, or fn(rgb, alpha) -> frame); takes effect next frame."""
        new = self._parse(spec)  # parse outside the lock: may read a file, may raise
        with self._bg_lock:
            old, self._background = self._background, new
            if old is not new:
                self._retired.append(old)  # closed by the loop thread, which may be rendering with it now
        log.info("background -> %r", new)

    @property
    def smoothing(self) -> float:
        return self.smoother.smoothing

    @smoothing.setter
    def smoothing(self, value: float) -> None:
        self.smoother.smoothing = min(1.0, max(0.0, float(value)))
        log.info("smoothing -> %.2f", self.smoother.smoothing)

    def stop(self, reason: str = "stop") -> None:
        """Ask the loop to finish after the current frame (any thread, e.g. a signal handler)."""
        if not self._stop.is_set():
            self._stop_reason = reason
        self._stop.set()
        self._slot.close()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def handle_action(self, action: str | None) -> None:
        """Apply a preview key action: background switch, smoothing +/-, quit."""
        if not action:
            return
        if action == "quit":
            self.stop("quit key")
        elif action == "smooth+":
            self.smoothing = self.smoothing + SMOOTHING_STEP
        elif action == "smooth-":
            self.smoothing = self.smoothing - SMOOTHING_STEP
        elif action in self.key_backgrounds:
            spec = self.key_backgrounds[action]
            if spec is None:
                log.warning("no %s background configured for this key; pass --background-image PATH", action)
                return
            try:
                self.set_background(spec)
            except VmatteError as e:
                log.warning("cannot switch background: %s", e)

    # -- threads --------------------------------------------------------------------------------
    def _capture(self) -> None:
        try:
            while not self._stop.is_set():
                fr = self.source.read(self._stop)
                if fr is None:
                    break
                self._slot.put(fr)
        except BaseException as e:  # handed to the loop thread and re-raised there
            self._error = e
            self._stop_reason = self._stop_reason or "capture error"
            self._stop.set()
        finally:
            self._eos.set()
            self._slot.close()

    def _close_retired(self) -> None:
        with self._bg_lock:
            retired, self._retired = self._retired, []
        for bg in retired:
            try:
                bg.close()
            except Exception as e:  # pragma: no cover - best effort
                log.debug("closing background %r: %s", bg, e)

    def process(self, fr: Any) -> np.ndarray:
        """Matte, smooth and composite one captured frame, send it to every sink; returns the output."""
        t0 = time.perf_counter()
        alpha = self.matte(fr.rgb)  # [H,W] float32
        t1 = time.perf_counter()
        alpha = self.smoother(fr.rgb, alpha)
        bg = self.background
        out = bg.render(fr.rgb, alpha, fr.index)
        t2 = time.perf_counter()
        for s in self.sinks:
            s.send(out)
        t3 = time.perf_counter()
        self._tsum[0] += t1 - t0
        self._tsum[1] += t2 - t1
        self._tsum[2] += t3 - t2
        if self.on_frame is not None:
            self.on_frame(fr, alpha, out)
        return out

    def run(self) -> LiveStats:
        """Run until stop(), Ctrl-C, max_seconds/max_frames or the end of a non-looping source.

        Returns the stats; an error in the capture thread (camera gone for good) is re-raised here.
        Ctrl-C ends the run cleanly (stats.interrupted is True) instead of propagating.
        """
        stats = LiveStats()
        self._tsum = [0.0, 0.0, 0.0]
        pollers = [s for s in self.sinks if callable(getattr(s, "poll", None))]
        cap = threading.Thread(target=self._capture, name="vmatte-capture", daemon=True)
        start = time.perf_counter()
        next_log = start + self.stats_every if self.stats_every else float("inf")
        win_start, win_frames, win_lat = start, 0, []
        next_due = start
        cap.start()
        try:
            while not self._stop.is_set():
                now = time.perf_counter()
                if self.max_seconds is not None and now - start >= self.max_seconds:
                    self._stop_reason = "max_seconds"
                    break
                if self.fps_cap and now < next_due:
                    if self._stop.wait(next_due - now):
                        break
                fr = self._slot.get(timeout=0.1)
                if fr is None:
                    if self._eos.is_set():
                        self._stop_reason = self._stop_reason or "end of source"
                        break
                    for p in pollers:
                        self.handle_action(p.poll())
                    continue
                self._close_retired()
                picked = time.perf_counter()
                if self.max_latency is not None and picked - fr.t > self.max_latency:
                    # Too old (a driver's buffered frame, or a stall): take a fresher one if it comes
                    # within a frame or two; else use this one (dropping it would starve a slow model).
                    newer = self._slot.get(timeout=min(self.max_latency, LATE_WAIT))
                    if newer is not None:
                        stats.late += 1
                        fr, picked = newer, time.perf_counter()
                if self.fps_cap:
                    next_due = max(next_due + 1.0 / self.fps_cap, picked)
                self.process(fr)
                done = time.perf_counter()
                lat = done - fr.t
                self.latencies.append(lat)
                self.out_indices.append(fr.index)
                stats.frames_out += 1
                win_frames += 1
                win_lat.append(lat)
                for p in pollers:
                    self.handle_action(p.poll())
                if self.max_frames is not None and stats.frames_out >= self.max_frames:
                    self._stop_reason = "max_frames"
                    break
                if done >= next_log:
                    span = done - win_start
                    log.info("live: %.1f fps, latency p50 %.0f ms p95 %.0f ms, dropped %d, smoothing %.2f",
                             win_frames / span, _pct(win_lat, 50) * 1e3, _pct(win_lat, 95) * 1e3,
                             self._slot.drops + stats.late, self.smoothing)
                    win_start, win_frames, win_lat = done, 0, []
                    next_log = done + self.stats_every
        except KeyboardInterrupt:
            stats.interrupted = True
            self._stop_reason = "interrupted"
            log.info("live: interrupted, shutting down")
        finally:
            self._stop.set()
            self._slot.close()
            cap.join(timeout=5.0)
            if cap.is_alive():  # pragma: no cover - a driver stuck in read()
                log.warning("capture thread did not stop within 5 s; leaving it to exit with the process")
            self._close_retired()
        end = time.perf_counter()
        stats.seconds = end - start
        stats.frames_in = self._slot.puts
        stats.dropped = self._slot.drops
        stats.stopped_by = self._stop_reason or "stop"
        stats.fps = stats.frames_out / stats.seconds if stats.seconds > 0 else 0.0
        stats.input_fps = stats.frames_in / stats.seconds if stats.seconds > 0 else 0.0
        lats = list(self.latencies)
        stats.latency_ms_p50 = _pct(lats, 50) * 1e3
        stats.latency_ms_p95 = _pct(lats, 95) * 1e3
        stats.latency_ms_max = max(lats) * 1e3 if lats else float("nan")
        n = max(1, stats.frames_out)
        stats.timings_ms = {"matte": self._tsum[0] / n * 1e3, "smooth+composite": self._tsum[1] / n * 1e3,
                            "sinks": self._tsum[2] / n * 1e3}
        log.info("live done (%s): %s", stats.stopped_by, stats.line())
        if self._error is not None:
            raise self._error
        return stats


class _FnBackground:
    """Adapter: a plain fn(rgb, alpha) -> frame used as a background."""

    alpha = False

    def __init__(self, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]):
        self.fn = fn

    def render(self, rgb: np.ndarray, alpha: np.ndarray, index: int = 0) -> np.ndarray:
        return self.fn(rgb, alpha)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"_FnBackground({getattr(self.fn, '__name__', 'fn')})"
