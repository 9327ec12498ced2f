"""Frame-size rules shared by the host pipeline, training and export."""
from __future__ import annotations

from typing import Sequence

PATCH = 64  # refiner cell size; frames are padded to whole cells
SEG_STRIDE = 16  # the generator's input sides are multiples of this


def lowres_size(h: int, w: int, long_side: int, multiple: int = SEG_STRIDE) -> tuple[int, int]:
    """Generator input size (h, w) for an h x w frame: long side scaled to `long_side` (never up),
    each side rounded to a multiple of `multiple`."""
    s = min(1.0, long_side / max(h, w))
    return max(multiple, round(h * s / multiple) * multiple), max(multiple, round(w * s / multiple) * multiple)


def padded_size(h: int, w: int) -> tuple[int, int]:
    """Full-resolution size padded up to whole refiner cells."""
    return -(-h // PATCH) * PATCH, -(-w // PATCH) * PATCH


def frame_sizes(h: int, w: int, long_side: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((Hp, Wp), (h_low, w_low)) for an h x w frame. The low-resolution input is a downscale of
    the *padded* frame, so the coarse alpha covers exactly what the refiner upsamples it onto
    (downscaling the unpadded frame would stretch the matte over the padding)."""
    Hp, Wp = padded_size(h, w)
    return (Hp, Wp), lowres_size(Hp, Wp, long_side)


# The refiner re-predicts border cells the generator saw at low resolution. When the generator
# already ran at 2/3 of the frame's size or more, it adds nothing measurable (dev set at 320 px:
# MSE 11.13e-3 with it, 10.98 without; docs/benchmarks.md, "CPU speed, eighth session") and costs as much as the
# generator, so the coarse alpha is only upsampled (bilinear, half-pixel centres, as the refiner).
REFINE_MIN_SCALE = 1.5


def needs_refiner(full_hw: Sequence[int], low_hw: Sequence[int]) -> bool:
    """Whether a padded frame of full_hw (..., Hp, Wp) is enough larger than the generator's input
    low_hw (..., h, w) for the refiner to run (shapes or sizes; the last two entries are used)."""
    return max(full_hw[-2] / low_hw[-2], full_hw[-1] / low_hw[-1]) > REFINE_MIN_SCALE
