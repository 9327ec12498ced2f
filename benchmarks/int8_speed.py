"""int8 vs FP32 speed per component on onnxruntime (docs/benchmarks.md, "int8 (onnxruntime QDQ)").

One intra-op thread (as the backend runs them), a 1280x720 frame (the shipped astronaut photo
cropped to 16:9) through the FP32 pipeline so every component gets its real inputs, then each
component timed FP32 and int8 in alternation (so load from other processes hits both alike):
median of --runs calls after --warmup. Prints a markdown table; --json writes the numbers.

    python benchmarks/int8_speed.py [--onnx-dir vmatte/weights/rt] [--runs 30] [--json int8.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vmatte.backends.base import ModelSource  # noqa: E402
from vmatte.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from vmatte.export.quantize import Pipeline, default_long_side  # noqa: E402


def frame_720p() -> np.ndarray:
    """The shipped portrait, cropped to 16:9 and scaled to 1280x720 (RGB)."""
    img = cv2.cvtColor(cv2.imread(str(ROOT / "vmatte" / "data" / "astronaut.jpg")), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    ch = round(w * 9 / 16)
    return cv2.resize(img[: ch], (1280, 720), interpolation=cv2.INTER_LINEAR)


def cpu() -> dict:
    """CPU model name (vmatte.bench.cpu_model) and the int8 dot-product flags onnxruntime's kernels use."""
    from vmatte.bench import cpu_model

    name, flags = cpu_model(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {"model": name, **{f: f in flags for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--onnx-dir", default=str(ROOT / "vmatte" / "weights" / "rt"))
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    long_side = default_long_side(a.onnx_dir)
    feeds = Pipeline(a.onnx_dir, long_side).feeds(frame_720p())
    src = ModelSource("rt", Path(), Path(a.onnx_dir))
    backends = {prec: OnnxRuntimeBackend(src, threads=1, precision=prec) for prec in ("fp32", "int8")}
    res = {}
    for comp, feed in feeds.items():
        times = {prec: [] for prec in backends}
        for i in range(a.warmup + a.runs):
            for prec, be in backends.items():
                t0 = time.perf_counter()
                be.run(comp, **feed)
                if i >= a.warmup:
                    times[prec].append(time.perf_counter() - t0)
        res[comp] = {prec: round(float(np.median(t)) * 1e3, 2) for prec, t in times.items()}
        res[comp]["shapes"] = {k: list(v.shape) for k, v in feed.items()}
    import onnxruntime

    out = {"cpu": cpu(), "onnxruntime": onnxruntime.__version__, "runs": a.runs, "threads": 1, "frame": "1280x720",
           "long_side": long_side, "median_ms": res}
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    print(f"{out['cpu']['model']}; onnxruntime {out['onnxruntime']}; one intra-op thread; median of {a.runs}")
    print("| component | inputs | FP32 ms | int8 ms | int8 / FP32 |")
    print("|---|---|---:|---:|---:|")
    for comp, r in res.items():
        shapes = ", ".join("x".join(map(str, s[1:])) for s in r["shapes"].values())
        print(f"| {comp} | {shapes} | {r['fp32']:.2f} | {r['int8']:.2f} | {r['int8'] / r['fp32']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
