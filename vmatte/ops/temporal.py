"""Temporal filtering of mattes for video files, and the flicker measures that tune it.

A matte that changes where the picture does not is flicker. For a file every frame is at hand, so
frame t's matte becomes a weighted mean of the mattes of frames t-r..t+r; a neighbour's weight at
a pixel falls to 0 as that neighbour's colour there moves away from frame t's (compared on small,
softened "guide" images), so still regions average over the window while moving edges keep frame
t's own matte (no lag, no ghost). A scene cut ends the window, so one shot's matte never leaks
into the next. TemporalFilter (push) and smooth_stream (pull) run it over a stream holding only
2r+1 frames, so memory stays flat however long the video.

Conventions: RGB uint8 [H,W,3], alpha float32 [H,W] in [0,1], guides uint8 [h,w,3] (k x k cells).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Iterator, Sequence

import cv2
import numpy as np

from .resize import area_shrink

__all__ = ["TemporalParams", "DEFAULT", "cell_size", "grid", "guide", "guide_i420", "cell_state", "scene_cut",
           "neighbour_weight", "filter_window", "TemporalFilter", "smooth_stream", "changed_mask", "flicker", "max_change"]


FLAT = 0.5 / 255  # alpha below FLAT (or above 1-FLAT) in every frame of a window: nothing to filter there
STRIP, GAP = 64, 32  # px: filter_window works in strips of STRIP rows, on runs of cells GAP apart


@dataclass(frozen=True)
class TemporalParams:
    """radius: frames on each side (the look-ahead; 2r+1 frames are held). tolerance: colour change
    (0..255, largest of R, G, B, on the guide) at which a neighbour's weight reaches 0. work_side:
    the guide's long side at most, in pixels (a guide pixel covers k x k frame pixels, k whole).
    cut: mean colour change between consecutive guides (0..255) that starts a new shot."""

    radius: int = 4
    tolerance: float = 12.0
    work_side: int = 320
    cut: float = 30.0

    def __post_init__(self) -> None:
        if self.radius < 0 or self.tolerance <= 0 or self.work_side < 8 or self.cut <= 0:
            raise ValueError(f"bad temporal parameters {self}: need radius >= 0, tolerance > 0, "
                             "work_side >= 8, cut > 0")


DEFAULT = TemporalParams()


def _buffer(scratch: dict | None, key: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """An array kept in `scratch` (a dict the caller holds) while its shape holds, else a new one:
    arrays past glibc's mmap threshold (128 kB) cost page faults each time they are made afresh."""
    buf = None if scratch is None else scratch.get(key)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = np.empty(shape, dtype)
        if scratch is not None:
            scratch[key] = buf
    return buf


