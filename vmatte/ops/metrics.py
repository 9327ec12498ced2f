"""Matting quality metrics as the Adobe Deep Image Matting (DIM) evaluation code defines them.

All functions take a predicted and a true alpha matte as float arrays in [0, 1] of shape [H, W]
and evaluate over the whole image (the DIM code sums over the trimap's unknown region; portrait
benchmarks without trimaps use every pixel). Conventions follow the DIM MATLAB code:

- MSE, MAE: means over pixels (``all_metrics`` reports them as is; tables show them x1e3).
- SAD: sum |p - g| / 1000 ("in thousands").
- Grad: gradient magnitudes from first-derivative-of-Gaussian filters (sigma 1.4, built like
  MATLAB ``gaussgradient``: 2-D kernel gauss(row) * dgauss(col), unit L2 norm, convolution with
  replicated borders); sum of squared differences of the magnitudes / 1000. Inputs are used as
  given in [0, 1] (the Python ports' ``alpha / 255``); the MATLAB ``mat2gray`` min-max step is
  available as ``minmax=True`` and agrees whenever both mattes span 0..1.
- Conn: thresholds 0.1 .. 1 in steps of 0.1; at each, the largest 4-connected component of
  (pred >= t) & (gt >= t); l_map = last threshold before a pixel left that component (1 if it
  never did); d = alpha - l_map; phi = 1 - d * (d >= 0.15); sum |phi_p - phi_g| / 1000.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "mse", "mae", "sad", "grad_error", "conn_error", "all_metrics",
    "gauss_gradient_kernels", "gauss_gradient",
]


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes and return float64 copies of pred and gt ([H, W] each)."""
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.ndim == 3 and pred.shape[-1] == 1:
        pred = pred[..., 0]
    if gt.ndim == 3 and gt.shape[-1] == 1:
        gt = gt[..., 0]
    if pred.ndim != 2 or pred.shape != gt.shape:
        raise ValueError(
            f"metrics got pred shape {pred.shape} and gt shape {gt.shape}; expected two [H, W] "
            "alpha arrays of the same shape; resize the prediction to the ground truth's size"
        )
    for name, a in (("pred", pred), ("gt", gt)):
        if a.dtype == np.uint8:
            raise TypeError(
                f"metrics got {name} as uint8; expected float alpha in [0, 1]; divide by 255 first"
            )
    return pred.astype(np.float64), gt.astype(np.float64)


def mse(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean squared error over all pixels."""
    p, g = _check_pair(pred, gt)
    return float(np.mean((p - g) ** 2))


def mae(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute error over all pixels."""
    p, g = _check_pair(pred, gt)
    return float(np.mean(np.abs(p - g)))


def sad(pred: np.ndarray, gt: np.ndarray) -> float:
    """Sum of absolute differences / 1000 (the DIM 'in thousands' convention)."""
    p, g = _check_pair(pred, gt)
    return float(np.sum(np.abs(p - g)) / 1000.0)


def _gauss(x: float, sigma: float) -> float:
    return math.exp(-x * x / (2.0 * sigma * sigma)) / (sigma * math.sqrt(2.0 * math.pi))


def _dgauss(x: float, sigma: float) -> float:
    return -x * _gauss(x, sigma) / (sigma * sigma)


def gauss_gradient_kernels(sigma: float = 1.4, epsilon: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """Kernels (hx, hy) of MATLAB ``gaussgradient``: hx[i, j] = g(i - h) * g'(j - h), unit L2 norm.

    The half size h = ceil(sigma * sqrt(-2 ln(sqrt(2 pi) sigma epsilon))) is 4 for sigma 1.4,
    so the kernels are 9x9. hy is hx transposed.
    """
    half = int(math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2.0 * math.pi) * sigma * epsilon))))
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    g = np.array([_gauss(u, sigma) for u in offsets])
    dg = np.array([_dgauss(u, sigma) for u in offsets])
    hx = np.outer(g, dg)  # rows: smoothing, columns: derivative
    hx /= math.sqrt(float(np.sum(hx * hx)))
    return hx, hx.T.copy()


