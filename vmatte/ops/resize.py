"""Image resizing shared by the model's input and the temporal filter's guide."""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["area_shrink"]


def area_shrink(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Area-downscale to (w, h): exact 2x2 means while the image is twice the target or more and
    its sides are even, then INTER_AREA for the rest. OpenCV's INTER_AREA is slow at non-integer ratios (1280x768 -> 224x128:
    1.7 ms against 0.4 ms this way, one core); the result differs from one INTER_AREA by about 1.4
    levels on average (both box filters, of slightly different support), which leaves the held-out
    scores unchanged (docs/benchmarks.md)."""
    while img.shape[1] >= 2 * w and img.shape[0] >= 2 * h and img.shape[0] % 2 == 0 and img.shape[1] % 2 == 0:
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
