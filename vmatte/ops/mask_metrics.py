"""Person-mask metrics against binary human labels (no teacher in the loop).

Both masks are thresholded at 0.5. Boundary IoU follows Cheng et al. (CVPR 2021): the IoU of the
two masks' inner boundary bands, each the mask's pixels within d of its contour (the image edge
counts as contour, as in their reference code), d = band_frac x the image diagonal; it scores the
outline, where IoU on a large person hardly moves. False positives / negatives are fractions of
the image area (person added where there is none / person lost).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

MASK_METRICS = ("iou", "biou", "fp", "fn")


def boundary_band(mask: np.ndarray, d: float) -> np.ndarray:
    """Bool [H,W]: pixels of `mask` (bool [H,W]) within distance d of its contour or the image edge."""
    padded = np.pad(mask.astype(np.uint8), 1)  # zeros around: the image edge is a contour
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]  # [H,W]
    return mask & (dist <= d)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
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
    d = max(1.0, band_frac * math.hypot(*g.shape))
    n = g.size
    return {"iou": _iou(p, g), "biou": _iou(boundary_band(p, d), boundary_band(g, d)),
            "fp": float((p & ~g).sum() / n), "fn": float((~p & g).sum() / n)}
