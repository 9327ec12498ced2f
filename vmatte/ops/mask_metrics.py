"""Person-mask metrics against binary human labels (no teacher in the loop).

Both masks are thresholded at 0.5. Boundary IoU is Cheng et al.'s (CVPR 2021), computed as their
reference code does: each mask's inner boundary band is the mask minus its erosion by a 3x3 square
d times, d = round(band_frac x the image diagonal) (so pixels within chessboard distance d of the
contour; the image edge counts as contour), and the score is the IoU of the two bands. It scores
the outline, where IoU on a large person hardly moves. False positives / negatives are fractions of
the image area (person added where there is none / person lost).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

MASK_METRICS = ("iou", "biou", "fp", "fn")


def boundary_band(mask: np.ndarray, d: int) -> np.ndarray:
    """Bool [H,W]: `mask` (bool [H,W]) minus its erosion by a 3x3 square d times, the image edge
    counting as background (Cheng et al.'s mask_to_boundary)."""
    padded = np.pad(mask.astype(np.uint8), 1)  # zeros around: the image edge is a contour
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=int(d))[1:-1, 1:-1]  # [H,W]
    return mask & ~eroded.astype(bool)


def binary_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def mask_metrics(pred: np.ndarray, gt: np.ndarray, band_frac: float = 0.02) -> dict[str, float]:
    """{'iou', 'biou', 'fp', 'fn'} of a predicted mask or matte [H,W] in 0..1 against a label [H,W]."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"pred {pred.shape} and label {gt.shape} must be [H,W] of one size; "
                         "resize the prediction to the label's size")
    if not band_frac > 0:
        raise ValueError(f"band_frac {band_frac}: expected > 0 (a fraction of the image diagonal)")
    p, g = pred > 0.5, gt > 0.5
    d = max(1, int(round(band_frac * math.hypot(*g.shape))))
    n = g.size
    return {"iou": binary_iou(p, g), "biou": binary_iou(boundary_band(p, d), boundary_band(g, d)),
            "fp": float((p & ~g).sum() / n), "fn": float((~p & g).sum() / n)}