def cell_size(h: int, w: int, side: int = DEFAULT.work_side) -> int:
    """Frame pixels per guide pixel (a side) for an h x w frame, so that the guide's long side is
    at most `side` (up to 16 pixels a cell)."""
    return min(16, max(1, -(-max(h, w) // side)))


def grid(h: int, w: int, k: int) -> tuple[int, int]:
    """(rows, cols) of k x k cells covering an h x w frame (the last ones may stick out)."""
    return -(-h // k), -(-w // k)


def guide(rgb: np.ndarray, side: int = DEFAULT.work_side) -> np.ndarray:
    """The frame as the filter compares it: shrunk to grid() by area and lightly blurred (sensor
    and compression noise would otherwise read as motion) -> uint8 [h,w,3]."""
    h, w = grid(*rgb.shape[:2], cell_size(*rgb.shape[:2], side))
    return cv2.GaussianBlur(area_shrink(rgb, w, h), (3, 3), 0.8)


def guide_i420(planes: np.ndarray, side: int = DEFAULT.work_side, matrix: str = "bt601") -> np.ndarray:
    """guide() of a frame given as limited-range I420 planes uint8 [H*3/2,W] (the GPU route's
    input; matrix bt601 or bt709), converted to RGB at the small size."""
    from .yuv import MATRIX_NUMBER, i420_small_to_rgb, planes_view

    H, W = planes.shape[0] * 2 // 3, planes.shape[1]
    h, w = grid(H, W, cell_size(H, W, side))
    small = cv2.merge([area_shrink(p, w, h) for p in planes_view(planes)])  # [h,w,3] Y, U, V
    return cv2.GaussianBlur(i420_small_to_rgb(small, MATRIX_NUMBER[matrix]), (3, 3), 0.8)


def cell_state(alpha: np.ndarray, k: int, scratch: dict | None = None) -> np.ndarray:
    """Per k x k cell of a matte float32 [H,W]: 0 where every pixel rounds to 0 in 8 bits (below
    FLAT), 2 where every pixel rounds to 255, 1 otherwise -> uint8 grid(H, W, k). scratch: a dict
    for buffers kept between calls."""
    H, W = alpha.shape
    h, w = grid(H, W, k)
    q, m = (_buffer(scratch, key, (h * k, w * k), np.uint8) for key in ("q", "m"))
    cv2.convertScaleAbs(alpha, dst=q[:H, :W], alpha=255.0)  # the matte in 8 bits
    q[H:, :W] = q[H - 1:H, :W]  # cells sticking out: repeat the last row / column
    q[:, W:] = q[:, W - 1:W]
    box = np.ones((k, k), np.uint8)  # max / min over [x, x+k): sampled every k pixels, per cell
    state = np.ones((h, w), np.uint8)
    state[cv2.dilate(q, box, dst=m, anchor=(0, 0))[::k, ::k] == 0] = 0
    state[cv2.erode(q, box, dst=m, anchor=(0, 0))[::k, ::k] == 255] = 2
    return state


def max_change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Largest of |dR|, |dG|, |dB| per pixel of two [h,w,3] images of one dtype -> [h,w]."""
    r, g, b_ = cv2.split(cv2.absdiff(a, b))
    return cv2.max(cv2.max(r, g), b_)


@lru_cache(maxsize=8)
def _ramp(tolerance: float) -> np.ndarray:
    d = np.arange(256, dtype=np.float32)
    return np.square(np.clip(1.0 - d / np.float32(tolerance), 0.0, 1.0)).astype(np.float32)  # [256]


def scene_cut(prev: np.ndarray, cur: np.ndarray, threshold: float = DEFAULT.cut) -> bool:
    """True when guide `cur` starts a new shot after `prev`: another size, or a mean colour change
    (largest of R, G, B) above `threshold`."""
    if prev.shape != cur.shape:
        return True
    return float(cv2.mean(max_change(prev, cur))[0]) > threshold


def neighbour_weight(g: np.ndarray, g_centre: np.ndarray, tolerance: float = DEFAULT.tolerance,
                     out: np.ndarray | None = None) -> np.ndarray:
    """Weight of a neighbour's matte per guide pixel: (1 - d/tolerance)^2 clipped at 0, with d the
    largest colour change of R, G, B -> float32 [h,w] in 0..1 (into `out` when given)."""
    return cv2.LUT(max_change(g, g_centre), _ramp(float(tolerance)), dst=out)


def _runs(cols: np.ndarray, gap: int) -> list[tuple[int, int]]:
    """[start, end) runs of sorted column indices, joining runs less than `gap` apart."""
    c = cols.tolist()
    cuts = np.flatnonzero(np.diff(cols) > gap).tolist()
    return [(c[i], c[j] + 1) for i, j in zip([0] + [x + 1 for x in cuts], cuts + [len(c) - 1])]


def filter_window(alphas: Sequence[np.ndarray], guides: Sequence[np.ndarray], states: Sequence[np.ndarray],
                  centre: int, k: int, tolerance: float = DEFAULT.tolerance, scratch: dict | None = None
                  ) -> np.ndarray:
    """The filtered matte of frame `centre` from its window (one shot, any length): mattes float32
    [H,W], guides [h,w,3] and cell_state()s [h,w] of k x k cells -> a new float32 [H,W].

    Per pixel: sum_s w_s alpha_s / sum_s w_s with w_centre = 1 and w_s = neighbour_weight(), the
    weights normalised per cell and upsampled bilinearly. Only cells where some frame of the window
    is not flat (cell_state 1, or 0 in one frame and 2 in another) are computed at full size, in
    strips of cells; the rest keep the centre's matte (off by less than FLAT from the full sum).
    scratch: a dict for buffers kept between calls (the filter's own; the result is always new).
    """
    alphas = [np.asarray(a, np.float32) for a in alphas]
    a_t = alphas[centre]
    H, W = a_t.shape
    g_t = guides[centre]
    h, w = g_t.shape[:2]
    ws = _buffer(scratch, f"weights{len(alphas)}", (len(alphas), h, w))  # [n,h,w]: the centre's first
    ws[0] = 1.0
    idx = [centre]
    for s, g in enumerate(guides):
        if s != centre and float(neighbour_weight(g, g_t, tolerance, ws[len(idx)]).max()) > 1e-3:
            idx.append(s)  # (a neighbour that moved everywhere, a pan, costs nothing more)
    out = a_t.copy()
    n = len(idx)
    if n == 1:
        return out
    ws = ws[:n]
    norm = _buffer(scratch, "norm", (h, w))
    np.divide(1.0, np.sum(ws, axis=0, out=norm), out=norm)
    np.multiply(ws, norm, out=ws)  # normalised per cell
    all0, all2 = states[centre] == 0, states[centre] == 2
    for s in idx[1:]:
        all0 &= states[s] == 0
        all2 &= states[s] == 2
    active = ~(all0 | all2)  # [h,w]
    strip, gap = -(-STRIP // k), -(-GAP // k)  # in cells
    for r0 in range(0, h, strip):
        r1 = min(h, r0 + strip)
        cols = np.flatnonzero(active[r0:r1].any(0))
        for c0, c1 in (_runs(cols, gap) if cols.size else ()):
            # Upsample each weight over the strip plus one cell of margin: with whole-cell scaling
            # this equals the same rows of a whole-frame upsample exactly.
            R0, R1, C0, C1 = max(0, r0 - 1), min(h, r1 + 1), max(0, c0 - 1), min(w, c1 + 1)
            y0, y1, x0, x1 = r0 * k, min(H, r1 * k), c0 * k, min(W, c1 * k)
            dst = out[y0:y1, x0:x1]
            crop = (slice(y0 - R0 * k, y1 - R0 * k), slice(x0 - C0 * k, x1 - C0 * k))
            size = ((C1 - C0) * k, (R1 - R0) * k)
            for j, s in enumerate(idx):
                up = cv2.resize(ws[j, R0:R1, C0:C1], size, interpolation=cv2.INTER_LINEAR)[crop]
                a = alphas[s][y0:y1, x0:x1]
                if j == 0:
                    cv2.multiply(a, up, dst=dst)
                else:
                    cv2.accumulateProduct(a, up, dst)
    return out


class TemporalFilter:
    """The centred filter over a stream, pushed one frame at a time in order (the caller's loop
    stays in charge: the GPU route pushes from its sink). push() returns the frames it completes:
    frame t once frame t+radius is in, or at once when a cut or a size change ends its shot;
    flush() returns the rest at the end. At most 2*radius+1 frames are held, so memory is flat."""

    def __init__(self, params: TemporalParams = DEFAULT):
        self.params = params
        # (payload, guide, alpha, cell state, shot) per frame held
        self._buf: deque[tuple[Any, np.ndarray, np.ndarray, np.ndarray, int]] = deque()
        self._next = 0  # index in _buf of the next frame to give out
        self._shot = 0
        self._scratch: dict = {}  # buffers of cell_state and filter_window, kept while sizes hold

    def push(self, payload: Any, guide_: np.ndarray, alpha: np.ndarray) -> list[tuple[Any, np.ndarray]]:
        """Add the next frame: guide(rgb, params.work_side) [h,w,3] and its matte [H,W]. Returns
        [(payload, filtered matte float32 [H,W]), ...] for the frames now complete, in order."""
        a = np.asarray(alpha, np.float32)
        k = cell_size(*a.shape, self.params.work_side)
        h, w = grid(*a.shape, k)
        if guide_.shape != (h, w, 3):
            raise ValueError(f"guide of shape {guide_.shape} for a matte of {a.shape}; make it with "
                             f"guide(rgb, {self.params.work_side})")
        buf = self._buf
        if buf and (buf[-1][2].shape != a.shape or scene_cut(buf[-1][1], guide_, self.params.cut)):
            self._shot += 1
        buf.append((payload, guide_, a, cell_state(a, k, self._scratch), self._shot))
        done = []
        while self._next < len(buf) and (len(buf) - 1 - self._next >= self.params.radius
                                         or buf[-1][4] != buf[self._next][4]):
            done.append(self._emit())
        return done

    def flush(self) -> list[tuple[Any, np.ndarray]]:
        """The frames still held, filtered with what follows them (the end of the stream)."""
        done = []
        while self._next < len(self._buf):
            done.append(self._emit())
        return done

    def _emit(self) -> tuple[Any, np.ndarray]:
        buf, i, r = self._buf, self._next, self.params.radius
        shot = buf[i][4]
        lo, hi = max(0, i - r), min(len(buf), i + r + 1)
        win = [j for j in range(lo, hi) if buf[j][4] == shot]  # the window, cut at shot boundaries
        payload, a = buf[i][0], buf[i][2]
        out = filter_window([buf[j][2] for j in win], [buf[j][1] for j in win], [buf[j][3] for j in win],
                            win.index(i), cell_size(*a.shape, self.params.work_side), self.params.tolerance,
                            self._scratch)
        self._next += 1
        while self._next > r:  # the oldest frame is in no window any more
            buf.popleft()
            self._next -= 1
        return payload, out


def smooth_stream(items: Iterable[tuple[Any, np.ndarray, np.ndarray]], params: TemporalParams = DEFAULT
                  ) -> Iterator[tuple[Any, np.ndarray]]:
    """TemporalFilter over an iterable of (payload, guide, alpha) -> (payload, filtered alpha),
    every frame once, in order."""
    f = TemporalFilter(params)
    for payload, g, a in items:
        yield from f.push(payload, g, a)
    yield from f.flush()


# -- measures ---------------------------------------------------------------------------------------
def changed_mask(prev_rgb: np.ndarray, rgb: np.ndarray, threshold: float = 4.0, sigma: float = 1.0) -> np.ndarray:
    """Pixels whose colour changed between two frames -> bool [H,W]: after a Gaussian blur of
    `sigma` px (noise), the largest of |dR|, |dG|, |dB| (0..255) is `threshold` or more."""
    a = cv2.GaussianBlur(prev_rgb.astype(np.float32), (0, 0), sigma)
    b = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), sigma)
    return max_change(a, b) >= threshold


def flicker(prev_alpha: np.ndarray, alpha: np.ndarray, changed: np.ndarray) -> tuple[float, int]:
    """(sum of |alpha_t - alpha_t-1| over the pixels that did not change, their count): where the
    colour holds still a right matte holds still too, so what moves there is flicker."""
    still = ~changed
    return float(cv2.absdiff(alpha, prev_alpha)[still].sum(dtype=np.float64)), int(still.sum())
