"""Compositing on numpy arrays: replace, blur or remove a background given an alpha matte.

Every function is pure, works on one HxW frame, stays in uint8/float32 (never float64) and leans
on OpenCV for the heavy per-pixel work, so a 720p frame takes a few milliseconds.
Conventions: images are RGB uint8 [H,W,3]; alpha is float32 [H,W] in [0,1].
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

__all__ = [
    "to_uint8",
    "to_float",
    "alpha_to_uint8",
    "composite",
    "composite_color",
    "blur_image",
    "blur_backdrop",
    "blur_background",
    "estimate_foreground",
    "premultiply",
    "pack_rgba",
    "cover_resize",
    "pad_to_even",
]


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8 [..] -> float32 in [0,1]."""
    return img.astype(np.float32) * np.float32(1.0 / 255.0)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float32 in [0,1] -> uint8 with rounding and clipping."""
    return cv2.convertScaleAbs(np.clip(x, 0.0, 1.0).astype(np.float32, copy=False), alpha=255.0)


def alpha_to_uint8(alpha: np.ndarray) -> np.ndarray:
    """float32 alpha [H,W] in [0,1] -> uint8 [H,W]."""
    _check_alpha(alpha)
    return cv2.convertScaleAbs(np.clip(alpha, 0.0, 1.0), alpha=255.0)


def _check_alpha(alpha: np.ndarray, shape: Sequence[int] | None = None) -> None:
    if alpha.ndim != 2:
        raise ValueError(f"alpha must be [H,W], got shape {alpha.shape}; squeeze the channel axis first")
    if shape is not None and alpha.shape != tuple(shape[:2]):
        raise ValueError(f"alpha shape {alpha.shape} does not match image {tuple(shape[:2])}; resize the matte")


def _check_rgb(img: np.ndarray) -> None:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"compositing takes uint8 RGB images [H,W,3]; got {img.dtype} {img.shape} "
                         "(convert with np.asarray(img, np.uint8)[..., :3])")


def _alpha3(alpha: np.ndarray) -> np.ndarray:
    """alpha float [H,W] -> uint8 [H,W,3] in 0..255, rounded; above 1 saturates to 255, below 0,
    NaN and +-inf to 0."""
    a = np.asarray(alpha, np.float32)
    if not np.isfinite(cv2.sumElems(a)[0]):  # NaN or +-inf (a sum in float64: 0.05 ms at 720p), which
        # OpenCV versions saturate differently (5.0: to 0; 5.1: NaN and +inf to 255)
        a = np.where(np.isfinite(a), a, np.float32(0.0))
    a8 = cv2.multiply(a, 255.0, dtype=cv2.CV_8U)
    return cv2.merge([a8, a8, a8])


def composite(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """fg*alpha + bg*(1-alpha) for uint8 RGB images [H,W,3] -> uint8 [H,W,3].

    Done in 8 bits (alpha rounded to 1/255, each product rounded once: at most 1.5 levels from
    the float blend), which is 2.5x cheaper than cv2.blendLinear's float blend at 720p (1.0 vs
    2.6 ms, one core); alpha 1 gives fg exactly and alpha 0 bg exactly. Finite alpha above 1
    gives fg; below 0, NaN and +-inf give bg."""
    _check_alpha(alpha, fg.shape)
    if bg.shape != fg.shape:
        raise ValueError(f"background shape {bg.shape} != frame shape {fg.shape}; use cover_resize first")
    _check_rgb(fg)
    _check_rgb(bg)
    a3 = _alpha3(alpha)
    return cv2.add(cv2.multiply(np.ascontiguousarray(fg), a3, scale=1 / 255),
                   cv2.multiply(np.ascontiguousarray(bg), cv2.bitwise_not(a3), scale=1 / 255))


def composite_color(fg: np.ndarray, alpha: np.ndarray, color: Sequence[int]) -> np.ndarray:
    """Composite over a flat RGB colour -> uint8 [H,W,3] (as composite(), without building the
    background image: 1.9 vs 4.2 ms at 720p)."""
    _check_alpha(alpha, fg.shape)
    _check_rgb(fg)
    a3 = _alpha3(alpha)
    c = np.asarray(color).reshape(-1)
    if c.size not in (1, 3) or not np.all((c >= 0) & (c <= 255)):
        raise ValueError(f"colour {color!r}: expected (R, G, B) or one grey level, each 0..255")
    scalar = tuple(float(v) / 255 for v in np.broadcast_to(c.astype(np.uint8), (3,))) + (0.0,)
    return cv2.add(cv2.multiply(np.ascontiguousarray(fg), a3, scale=1 / 255), cv2.multiply(cv2.bitwise_not(a3), scalar))


def _reduced(sigma: float, target: float = 3.0) -> float:
    """Scale factor that brings a Gaussian of `sigma` down to about `target` pixels."""
    return float(min(1.0, target / max(sigma, 1e-6)))


def blur_image(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of strength `sigma` (pixels at full resolution), done at reduced resolution.

    Blurring at 1/s of the size with sigma/s then upsampling is visually the same for large sigma
    and many times cheaper.
    """
    if sigma <= 0:
        return img.copy()
    h, w = img.shape[:2]
    s = _reduced(sigma)
    if s < 1.0:
        sw, sh = max(1, round(w * s)), max(1, round(h * s))
        small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma * s)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(img, (0, 0), sigma)


