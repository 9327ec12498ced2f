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
    d = cv2.subtract(np.asarray(prev, np.float32), a)  # [H,W] float32, one pass each (no temporaries)
    cv2.multiply(d, w, dst=d)
    return cv2.add(a, d, dst=d)


def _grey_small(rgb: np.ndarray, side: int = MOTION_WORK_SIDE) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = min(1.0, side / max(h, w))
    small = rgb if s >= 1.0 else cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) * np.float32(1 / 255)


def _motion_small(prev_grey: np.ndarray, grey: np.ndarray) -> np.ndarray:
    d = cv2.absdiff(prev_grey, grey)
    return cv2.GaussianBlur(d, (0, 0), 1.0)


def motion_map(prev_rgb: np.ndarray, rgb: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Per-pixel scene change in [0,1]: |grey_t - grey_t-1| at low resolution, softened and upsampled.

    size=(H,W) of the result (default: the frame's). Computed at MOTION_WORK_SIDE px on the long side,
    which both saves time and ignores sensor noise.
    """
    d = _motion_small(_grey_small(prev_rgb), _grey_small(rgb))
    H, W = size or rgb.shape[:2]
    return cv2.resize(d, (W, H), interpolation=cv2.INTER_LINEAR)


class MatteSmoother:
    """Temporal EMA of the alpha matte against frame-to-frame flicker.

    smoothing in [0,1]: 0 = off (output = current matte), 0.5 = half of the previous matte kept each
    frame, towards 1 = steadier but laggier edges. With motion_adaptive, the weight falls to 0 where
    the frame changes by `motion_scale` (grey level in 0..1) or more, so moving edges do not trail.
    The per-pixel weight is computed at MOTION_WORK_SIDE px and upsampled once (the motion map is
    smooth anyway); the previous frame's small grey image is kept, so each frame is shrunk once.
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
        self._prev_grey: np.ndarray | None = None
        self._prev_shape: tuple[int, ...] | None = None

    def __call__(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """Smoothed alpha float32 [H,W] for this frame (rgb uint8 [H,W,3] drives the motion map).

        The result is a new array (never `alpha` itself), so the caller may reuse its matte buffer.
        """
        alpha = np.asarray(alpha, np.float32)
        prev, prev_grey = self._prev_alpha, self._prev_grey
        s = self._s
        grey = _grey_small(rgb) if self.motion_adaptive else None
        same = prev is not None and prev.shape == alpha.shape and self._prev_shape == rgb.shape
        if not same or s <= 0.0:
            out = alpha.copy()
        elif self.motion_adaptive and prev_grey is not None:
            m = _motion_small(prev_grey, grey)  # [h,w] 0..1 at low resolution
            w_small = np.clip(1.0 - m * np.float32(1.0 / self.motion_scale), 0.0, 1.0) * np.float32(s)
            H, W = alpha.shape
            out = ema(prev, alpha, cv2.resize(w_small, (W, H), interpolation=cv2.INTER_LINEAR))
        else:
            out = ema(prev, alpha, s)
        self._prev_alpha = out
        self._prev_grey = grey
        self._prev_shape = rgb.shape
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


