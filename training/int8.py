"""The int8 step of a release: calibration frames from training photos and videos (never the
held-out validation data), the <component>.int8.onnx files, and their parity with FP32.

Parity is measured on the dev set (true alphas: MSE, SAD) and a validation set (human person
masks: IoU, boundary IoU), int8 against FP32 through the same onnxruntime pipeline, plus the
largest and mean absolute difference of the two mattes. The issue's bar: quality within 2 %."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vmatte.errors import VmatteError

log = logging.getLogger(__name__)

SPLIT = Path(__file__).resolve().parent / "split.json"
PREFIXES = ("hs290_", "ccp_", "u2p_")  # subject-name prefixes of the split (human_seg_290, CCP, U-2-Net)
BAR = 0.02  # int8 may be at most 2 % worse than FP32 on every parity metric


def _subject(stem: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)


def heldout_filter(forbidden: Sequence[str | Path] = (), split: str | Path = SPLIT) -> Callable[[Path], bool]:
    """skip(path) for calibration photos: True for a held-out subject of `split` (any prefix) or a
    file inside a `forbidden` folder (the dev and validation sets)."""
    held = set(json.loads(Path(split).read_text()).get("heldout_subjects", [])) if Path(split).is_file() else set()
    roots = [Path(f).resolve() for f in forbidden]

    def skip(path: Path) -> bool:
        p = Path(path).resolve()
        return any(r == p or r in p.parents for r in roots) or any(pre + _subject(p.stem) in held for pre in PREFIXES)

    return skip


def check_sources(sources: Sequence[str | Path], forbidden: Sequence[str | Path]) -> None:
    """Refuse a calibration source that is, or lies in or around, a validation folder."""
    for s in map(lambda x: Path(x).resolve(), sources):
        for f in map(lambda x: Path(x).resolve(), forbidden):
            if s == f or f in s.parents or s in f.parents:
                raise VmatteError(f"calibration source {s} overlaps the validation set {f}; calibrate on training photos and videos")


def onnx_matte(onnx_dir: str | Path, long_side: int, precision: str) -> Callable[[np.ndarray], np.ndarray]:
    """rgb -> alpha [H,W] through the onnxruntime backend on the files in `onnx_dir`, as Matter.matte."""
    from vmatte.api import run_matte
    from vmatte.backends.base import ModelSource
    from vmatte.backends.onnxruntime import OnnxRuntimeBackend

    be = OnnxRuntimeBackend(ModelSource("", Path(), Path(onnx_dir)), precision=precision)
    return lambda rgb: run_matte(be, rgb, long_side)


def label_kind(root: str | Path, probe: int = 8) -> str:
    """'masks' for a set whose labels are binary (a mask/ folder, or only 0 and 255 in the first
    labels), else 'alpha'."""
    from vmatte.evaluate import find_pairs, read_alpha

    if any((Path(root) / d).is_dir() for d in ("mask", "masks")):
        return "masks"
    labels = [read_alpha(a) for _, _, a in find_pairs(root)[:probe]]
    return "masks" if all(np.isin(np.round(x * 255), (0, 255)).all() for x in labels) else "alpha"


def parity(onnx_dir: str | Path, long_side: int, root: str | Path, limit: int | None = None) -> dict:
    """FP32 vs int8 on one labelled set: mean metrics of each, int8's relative change, the largest
    and mean |int8 - FP32| alpha difference, the mean fraction of pixels off by more than 0.1, and
    whether int8 is within BAR of FP32 on every metric."""
    from vmatte.evaluate import find_pairs, read_alpha, read_rgb
    from vmatte.ops.mask_metrics import mask_metrics
    from vmatte.ops.metrics import all_metrics

    kind = label_kind(root)
    score, keys, higher = (mask_metrics, ("iou", "biou"), True) if kind == "masks" else (all_metrics, ("mse", "sad"), False)
    fns = {p: onnx_matte(onnx_dir, long_side, p) for p in ("fp32", "int8")}
    rows = {p: [] for p in fns}
    max_abs, mean_abs, off = 0.0, [], []
    pairs = find_pairs(root, limit)
    for _, ip, ap in pairs:
        rgb, gt = read_rgb(ip), read_alpha(ap)
        a = {p: np.clip(f(rgb), 0.0, 1.0) for p, f in fns.items()}
        for p in fns:
            rows[p].append(score(a[p], gt))
        d = np.abs(a["int8"] - a["fp32"])
        max_abs, mean_abs, off = max(max_abs, float(d.max())), mean_abs + [float(d.mean())], off + [float((d > 0.1).mean())]
    mean = {p: {k: float(np.mean([r[k] for r in rows[p]])) for k in keys} for p in fns}
    change = {k: (mean["int8"][k] - mean["fp32"][k]) / max(abs(mean["fp32"][k]), 1e-12) for k in keys}
    worse = {k: -c if higher else c for k, c in change.items()}  # > 0: int8 is worse
    return {"set": str(root), "labels": kind, "images": len(pairs),
            "fp32": _round(mean["fp32"]), "int8": _round(mean["int8"]), "relative_change": _round(change),
            "max_abs_alpha_diff": round(max_abs, 5), "mean_abs_alpha_diff": round(float(np.mean(mean_abs)), 6),
            "pixels_off_by_0.1": round(float(np.mean(off)), 6),
            "within_2pct": bool(all(w <= BAR for w in worse.values()))}


def _round(d: dict) -> dict:
    return {k: round(v, 6) for k, v in d.items()}


def make_int8(onnx_dir: str | Path, long_side: int, calib: Sequence[str | Path], count: int = 100,
              eval_sets: Sequence[str | Path] = (), limit: int | None = None) -> dict:
    """Write the int8 files next to the FP32 ones, calibrated on ~`count` frames of `calib` (never
    a file of `eval_sets`, .assets/devset or .assets/ccp_val, or a held-out subject of split.json),
    then measure parity on each of `eval_sets`. Returns the card entry:
    {"calibration", "quantization", "parity": {set name: ...}}."""
    from vmatte.export.frames import read_frames
    from vmatte.export.quantize import FRAME_SIDES, calibration_info, quantization_info, quantize_model, require_onnx

    require_onnx()
    repo = Path(__file__).resolve().parents[1]
    forbidden = [*eval_sets, repo / ".assets" / "devset", repo / ".assets" / "ccp_val"]
    check_sources(calib, forbidden)
    frames, desc = read_frames(calib, count, skip=heldout_filter(forbidden))
    quantize_model(onnx_dir, frames, long_side, desc)
    entry = {"calibration": calibration_info(len(frames), long_side, FRAME_SIDES, desc), "quantization": quantization_info(),
             "parity": {}}
    for s in eval_sets:
        entry["parity"][Path(s).name] = res = parity(onnx_dir, long_side, s, limit)
        log.info("int8 parity on %s: %s", s, res)
        if not res["within_2pct"]:
            log.warning("int8 is more than 2 %% worse than FP32 on %s: %s", s, res["relative_change"])
    return entry
