"""area_shrink: the model's low-resolution input and the temporal filter's guide."""
from __future__ import annotations

import cv2
import numpy as np

from vmatte.ops.resize import area_shrink


def test_area_shrink_is_a_box_mean_close_to_inter_area():
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8), (1280, 768), interpolation=cv2.INTER_CUBIC)
    out = area_shrink(img, 224, 128)
    assert out.shape == (128, 224, 3) and out.dtype == np.uint8
    ref = cv2.resize(img, (224, 128), interpolation=cv2.INTER_AREA).astype(np.float32)
    assert np.abs(out - ref).mean() < 3.0  # a busy texture; about 1.4 on photos
    flat = np.full((768, 1280, 3), 77, np.uint8)
    assert (area_shrink(flat, 224, 128) == 77).all()  # a mean: flat stays flat


def test_area_shrink_halves_exactly_by_2x2_means():
    img = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    out = area_shrink(img, 2, 2)
    want = img.reshape(2, 2, 2, 2).mean((1, 3))
    assert np.abs(out.astype(np.float64) - want).max() <= 0.5


def test_area_shrink_of_odd_sizes_goes_straight_to_inter_area():
    """An odd side is never 'halved' by a resize (that would interpolate, not average)."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (721, 1281, 3), dtype=np.uint8)
    out = area_shrink(img, 160, 90)
    ref = cv2.resize(img, (160, 90), interpolation=cv2.INTER_AREA)
    assert (out == ref).all()
