"""A sample clip made from a real portrait (a slow virtual camera over a still, with a tone) so a
fresh install can run `vmatte process` with no data of its own and see what it does on people.

The photo is NASA's portrait of astronaut Eileen Collins (public domain), as shipped in
scikit-image's sample data (`skimage.data.astronaut`); see vmatte/data/README.md."""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .errors import VmatteError

PHOTO = Path(__file__).resolve().parent / "data" / "astronaut.jpg"
MAX_SECONDS = 600.0
ZOOM = 0.18  # the camera closes in by this share of the widest window, then pulls back


def load_photo() -> np.ndarray:
    """The shipped portrait as uint8 RGB."""
    img = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR) if PHOTO.is_file() else None
    if img is None:
        raise VmatteError(f"the sample photo {PHOTO} is missing or unreadable; reinstall vmatte (pip install --force-reinstall vmatte)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def camera(u: float, out_w: int, out_h: int, img_w: int, img_h: int) -> tuple[float, float, float]:
    """Virtual camera at phase u in [0, 1]: (x0, y0, k), the window's top-left corner in the photo
    and photo pixels per output pixel. The widest window of the output's aspect that fits the photo
    zooms in by ZOOM and back out while panning slightly; its top stays on the photo's top so the
    head keeps its place in the frame."""
    ww = min(float(img_w), img_h * out_w / out_h)  # the widest window's width
    ease = 0.5 - 0.5 * math.cos(2 * math.pi * u)  # 0 -> 1 -> 0, smooth at both ends
    cw = ww * (1.0 - ZOOM * ease)
    cx = img_w * (0.5 - 0.05 * ease + 0.03 * math.sin(2 * math.pi * u))  # towards the face, and a sway
    x0 = min(max(cx - cw / 2, 0.0), img_w - cw)
    return x0, 0.0, cw / out_w


def render_frame(photo: np.ndarray, u: float, out_w: int, out_h: int) -> np.ndarray:
    """The photo as the virtual camera sees it at phase u, out_h x out_w uint8 RGB (sub-pixel
    motion: an affine warp, so the slow pan does not jitter)."""
    h, w = photo.shape[:2]
    x0, y0, k = camera(u, out_w, out_h, w, h)
    # Output pixel centres map to photo coordinates x = x0 + k * (x' + 0.5) - 0.5.
    m = np.array([[k, 0.0, x0 + 0.5 * k - 0.5], [0.0, k, y0 + 0.5 * k - 0.5]], np.float64)
    return cv2.warpAffine(photo, m, (out_w, out_h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def make_sample(path: str | Path, seconds: float = 4.0, size: tuple[int, int] = (640, 360), fps: int = 25, overwrite: bool = False) -> Path:
    """Write an H.264 + AAC sample clip of a real person to `path` (atomically)."""
    import av

    path = Path(path)
    if path.exists() and not overwrite:
        raise VmatteError(f"{path} exists; pass --overwrite to replace it or choose another name")
    if path.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        raise VmatteError(f"sample must be .mp4, .mov or .mkv, got {path.name!r}")
    if not path.parent.is_dir():
        raise VmatteError(f"folder {path.parent} does not exist; create it or write the sample elsewhere")
    if not (0 < seconds <= MAX_SECONDS) or round(seconds * fps) < 1:
        raise VmatteError(f"--seconds {seconds:g} is out of range; give a length from {1 / fps:g} to {MAX_SECONDS:g} seconds")
    w, h = size
    photo = load_photo()
    k_max = max(photo.shape[1] / w, photo.shape[0] / h)
    if k_max > 1.5:  # shrink the photo once so the per-frame warp does not alias
        s = 1.0 / k_max
        photo = cv2.resize(photo, (max(1, round(photo.shape[1] * s)), max(1, round(photo.shape[0] * s))), interpolation=cv2.INTER_AREA)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        with av.open(str(tmp), "w") as out:
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.options = {"crf": "20", "preset": "veryfast"}
            sr = 48000
            aus = out.add_stream("aac", rate=sr)
            n = round(seconds * fps)
            for i in range(n):
                frame = render_frame(photo, i / n, w, h)
                for p in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    out.mux(p)
            samples_per = 1024
            t = np.arange(int(seconds * sr), dtype=np.float32) / sr
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for k in range(0, len(tone), samples_per):
                chunk = tone[k : k + samples_per]
                af = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                af.sample_rate = sr
                af.pts = k
                af.time_base = Fraction(1, sr)
                for p in aus.encode(af):
                    out.mux(p)
            for s in (vs, aus):
                for p in s.encode(None):
                    out.mux(p)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
