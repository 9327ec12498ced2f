"""`--background` values: blur[:SIGMA], a colour, an image, a (looped) video, or transparent.

parse_background(spec) returns an object with .render(rgb, alpha, index) -> uint8 [H,W,3]
(or RGBA [H,W,4] for transparent, .alpha is True then) and .close().
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import VmatteError
from .ops import compose

COLORS = {
    "green": (0, 255, 0), "blue": (0, 0, 255), "red": (255, 0, 0), "white": (255, 255, 255),
    "black": (0, 0, 0), "grey": (128, 128, 128), "gray": (128, 128, 128),
}
DEFAULT_SIGMA = 16.0


class Background:
    """Base class: composite a frame over this background."""

    alpha = False

    def render(self, rgb: np.ndarray, alpha: np.ndarray, index: int = 0) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BlurBackground(Background):
    def __init__(self, sigma: float = DEFAULT_SIGMA):
        self.sigma = float(sigma)

    def render(self, rgb, alpha, index=0):
        return compose.blur_background(rgb, alpha, self.sigma)

    def __repr__(self):
        return f"BlurBackground(sigma={self.sigma})"


class ColorBackground(Background):
    def __init__(self, color):
        self.color = tuple(int(c) for c in color)

    def render(self, rgb, alpha, index=0):
        return compose.composite_color(rgb, alpha, self.color)

    def __repr__(self):
        return f"ColorBackground({self.color})"


class TransparentBackground(Background):
    """No background: RGBA with the estimated foreground colour."""

    alpha = True

    def render(self, rgb, alpha, index=0):
        return compose.pack_rgba(compose.estimate_foreground(rgb, alpha), alpha)


class ImageBackground(Background):
    def __init__(self, path: Path):
        from .io.sources import read_image

        self.path = path
        self.image = read_image(path)
        self._cache: dict = {}

    def _fit(self, h: int, w: int) -> np.ndarray:
        if (h, w) not in self._cache:
            self._cache = {(h, w): compose.cover_resize(self.image, h, w)}
        return self._cache[(h, w)]

    def render(self, rgb, alpha, index=0):
        return compose.composite(rgb, alpha, self._fit(*rgb.shape[:2]))


class VideoBackground(Background):
    """A video looped for as long as needed, each frame resized/cropped to cover the output."""

    def __init__(self, path: Path):
        from .io.sources import VideoSource

        self.path = path
        self._src_cls = VideoSource
        self._src = None
        self._it = None
        self._open()

    def _open(self) -> None:
        self.close()
        self._src = self._src_cls(self.path).__enter__()
        self._it = iter(self._src)

    def _next(self) -> np.ndarray:
        try:
            return next(self._it).rgb
        except StopIteration:
            self._open()  # loop
            try:
                return next(self._it).rgb
            except StopIteration:
                raise VmatteError(f"background video {self.path} has no frames; use another file") from None

    def render(self, rgb, alpha, index=0):
        h, w = rgb.shape[:2]
        return compose.composite(rgb, alpha, compose.cover_resize(self._next(), h, w))

    def close(self) -> None:
        if self._src is not None:
            self._src.close()
            self._src = None


def parse_color(spec: str) -> tuple[int, int, int] | None:
    """'green', '#00ff00', '#0f0' or '0,255,0' -> (r,g,b); None if it is not a colour."""
    s = spec.strip().lower()
    if s in COLORS:
        return COLORS[s]
    m = re.fullmatch(r"#?([0-9a-f]{6}|[0-9a-f]{3})", s)
    if m and (s.startswith("#") or not Path(spec).exists()):
        h = m.group(1)
        if len(h) == 3:
            h = "".join(c * 2 for c in h)
        return tuple(int(h[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    m = re.fullmatch(r"(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})", s)
    if m:
        rgb = tuple(int(v) for v in m.groups())
        if max(rgb) > 255:
            raise VmatteError(f"colour {spec!r} has a value above 255; use r,g,b each 0..255")
        return rgb  # type: ignore[return-value]
    return None


def parse_background(spec: "str | Background | None") -> Background:
    """Turn a --background value into a Background (see module docstring)."""
    from .io.sources import IMAGE_EXTS, source_kind

    if isinstance(spec, Background):
        return spec
    if spec is None or str(spec).strip() == "":
        return BlurBackground()
    s = str(spec).strip()
    low = s.lower()
    if low == "blur" or low.startswith("blur:"):
        if low == "blur":
            return BlurBackground()
        try:
            sigma = float(low.split(":", 1)[1])
        except ValueError:
            raise VmatteError(f"bad blur strength in {s!r}; use blur or blur:SIGMA, e.g. blur:20") from None
        if not 0 <= sigma <= 500:
            raise VmatteError(f"blur strength {sigma} out of range; use 0..500 (default {DEFAULT_SIGMA:g})")
        return BlurBackground(sigma)
    if low in ("transparent", "none", "alpha"):
        return TransparentBackground()
    color = parse_color(s)
    if color is not None:
        return ColorBackground(color)
    p = Path(s).expanduser()
    if not p.exists():
        raise VmatteError(f"background {s!r} is not blur[:SIGMA], transparent, a colour (green, #00ff00, 0,255,0) "
                          f"or an existing image/video file; check the spelling or the path")
    if p.is_dir():
        raise VmatteError(f"background {s!r} is a folder; give an image or video file")
    try:
        if p.suffix.lower() in IMAGE_EXTS:
            return ImageBackground(p)
        assert source_kind(p) == "video"
        return VideoBackground(p)
    except VmatteError as e:
        raise VmatteError(f"background: {e}") from None
