"""I420 (YUV 4:2:0, 8 bits) <-> RGB on the host with OpenCV, for the CPU file route.

swscale's accurate conversion (full chroma interpolation, accurate rounding) costs about 4 ms a
720p frame each way on one core, as much as a third of the whole matte; the same matrix applied
with cv2.transform after a bilinear chroma upsample costs about 1.5 ms, and differs from it by
0.3 levels on average (chroma edges by more: swscale sites the chroma samples otherwise). The
way back averages each 2x2 block's chroma. Pure functions; planes are uint8 [H*3/2, W] (Y, then
U and V of H/2 x W/2 each), H and W even."""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

# (Kr, Kb) of the YUV matrices by AVColorSpace number (ITU-T H.273); 10, BT.2020 constant
# luminance, is read as the ordinary BT.2020 matrix, as swscale reads it.
KR_KB = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 6: (0.299, 0.114), 7: (0.212, 0.087),
         9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}


@lru_cache(maxsize=16)
def _to_rgb(matrix: int, full_range: bool) -> np.ndarray:
    """[3,4] float32: RGB = M @ (Y, U, V) + offset, 0..255 scale."""
    kr, kb = KR_KB[matrix]
    kg = 1.0 - kr - kb
    sy, sc, y0 = (1.0, 1.0, 0.0) if full_range else (255 / 219, 255 / 224, 16.0)
    m = np.array([[sy, 0.0, 2 * (1 - kr) * sc],
                  [sy, -2 * kb * (1 - kb) / kg * sc, -2 * kr * (1 - kr) / kg * sc],
                  [sy, 2 * (1 - kb) * sc, 0.0]])
    return np.hstack([m, -(m @ np.array([y0, 128.0, 128.0]))[:, None]]).astype(np.float32)


@lru_cache(maxsize=16)
def _to_yuv(matrix: int) -> np.ndarray:
    """[3,4] float32: limited-range (Y, U, V) = M @ RGB + offset (the inverse of _to_rgb)."""
    inv = np.linalg.inv(_to_rgb(matrix, False)[:, :3].astype(np.float64))
    return np.hstack([inv, np.array([[16.0], [128.0], [128.0]])]).astype(np.float32)


MATRIX_NUMBER = {"bt601": 6, "bt709": 1}  # the GPU route's names of the HD/SD matrices


def planes_view(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views (Y [H,W], U [H/2,W/2], V [H/2,W/2]) of I420 planes [H*3/2, W]."""
    H, W = planes.shape[0] * 2 // 3, planes.shape[1]
    flat, n = planes.reshape(-1), H * W // 4  # U and V need not fill whole rows (H % 4 == 2)
    return planes[:H], flat[H * W:H * W + n].reshape(H // 2, W // 2), flat[H * W + n:H * W + 2 * n].reshape(H // 2, W // 2)


def i420_to_rgb(planes: np.ndarray, matrix: int, full_range: bool = False) -> np.ndarray:
    """I420 planes uint8 [H*3/2, W] -> RGB uint8 [H,W,3] with the YUV `matrix` (an AVColorSpace
    number in KR_KB), limited range unless full_range."""
    y, u, v = planes_view(planes)
    H, W = y.shape
    uu = cv2.resize(u, (W, H), interpolation=cv2.INTER_LINEAR)
    vv = cv2.resize(v, (W, H), interpolation=cv2.INTER_LINEAR)
    return i420_small_to_rgb(cv2.merge([y, uu, vv]), matrix, full_range)


def i420_small_to_rgb(yuv: np.ndarray, matrix: int, full_range: bool = False) -> np.ndarray:
    """Y, U, V already at one size, uint8 [h,w,3] (e.g. all three planes shrunk alike) -> RGB uint8."""
    return cv2.transform(yuv, _to_rgb(matrix, full_range))


def rgb_to_i420(rgb: np.ndarray, matrix: int, out: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 [H,W,3] (H, W even) -> limited-range I420 planes uint8 [H*3/2, W] (into `out`
    when given), chroma the mean of each 2x2 block."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb_to_i420 takes uint8 RGB [H,W,3]; got {rgb.dtype} {rgb.shape}")
    H, W = rgb.shape[:2]
    if H % 2 or W % 2:
        raise ValueError(f"I420 needs an even size; got {W}x{H}")
    if out is not None and (out.shape != (H * 3 // 2, W) or out.dtype != np.uint8 or not out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous uint8 array of {(H * 3 // 2, W)}; got {out.dtype} {out.shape}")
    yuv = cv2.transform(np.ascontiguousarray(rgb), _to_yuv(matrix))  # [H,W,3] uint8
    planes = np.empty((H * 3 // 2, W), np.uint8) if out is None else out
    y, u, v = planes_view(planes)
    cv2.extractChannel(yuv, 0, dst=y)
    half = cv2.resize(yuv, (W // 2, H // 2), interpolation=cv2.INTER_AREA)  # [H/2,W/2,3] (a 2-channel view would be copied first: 10x slower)
    cv2.extractChannel(half, 1, dst=u)
    cv2.extractChannel(half, 2, dst=v)
    return planes
