"""The refiner on the CPU: the one-graph refiner against the host plumbing around its patch net,
and the cell budget against time and quality (docs/benchmarks.md, ninth session).

    python benchmarks/refiner_budget.py [--frames 40] [--rounds 3] [--budgets 0,8,16,24,32]
                                        [--dev .assets/devset] [--ccp .assets/ccp_val] [--json OUT]

Times: Matter.matte on 1280x720 frames of the talking-head clip (a synthetic clip without
../shared/data), onnxruntime with one thread, the candidates interleaved frame by frame, median
ms. Quality (when the folders exist): dev-set MSE/SAD/Grad and CCP IoU / boundary IoU per budget.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_process import make_clip, run_record, write_json  # noqa: E402
from cpu_targets import frames_720p  # noqa: E402

from vmatte.api import Matter  # noqa: E402
from vmatte.evaluate import evaluate_dir  # noqa: E402


def timings(m: Matter, frames: list[np.ndarray], budgets: list[int], rounds: int) -> dict:
    """{candidate: median ms}: "graph" (the refiner as one onnxruntime graph, as before the host
    plumbing) and each budget on the host."""
    plan = m.backend.patch_plan
    cands = ["graph"] + [f"host, {k} cells" for k in budgets]
    ts: dict[str, list[float]] = {c: [] for c in cands}
    for f in frames[:3]:
        m.matte(f)
    for _ in range(rounds):
        for f in frames:
            for c, k in zip(cands, [None] + budgets):
                m.backend.patch_plan = None if k is None else (k, plan[1])
                t0 = time.perf_counter()
                m.matte(f)
                ts[c].append((time.perf_counter() - t0) * 1e3)
    m.backend.patch_plan = plan
    return {c: round(float(np.median(v)), 2) for c, v in ts.items()}


def quality(m: Matter, budgets: list[int], dev: Path, ccp: Path) -> dict:
    out = {}
    for k in budgets:
        m.refine_patches = k
        row = {}
        if dev.is_dir():
            d = evaluate_dir(dev, m.matte).mean
            row.update(dev_mse_x1e3=round(float(d["mse"]) * 1e3, 3), dev_sad=round(float(d["sad"]), 3), dev_grad=round(float(d["grad"]), 3))
        if ccp.is_dir():
            c = evaluate_dir(ccp, m.matte, masks=True).mean
            row.update(ccp_iou=round(float(c["iou"]), 4), ccp_biou=round(float(c["biou"]), 4))
        out[k] = row
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--budgets", default="0,8,16,24,32")
    p.add_argument("--dev", type=Path, default=ROOT / ".assets" / "devset")
    p.add_argument("--ccp", type=Path, default=ROOT / ".assets" / "ccp_val")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    budgets = [int(x) for x in a.budgets.split(",")]
    m = Matter(backend="onnxruntime", threads=1)
    if m.refine_patches is None:
        raise SystemExit("the onnxruntime export has no refiner_patches.onnx: re-export it")
    with tempfile.TemporaryDirectory() as tmp:
        frames = frames_720p(make_clip(Path(tmp) / "clip.mp4", a.frames), a.frames)
    res = {**run_record(), "frames": len(frames), "rounds": a.rounds,
           "matte_720p_ms": timings(m, frames, budgets, a.rounds), "quality": quality(m, budgets, a.dev, a.ccp)}
    print("| candidate | matte 720p ms |\n|---|---:|")
    for c, ms in res["matte_720p_ms"].items():
        print(f"| {c} | {ms} |")
    for k, row in res["quality"].items():
        print(f"budget {k}: {row}")
    write_json(a.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