def gauss_gradient(img: np.ndarray, sigma: float = 1.4) -> tuple[np.ndarray, np.ndarray]:
    """(gx, gy) of an [H, W] image: true convolution with replicated borders (imfilter 'conv','replicate')."""
    hx, hy = gauss_gradient_kernels(sigma)
    img = np.asarray(img, dtype=np.float64)
    # filter2D correlates: a convolution is a correlation with the kernel flipped both ways
    gx = cv2.filter2D(img, cv2.CV_64F, np.ascontiguousarray(hx[::-1, ::-1]), borderType=cv2.BORDER_REPLICATE)
    gy = cv2.filter2D(img, cv2.CV_64F, np.ascontiguousarray(hy[::-1, ::-1]), borderType=cv2.BORDER_REPLICATE)
    return gx, gy


def _minmax(a: np.ndarray) -> np.ndarray:
    """MATLAB mat2gray: scale to [0, 1] by the array's own min and max (constant arrays unchanged)."""
    lo, hi = float(a.min()), float(a.max())
    if hi == lo:
        return a
    return (a - lo) / (hi - lo)


def grad_error(pred: np.ndarray, gt: np.ndarray, sigma: float = 1.4, minmax: bool = False) -> float:
    """Gradient error: sum over pixels of (|grad pred| - |grad gt|)^2 / 1000."""
    p, g = _check_pair(pred, gt)
    if minmax:
        p, g = _minmax(p), _minmax(g)
    px, py = gauss_gradient(p, sigma)
    gx, gy = gauss_gradient(g, sigma)
    amp_p = np.sqrt(px * px + py * py)
    amp_g = np.sqrt(gx * gx + gy * gy)
    return float(np.sum((amp_p - amp_g) ** 2) / 1000.0)


def _largest_component(binary: np.ndarray) -> np.ndarray:
    """Largest 4-connected component of a boolean [H, W] map (all False if none).

    Ties go to the component met first in column-major order, as MATLAB's bwconncomp + max do.
    """
    n, labels = cv2.connectedComponents(binary.astype(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    n -= 1  # label 0 is the background
    if n == 0:
        return np.zeros_like(binary, dtype=bool)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]  # [n]
    biggest = np.flatnonzero(sizes == sizes.max()) + 1
    if biggest.size > 1:
        h = binary.shape[0]
        rows, cols = np.nonzero(binary)
        colmajor = cols.astype(np.int64) * h + rows
        first = np.full(n + 1, np.iinfo(np.int64).max)
        np.minimum.at(first, labels[rows, cols], colmajor)
        best = biggest[np.argmin(first[biggest])]
    else:
        best = biggest[0]
    return labels == best


def connectivity_levels(pred: np.ndarray, gt: np.ndarray, step: float = 0.1) -> np.ndarray:
    """l_map of the connectivity error: per pixel, the last threshold at which it was still in the
    largest common component (1 where it never left). [H, W] float64."""
    p, g = _check_pair(pred, gt)
    n = int(round(1.0 / step))
    # k * step rounded, so 0.3 means 0.3 (avoids arange's 0.30000000000000004)
    thresholds = np.round(np.arange(n + 1) * step, 10)
    l_map = np.full(p.shape, -1.0)
    for i in range(1, thresholds.size):
        omega = _largest_component((p >= thresholds[i]) & (g >= thresholds[i]))
        l_map[(l_map == -1.0) & ~omega] = thresholds[i - 1]
    l_map[l_map == -1.0] = 1.0
    return l_map


def conn_error(pred: np.ndarray, gt: np.ndarray, step: float = 0.1, theta: float = 0.15) -> float:
    """Connectivity error: sum |phi(pred) - phi(gt)| / 1000 with phi = 1 - d * (d >= theta), d = alpha - l_map."""
    p, g = _check_pair(pred, gt)
    l_map = connectivity_levels(p, g, step)
    d_p = p - l_map
    d_g = g - l_map
    phi_p = 1.0 - d_p * (d_p >= theta)
    phi_g = 1.0 - d_g * (d_g >= theta)
    return float(np.sum(np.abs(phi_p - phi_g)) / 1000.0)


def all_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """All five metrics of one image: {'mse', 'mae', 'sad', 'grad', 'conn'} (raw units, see module doc)."""
    p, g = _check_pair(pred, gt)
    return {
        "mse": mse(p, g),
        "mae": mae(p, g),
        "sad": sad(p, g),
        "grad": grad_error(p, g),
        "conn": conn_error(p, g),
    }
