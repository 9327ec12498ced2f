"""What the refiner adds when the frame is not much larger than the generator's input: the dev set
(image/ + alpha/) downscaled to a few long sides, matted with and without the refiner (the coarse
alpha upsampled as Matter.matte does when it skips it), MSE / Grad / SAD against the true alpha.
Behind vmatte.ops.sizes.REFINE_MIN_SCALE.

    python benchmarks/refiner_skip.py .assets/devset --sides 320 400 480 640 [--size 256]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vmatte.api import Matter, prepare  # noqa: E402
from vmatte.evaluate import find_pairs, read_alpha, read_rgb  # noqa: E402
from vmatte.ops.metrics import all_metrics  # noqa: E402


def matte(m: Matter, rgb: np.ndarray, refine: bool) -> np.ndarray:
    H, W = rgb.shape[:2]
    full, low = prepare(rgb, m.long_side)
    be = m.backend
    coarse = np.asarray(be.run("generator", image=low, mask=be.run("segmenter", image=low)), np.float32)
    if refine:
        return np.array(be.run("refiner", image=full, coarse=coarse)[0, 0, :H, :W])
    return np.clip(cv2.resize(coarse[0, 0], (full.shape[3], full.shape[2]), interpolation=cv2.INTER_LINEAR)[:H, :W], 0, 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("devset")
    p.add_argument("--sides", type=int, nargs="+", default=[320, 400, 480, 640])
    p.add_argument("--size", type=int, default=None, help="generator long side (default: the model's)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    m = Matter(backend="onnxruntime", size=a.size)
    pairs = find_pairs(a.devset)
    rows = []
    for side in a.sides:
        acc = {True: [], False: []}
        for _, ip, ap_ in pairs:
            rgb, gt = read_rgb(ip), read_alpha(ap_)
            h, w = rgb.shape[:2]
            k = side / max(h, w)
            size = (max(8, round(w * k)), max(8, round(h * k)))
            rgb = np.ascontiguousarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))
            gt = cv2.resize(gt, size, interpolation=cv2.INTER_AREA)
            for refine in (True, False):
                r = all_metrics(matte(m, rgb, refine), gt)
                acc[refine].append([r["mse"] * 1e3, r["grad"], r["sad"]])
        full, low = prepare(rgb, m.long_side)
        row = {"side": side, "scale": round(full.shape[3] / low.shape[3], 2), "images": len(pairs),
               **{("refined" if k else "skipped"): dict(zip(("mse_x1e3", "grad", "sad"), np.mean(v, 0).round(3).tolist()))
                  for k, v in acc.items()}}
        rows.append(row)
        print(f"| {side} | {row['scale']} | {row['refined']} | {row['skipped']} |")
    if a.json:
        a.json.write_text(json.dumps({"size": m.long_side, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