def blur_backdrop(rgb: np.ndarray, alpha: np.ndarray | None, sigma: float = 16.0) -> np.ndarray:
    """The blurred background for `rgb` -> uint8 [H,W,3], blurred as blur(I*(1-a)) / blur(1-a), so
    the person's colours do not bleed into it as a halo.

    The blur runs at 1/k resolution with an integer k (about sigma/3, so OpenCV's fast integer
    INTER_AREA path shrinks it) and is converted to uint8 before it is upsampled. `alpha` only
    steers the weighting, so a neighbouring frame's matte will do (the live loop computes the
    backdrop while the frame is still being matted); None (or a matte of another size) blurs plainly.
    """
    if sigma <= 0:
        return rgb.copy()
    h, w = rgb.shape[:2]
    k = int(min(8, max(1, round(sigma / 3))))
    sw, sh = max(1, w // k), max(1, h // k)
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)  # [h,w,3]
    ks = sigma * (sw / w)
    plain = cv2.GaussianBlur(small, (0, 0), ks)
    if alpha is None or alpha.shape != (h, w):
        blurred = plain
    else:
        wb = cv2.resize(np.asarray(alpha, np.float32), (sw, sh), interpolation=cv2.INTER_AREA)
        wb = np.clip(np.subtract(np.float32(1.0), wb, out=wb), 0.0, 1.0, out=wb)  # [h,w] background weight
        num = cv2.GaussianBlur(small * wb[..., None], (0, 0), ks)
        den = cv2.GaussianBlur(wb, (0, 0), ks)[..., None]
        # Where there is almost no background nearby, fall back to the plain blur.
        blurred = np.where(den > 1e-2, num / np.maximum(den, np.float32(1e-6)), plain)
    return cv2.resize(cv2.convertScaleAbs(blurred), (w, h), interpolation=cv2.INTER_LINEAR)  # uint8 [H,W,3]


def blur_background(rgb: np.ndarray, alpha: np.ndarray, sigma: float = 16.0) -> np.ndarray:
    """Blur the background behind the person; the person stays sharp -> uint8 [H,W,3]."""
    _check_alpha(alpha, rgb.shape)
    if sigma <= 0:
        return rgb.copy()
    return composite(rgb, alpha, blur_backdrop(rgb, alpha, sigma))


def estimate_foreground(rgb: np.ndarray, alpha: np.ndarray, radius: int | None = None) -> np.ndarray:
    """Cheap foreground colour estimate F (uint8 [H,W,3]) so F*a + B*(1-a) = I.

    One blur-fusion step (Germer et al. 2021, "Fast Multi-Level Foreground Estimation"): local
    means of F and B weighted by alpha, then a per-pixel correction towards the image. Box filters
    keep it O(1) per pixel. The default radius scales with the frame (about 1% of the long side).
    """
    _check_alpha(alpha, rgb.shape)
    h, w = rgb.shape[:2]
    if radius is None:
        radius = max(3, round(max(h, w) / 100))
    # The local means are smooth: compute them at reduced size (radius about 3 px there), upsample.
    s = min(1.0, 3.0 / radius)
    sw, sh = max(1, round(w * s)), max(1, round(h * s))
    r = max(1, round(radius * s))
    k = (2 * r + 1, 2 * r + 1)
    a = np.clip(alpha, 0, 1).astype(np.float32, copy=False)  # [H,W]
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)  # [h,w,3]
    sa = cv2.resize(a, (sw, sh), interpolation=cv2.INTER_AREA)[..., None]  # [h,w,1]
    sb = 1.0 - sa
    f_mean = cv2.blur(small * sa, k) / (cv2.blur(sa, k)[..., None] + 1e-5)  # local foreground colour
    b_mean = cv2.blur(small * sb, k) / (cv2.blur(sb, k)[..., None] + 1e-5)  # local background colour
    if s < 1.0:
        f_mean = cv2.resize(f_mean, (w, h), interpolation=cv2.INTER_LINEAR)
        b_mean = cv2.resize(b_mean, (w, h), interpolation=cv2.INTER_LINEAR)
    a3 = a[..., None]
    # F = F_mean + a * (I - a*F_mean - (1-a)*B_mean), all in 0..255 float32.
    f = f_mean + a3 * (rgb.astype(np.float32) - a3 * f_mean - (1.0 - a3) * b_mean)
    return cv2.convertScaleAbs(f)


def premultiply(fg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """fg*alpha (over black) -> uint8 [H,W,3]: a foreground that is right without its matte, where
    the straight estimate's colours under alpha 0 (blocky local means) would show."""
    return composite_color(fg, alpha, (0, 0, 0))


def pack_rgba(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGB uint8 [H,W,3] + alpha float32 [H,W] -> RGBA uint8 [H,W,4]."""
    _check_alpha(alpha, rgb.shape)
    return np.dstack([rgb, alpha_to_uint8(alpha)])


def cover_resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale to cover (height, width) keeping the aspect ratio, then centre-crop -> [height,width,C]."""
    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return img
    s = max(height / h, width / w)
    nh, nw = max(height, round(h * s)), max(width, round(w * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    big = cv2.resize(img, (nw, nh), interpolation=interp)
    y, x = (nh - height) // 2, (nw - width) // 2
    return np.ascontiguousarray(big[y:y + height, x:x + width])


def pad_to_even(img: np.ndarray) -> np.ndarray:
    """Replicate the last row/column when a side is odd (yuv420p needs even sizes)."""
    h, w = img.shape[:2]
    ph, pw = h % 2, w % 2
    if not (ph or pw):
        return img
    return cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
