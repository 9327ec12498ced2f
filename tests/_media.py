"""Tiny synthetic media for the io/process tests (made with PyAV in a tmp folder)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def frame_pattern(i: int, h: int, w: int) -> np.ndarray:
    """A frame whose index can be read back: mean brightness of the top-left block encodes i."""
    img = np.zeros((h, w, 3), np.uint8)
    img[...] = (40, 90, 160)
    img[: h // 2, : w // 2] = min(255, 20 * i + 10)  # index marker
    return img


def make_video(path: Path, *, n: int = 10, w: int = 64, h: int = 48, rate: int = 10, audio: bool = False,
               rotation: int | None = None, pts: list[int] | None = None, codec: str = "libx264",
               pix_fmt: str = "yuv420p") -> Path:
    """Write a tiny H.264 video (optionally with a 440 Hz sine audio track and a display rotation);
    pix_fmt yuv444p allows odd sizes."""
    import av

    with av.open(str(path), "w") as c:
        vs = c.add_stream(codec, rate=rate)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        if pts is not None:
            from fractions import Fraction

            vs.time_base = vs.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            vs.set_display_rotation(rotation)
        ast = _add_audio(c) if audio else None
        for i in range(n):
            f = av.VideoFrame.from_ndarray(frame_pattern(i, h, w), format="rgb24")
            f.pts = pts[i] if pts is not None else i
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        if audio:
            t = np.arange(int(16000 * n / rate)) / 16000
            _mux_audio(c, ast, 0.3 * np.sin(2 * np.pi * 440 * t))
    return path


def _add_audio(c):
    """A mono 16 kHz AAC stream (added before any packet is muxed)."""
    ast = c.add_stream("aac", rate=16000)
    ast.layout = "mono"
    return ast


def _mux_audio(c, ast, samples: np.ndarray) -> None:
    """Encode mono float samples [N] into `ast` and flush it."""
    import av

    af = av.AudioFrame.from_ndarray(samples.astype(np.float32)[None], format="flt", layout="mono")
    af.sample_rate, af.pts = 16000, 0
    for p in list(ast.encode(af)) + list(ast.encode(None)):
        c.mux(p)


def make_audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as c:
        _mux_audio(c, _add_audio(c), np.zeros(16000, np.float32))
    return path


def read_video(path: Path):
    """All frames (RGB), their pts, stream info and the audio codec (or None)."""
    import av

    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        frames = [(f.to_ndarray(format="rgb24"), f.pts, f.rotation) for f in c.decode(vs)]
        audio = c.streams.audio[0].codec_context.name if c.streams.audio else None
        return frames, vs.codec_context.name, audio


class EllipseMatter:
    """A fake matter: alpha 1 inside a centred ellipse, 0 outside; records the frames it saw."""

    def __init__(self):
        self.seen: list[int] = []

    def matte(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self.seen.append(int(rgb[0, 0, 0]))
        return (((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2 <= 1).astype(np.float32)

    def matte_batch(self, frames):
        return [self.matte(f) for f in frames]


def fake_matter(matte, segment=None):
    """A stand-in class for vmatte.api.Matter in CLI tests: Matter(**kw).matte(rgb) = matte(rgb),
    .segment(rgb) = segment(rgb) (default: matte), backend 'fake'."""

    class FakeMatter:
        backend_name = "fake"

        def __init__(self, **kw):
            pass

        def matte(self, rgb):
            return matte(rgb)

        def segment(self, rgb):
            return (segment or matte)(rgb)

        def close(self):
            pass

    return FakeMatter
