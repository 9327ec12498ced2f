"""A synthetic sample clip (a figure moving over a textured room, with a tone) so a fresh install
can run `vmatte process` with no data of its own."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .errors import VmatteError


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A 'room': wall gradient, a shelf of coloured books, a window."""
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    wall = (np.array([190, 175, 150], np.float32) * (0.8 + 0.2 * y)).repeat(w, 1)
    img = wall.astype(np.uint8)
    x0 = w // 20
    for row in range(3):
        yb = int(h * (0.15 + 0.22 * row))
        x = x0
        while x < w * 0.45:
            bw = int(rng.integers(6, 16))
            cv2.rectangle(img, (x, yb), (x + bw, yb + int(h * 0.17)), tuple(int(c) for c in rng.integers(30, 230, 3)), -1)
            x += bw + 1
        cv2.rectangle(img, (x0 - 4, yb + int(h * 0.17)), (int(w * 0.46), yb + int(h * 0.19)), (90, 60, 40), -1)
    cv2.rectangle(img, (int(w * 0.68), int(h * 0.12)), (int(w * 0.95), int(h * 0.55)), (225, 235, 245), -1)
    return cv2.GaussianBlur(img, (0, 0), 0.8)


def _figure(img: np.ndarray, t: float) -> None:
    """Draw a head-and-shoulders figure swaying with time t (in place)."""
    h, w = img.shape[:2]
    cx = int(w * (0.5 + 0.08 * np.sin(2 * np.pi * t / 3.0)))
    cv2.ellipse(img, (cx, int(h * 1.02)), (int(w * 0.22), int(h * 0.42)), 0, 180, 360, (40, 70, 140), -1)  # torso
    cv2.rectangle(img, (cx - int(w * 0.035), int(h * 0.5)), (cx + int(w * 0.035), int(h * 0.64)), (190, 150, 125), -1)  # neck
    cv2.ellipse(img, (cx, int(h * 0.38)), (int(w * 0.075), int(h * 0.17)), 0, 0, 360, (205, 165, 140), -1)  # face
    cv2.ellipse(img, (cx, int(h * 0.27)), (int(w * 0.08), int(h * 0.09)), 0, 180, 360, (50, 35, 25), -1)  # hair


def make_sample(path: str | Path, seconds: float = 4.0, size: tuple[int, int] = (640, 360), fps: int = 25, overwrite: bool = False) -> Path:
    """Write an H.264 + AAC sample clip to `path` (atomically)."""
    import av

    path = Path(path)
    if path.exists() and not overwrite:
        raise VmatteError(f"{path} exists; pass --overwrite to replace it or choose another name")
    if path.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        raise VmatteError(f"sample must be .mp4, .mov or .mkv, got {path.name!r}")
    w, h = size
    rng = np.random.default_rng(0)
    bg = _background(h, w, rng)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        with av.open(str(tmp), "w") as out:
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.options = {"crf": "20", "preset": "veryfast"}
            sr = 48000
            aus = out.add_stream("aac", rate=sr)
            n = int(seconds * fps)
            for i in range(n):
                frame = bg.copy()
                _figure(frame, i / fps)
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
