"""Evaluate a matting function on a folder of images with true alpha mattes (no torch needed).

Layout: ROOT/image/* (or images/) and ROOT/alpha/* (or alphas/), paired by file stem.
Metrics per image come from `vmatte.ops.metrics.all_metrics`; `EvalResult.mean` averages them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from .errors import VmatteError
from .ops.mask_metrics import MASK_METRICS, mask_metrics
from .ops.metrics import all_metrics

log = logging.getLogger(__name__)

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
METRICS = ("mse", "mae", "sad", "grad", "conn")


class EvalDataError(VmatteError, ValueError):
    """The evaluation folder is missing, empty or holds unreadable files."""


@dataclass
class EvalResult:
    """Per-image metrics (`per_image[i]` = {'name', 'mse', ...}), their means, and seconds spent predicting."""

    per_image: list[dict] = field(default_factory=list)
    mean: dict[str, float] = field(default_factory=dict)
    predict_seconds: float = 0.0

    @property
    def count(self) -> int:
        return len(self.per_image)

    def to_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean, "predict_seconds": self.predict_seconds,
                "per_image": self.per_image}


def _subdir(root: Path, names: tuple[str, ...]) -> Path | None:
    for n in names:
        if (root / n).is_dir():
            return root / n
    return None


def _files_by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_EXTS}


def find_pairs(root: str | Path, limit: int | None = None) -> list[tuple[str, Path, Path]]:
    """(stem, image path, alpha path) for stems present in both ROOT/image(s) and ROOT/alpha(s), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise EvalDataError(f"evaluation folder {root} does not exist; expected a folder with image/ and alpha/ subfolders")
    img_dir = _subdir(root, ("image", "images"))
    alpha_dir = _subdir(root, ("alpha", "alphas", "mask", "masks"))
    if img_dir is None or alpha_dir is None:
        raise EvalDataError(
            f"{root} lacks {'image/' if img_dir is None else 'alpha/'}; expected ROOT/image/* and ROOT/alpha/* "
            "(or images/, alphas/) with matching file names"
        )
    images, alphas = _files_by_stem(img_dir), _files_by_stem(alpha_dir)
    stems = sorted(set(images) & set(alphas))
    unmatched = len(set(images) ^ set(alphas))
    if unmatched:
        log.warning("%d files in %s have no partner and are skipped", unmatched, root)
    if not stems:
        raise EvalDataError(
            f"{root} has {len(images)} images and {len(alphas)} alphas but no matching names; "
            "expected image/NAME.jpg with alpha/NAME.png"
        )
    if limit is not None:
        if limit < 1:
            raise EvalDataError(f"--limit {limit}; expected a positive number of images")
        stems = stems[:limit]
    return [(s, images[s], alphas[s]) for s in stems]


def read_rgb(path: str | Path) -> np.ndarray:
    """Image file -> HxWx3 uint8 RGB."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise EvalDataError(f"cannot read image {path}; expected a PNG/JPEG file")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_alpha(path: str | Path) -> np.ndarray:
    """Alpha file -> HxW float32 in [0, 1]: grey as is, RGB converted to grey, RGBA's alpha channel."""
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise EvalDataError(f"cannot read alpha {path}; expected a greyscale PNG")
    if a.ndim == 3:
        a = a[..., 3] if a.shape[2] == 4 else cv2.cvtColor(a[..., :3], cv2.COLOR_BGR2GRAY)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    return np.clip(a.astype(np.float32), 0.0, 1.0)


def _as_alpha(pred, shape: tuple[int, int], name: str) -> np.ndarray:
    pred = np.asarray(pred)
    if pred.ndim == 3 and pred.shape[-1] == 1:
        pred = pred[..., 0]
    if pred.shape != shape:
        raise ValueError(f"predict returned shape {pred.shape} for {name}; expected the image's {shape}")
    if pred.dtype == np.uint8:
        return pred.astype(np.float32) / 255.0
    return np.clip(pred.astype(np.float32), 0.0, 1.0)


def evaluate_dir(root: str | Path, predict: Callable[[np.ndarray], np.ndarray], limit: int | None = None,
                 progress: Callable[[Iterable], Iterator] | None = None, masks: bool = False) -> EvalResult:
    """Run `predict(rgb HxWx3 uint8) -> HxW alpha` on every pair under root and score it.

    masks=False: the labels are alpha mattes, scored with MSE, MAE, SAD, Grad, Conn.
    masks=True: the labels are binary person masks (e.g. human-drawn), scored with IoU, boundary
    IoU, false-positive and false-negative area (vmatte.ops.mask_metrics; predictions > 0.5).
    `progress` optionally wraps the pair list (e.g. tqdm) for a progress bar.
    """
    score, keys = (mask_metrics, MASK_METRICS) if masks else (all_metrics, METRICS)
    pairs = find_pairs(root, limit)
    result = EvalResult()
    it = progress(pairs) if progress is not None else pairs
    for stem, img_path, alpha_path in it:
        rgb = read_rgb(img_path)
        gt = read_alpha(alpha_path)
        if gt.shape != rgb.shape[:2]:
            raise EvalDataError(f"alpha {alpha_path} is {gt.shape[1]}x{gt.shape[0]} but its image is "
                                f"{rgb.shape[1]}x{rgb.shape[0]}; expected equal sizes")
        if masks and 0 < gt.max() <= 1.5 / 255:
            raise EvalDataError(f"mask {alpha_path} holds only 0 and 1 (of 255); expected person = 255, "
                                "background = 0 (multiply the mask by 255)")
        t0 = time.perf_counter()
        pred = predict(rgb)
        result.predict_seconds += time.perf_counter() - t0
        pred = _as_alpha(pred, gt.shape, stem)
        result.per_image.append({"name": stem, **score(pred, gt)})
    result.mean = {k: float(np.mean([r[k] for r in result.per_image])) for k in keys}
    return result


def format_table(results: dict[str, EvalResult]) -> str:
    """Markdown table of mean metrics: MSE and MAE x1e3, SAD and Grad and Conn in thousands (DIM units);
    for mask results IoU, boundary IoU, and false-positive / false-negative area in % of the image."""
    if results and "iou" in next(iter(results.values())).mean:
        lines = ["| method | images | IoU | boundary IoU | FP area % | FN area % |", "|---|---:|---:|---:|---:|---:|"]
        for name, r in results.items():
            m = r.mean
            lines.append(f"| {name} | {r.count} | {m['iou']:.4f} | {m['biou']:.4f} | {m['fp'] * 100:.2f} | {m['fn'] * 100:.2f} |")
        return "\n".join(lines)
    lines = [
        "| method | images | MSE (x1e3) | MAE (x1e3) | SAD | Grad | Conn |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        m = r.mean
        lines.append(
            f"| {name} | {r.count} | {m['mse'] * 1e3:.2f} | {m['mae'] * 1e3:.2f} | {m['sad']:.2f} | "
            f"{m['grad']:.2f} | {m['conn']:.2f} |"
        )
    return "\n".join(lines)
