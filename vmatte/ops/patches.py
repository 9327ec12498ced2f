"""The refiner's plumbing on the host: numpy mirrors of vmatte.models.refiner's cell scoring,
choice, window gather and paste, around its patch net (`refiner_patches.onnx`).

The exported refiner graph does this inside onnxruntime over the whole frame (a full-resolution
upsample, GatherElements over a flattened frame, ScatterElements, layout reorders); on a CPU the
host does the same with one OpenCV resize and slices of the K windows, for less time. Same
interpolant (half-pixel bilinear, edges clamped), the same cells (ties go to the lower index, as
TopK's; cells whose scores differ by float rounding only, as in a frame with no person, may be
picked otherwise), the same windows (edge-replicated) and the same paste, so the result matches
the graph's to float rounding."""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

PATCH = 64  # refined cell side at full resolution (the refiner graph's too: vmatte.models.refiner)
# Per cell side: the upsampled alpha is scored on a 16x16 grid of each 64x64 cell. Against scoring
# every pixel, rt picks 31.6-31.8 of the same 32 cells on CCP photos at 640x512 to 1920x1080 (8x8
# samples: 31.1-31.7); the scoring costs about 0.1 ms at 720p instead of 1.8 ms.
SCORE_SAMPLES = 16


def cell_scores(coarse: np.ndarray, gh: int, gw: int, samples: int = SCORE_SAMPLES) -> np.ndarray:
    """Border score of every 64x64 cell: the mean of 4a(1-a) over samples^2 points of the bilinear
    upsample of the coarse alpha. [h,w] float32 -> [gh*gw] (row-major cells)."""
    a = cv2.resize(coarse, (gw * samples, gh * samples), interpolation=cv2.INTER_LINEAR)
    u = 4.0 * a * (1.0 - a)  # [gh*s, gw*s]
    return u.reshape(gh, samples, gw, samples).mean(axis=(1, 3), dtype=np.float32).ravel()


def select_cells(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the min(k, cells) highest-scoring cells, ties to the lower index (as TopK).
    The graph repeats its last pick when the grid has fewer than k cells; a repeated cell pastes
    the same values, so the host simply refines each cell once."""
    order = np.argsort(-scores, kind="stable")
    return order[: min(k, scores.size)]


def _span(start: int, size: int, limit: int) -> slice | np.ndarray:
    """Indices start..start+size-1 clamped to [0, limit-1]: a slice when all lie inside, else an
    index array that replicates the edge (the graph's clamped windows)."""
    if start >= 0 and start + size <= limit:
        return slice(start, start + size)
    return np.clip(np.arange(start, start + size), 0, limit - 1)


def gather_windows(img: np.ndarray, y0: np.ndarray, x0: np.ndarray, size: int, offset: int) -> np.ndarray:
    """Windows of img [H,W,...] whose top-left corners lie at (y0 - offset, x0 - offset), edge-
    replicated past the border -> [K,size,size,...]. Clamping to the image's own size gives the
    windows of any edge-padded copy of it, so frames need no padding."""
    H, W = img.shape[:2]
    out = np.empty((len(y0), size, size, *img.shape[2:]), img.dtype)
    for k, (y, x) in enumerate(zip(y0.tolist(), x0.tolist())):
        rows, cols = _span(y - offset, size, H), _span(x - offset, size, W)
        if isinstance(rows, slice) and isinstance(cols, slice):
            out[k] = img[rows, cols]
        else:
            out[k] = img[rows][:, cols]
    return out


def _to_nchw(windows: np.ndarray) -> np.ndarray:
    """[K,S,S,3] uint8 (0-255) or float (0-1) windows -> float32 [K,3,S,S] in [0,1]; uint8 scales as
    vmatte.api.to_nchw does, so the values are those of the full-frame conversion."""
    out = np.empty((windows.shape[0], windows.shape[3], *windows.shape[1:3]), np.float32)
    chw = windows.transpose(0, 3, 1, 2)
    if windows.dtype == np.uint8:
        np.multiply(chw, np.float32(1.0 / 255.0), out=out, casting="unsafe")
    else:
        out[...] = chw
    return out


def in_multiples(patch_net: Callable[[np.ndarray, np.ndarray], np.ndarray], multiple: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """`patch_net` for any number of windows when it takes them in multiples of `multiple` (the
    paired patch net): the last window is repeated up to the multiple and its extra cells dropped."""
    if multiple <= 1:
        return patch_net

    def run(img: np.ndarray, base: np.ndarray) -> np.ndarray:
        extra = -len(img) % multiple
        if not extra:
            return patch_net(img, base)
        img = np.concatenate([img, np.repeat(img[-1:], extra, 0)])
        base = np.concatenate([base, np.repeat(base[-1:], extra, 0)])
        return patch_net(img, base)[:-extra]

    return run


def refine_alpha(frame: np.ndarray, coarse: np.ndarray, padded_hw: tuple[int, int], patches: int, context: int,
                 patch_net: Callable[[np.ndarray, np.ndarray], np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
    """The refiner on the host around `patch_net` (image windows [K,3,S,S] in [0,1], alpha windows
    [K,1,S,S] -> cells [K,1,64,64]). frame: the RGB frame [H,W,3], uint8 or float in [0,1], unpadded
    or edge-padded to whole cells; coarse [h,w]: the generator's alpha of the frame padded to
    padded_hw (Hp, Wp, whole 64-px cells). -> alpha [Hp,Wp] float32 (into `out` when given): the
    bilinear upsample of coarse with the `patches` most uncertain cells re-predicted."""
    Hp, Wp = padded_hw
    low = np.ascontiguousarray(coarse, dtype=np.float32)
    up = cv2.resize(low, (Wp, Hp), dst=out, interpolation=cv2.INTER_LINEAR)  # [Hp,Wp]
    if patches <= 0:
        return up
    gh, gw = Hp // PATCH, Wp // PATCH
    idx = select_cells(cell_scores(low, gh, gw), patches)
    y0, x0 = (idx // gw) * PATCH, (idx % gw) * PATCH
    S = PATCH + 2 * context
    img = _to_nchw(gather_windows(frame, y0, x0, S, context))  # [K,3,S,S]
    base = gather_windows(up, y0, x0, S, context)[:, None]  # [K,1,S,S], before any paste
    cells = patch_net(img, base)  # [K,1,64,64]
    for k, (y, x) in enumerate(zip(y0.tolist(), x0.tolist())):
        up[y:y + PATCH, x:x + PATCH] = cells[k, 0]
    return up
