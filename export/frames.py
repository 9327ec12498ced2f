"""Calibration frames for int8 quantisation: RGB uint8 frames sampled evenly from photos, folders
of photos and video files, so a release calibrates on real pictures of people, not noise."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vmatte.errors import VmatteError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def _natural(p: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def _evenly(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n) (all of them when k >= n)."""
    if k >= n:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, k).round()})


def _sources(paths: Sequence[str | Path], skip: Callable[[Path], bool] | None) -> list[tuple[str, Path, list[Path] | None]]:
    """(label, path, images) per source: a folder (its images), a video (images None); loose image
    files together make one source."""
    out, loose = [], []
    for p in map(Path, paths):
        if p.is_dir():
            imgs = sorted((f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS and not (skip and skip(f))), key=_natural)
            if not imgs:
                raise VmatteError(f"calibration folder {p} holds no usable images (jpg/png/...)")
            out.append((str(p), p, imgs))
        elif p.is_file() and p.suffix.lower() in IMAGE_EXTS:
            if not (skip and skip(p)):
                loose.append(p)
        elif p.is_file():
            out.append((str(p), p, None))
        else:
            raise VmatteError(f"calibration source {p} not found; give folders of photos, photos or video files")
    if loose:
        out.append((f"{len(loose)} image files", loose[0].parent, loose))
    if not out:
        raise VmatteError("no calibration frames: every given photo was excluded; give other photos or videos")
    return out


def _video_frames(path: Path, k: int) -> tuple[list[np.ndarray], int]:
    from vmatte.io.sources import VideoSource

    with VideoSource(path) as src:
        total = src.frames
    if not total:  # no count in the container: count by decoding
        with VideoSource(path) as src:
            total = sum(1 for _ in src)
    keep = set(_evenly(total, k))
    with VideoSource(path) as src:  # keep only the chosen frames (a whole clip may not fit in memory)
        frames = [f.rgb for f in src if f.index in keep]
    return frames, total


def read_frames(paths: Sequence[str | Path], count: int = 100, skip: Callable[[Path], bool] | None = None) -> tuple[list[np.ndarray], str]:
    """About `count` RGB frames shared equally by the sources (folders, videos; loose photos count
    as one source), each sampled evenly; `skip(path)` drops photos (e.g. held-out ones). Returns the
    frames and a one-line description of where they came from (recorded in the int8 files)."""
    from vmatte.io.sources import read_image

    if count < 1:
        raise VmatteError(f"calibration frame count {count}; expected at least 1")
    sources = _sources(paths, skip)
    frames, parts = [], []
    for i, (label, path, imgs) in enumerate(sources):
        k = count // len(sources) + (i < count % len(sources))
        if k == 0:
            continue
        if imgs is None:
            got, total = _video_frames(path, k)
            parts.append(f"{label}: {len(got)} of {total} frames")
        else:
            got, total = [read_image(imgs[j]) for j in _evenly(len(imgs), k)], len(imgs)
            parts.append(f"{label}: {len(got)} of {total} photos")
        frames += got
    return frames, "; ".join(parts)
