"""The tenth session's two CPU changes, each against what it replaced, interleaved in one run:

1. `Matter.matte` on 720p frames with the plain ONNX files vs the paired ones (vmatte.models.pairs:
   generator_pairs.onnx, refiner_patches_pairs.onnx), one onnxruntime thread each, frame by frame;
   and the largest |alpha difference| between the two;
2. `vmatte process` (blur, temporal filter on) and the plain decode + encode of a 720p clip with
   swscale's accurate conversions vs OpenCV's (vmatte.ops.yuv), rounds alternating: fps and the
   process's CPU ms per frame (all threads).

    python benchmarks/cpu_ab.py [--frames 240] [--rounds 3] [--json docs/benchmarks/cpu_ab.json]

The swscale rows patch the conversions back for the run (a benchmark, not a switch of the tool).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_process import make_clip, plain_transcode, run_record, write_json  # noqa: E402
from cpu_targets import frames_720p  # noqa: E402

from vmatte.process import process  # noqa: E402


def matte_pairs(frames: list[np.ndarray], rounds: int) -> dict:
    from vmatte.api import Matter

    ms = {"plain": Matter(backend="onnxruntime", threads=1, pairs=False),
          "paired": Matter(backend="onnxruntime", threads=1, pairs=True)}
    files = {k: sorted(p.name for p in m.backend.files.values()) for k, m in ms.items()}
    diff = max(float(np.abs(ms["plain"].matte(f) - ms["paired"].matte(f)).max()) for f in frames[:10])
    times: dict[str, list[float]] = {k: [] for k in ms}
    for _ in range(rounds):
        for f in frames:
            for k, m in ms.items():
                t = time.perf_counter()
                m.matte(f)
                times[k].append(time.perf_counter() - t)
    out = {k: {"median_ms": 1e3 * float(np.median(v)), "p95_ms": 1e3 * float(np.percentile(v, 95)), "files": files[k]}
           for k, v in times.items()}
    out["paired_over_plain"] = out["paired"]["median_ms"] / out["plain"]["median_ms"]
    out["max_abs_alpha_diff"] = diff
    return out


@contextmanager
def swscale_conversions():
    """VideoSource and VideoSink convert with swscale (accurate in, default out), as before."""
    import av

    import vmatte.io.sinks as sinks
    import vmatte.io.sources as sources

    def sws(rgb, matrix, out=None):
        return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
            format="yuv420p", dst_colorspace=5 if matrix == 6 else matrix, dst_color_range=1).to_ndarray()

    saved = sources.frame_to_array, sinks.rgb_to_i420
    sources.frame_to_array, sinks.rgb_to_i420 = sources.swscale_to_array, sws
    try:
        yield
    finally:
        sources.frame_to_array, sinks.rgb_to_i420 = saved


def process_conversions(clip: Path, tmp: Path, frames: int, rounds: int) -> dict:
    from vmatte.api import Matter

    m = Matter(backend="onnxruntime", threads=1)
    rows: dict[str, list[dict]] = {}
    for _ in range(rounds):
        for conv in ("swscale", "opencv"):
            with swscale_conversions() if conv == "swscale" else _nothing():
                for kind in ("plain", "vmatte"):
                    c0 = time.process_time()
                    if kind == "plain":
                        fps = plain_transcode(clip, tmp / "plain.mp4")
                    else:
                        fps = process(clip, tmp / "vm.mp4", matter=m, overwrite=True).fps
                    rows.setdefault(f"{kind} {conv}", []).append(
                        {"fps": fps, "cpu_ms_per_frame": 1e3 * (time.process_time() - c0) / frames})
    out: dict = {k: {"runs": v, "median_fps": float(np.median([r["fps"] for r in v])),
                     "median_cpu_ms_per_frame": float(np.median([r["cpu_ms_per_frame"] for r in v]))} for k, v in rows.items()}
    for conv in ("swscale", "opencv"):
        out[f"vmatte_share_of_plain {conv}"] = out[f"vmatte {conv}"]["median_fps"] / out[f"plain {conv}"]["median_fps"]
    return out


@contextmanager
def _nothing():
    yield


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=240, help="frames of the 720p clip (default: 240)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    result = run_record()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = make_clip(tmp / "clip720.mp4", a.frames)
        result["matte_720p_pairs"] = matte_pairs(frames_720p(clip, 30), a.rounds)
        result["process_720p_conversions"] = process_conversions(clip, tmp, a.frames, a.rounds)
    print(f"\n{result['system'].get('cpu', '')}, {result['date']}\n")
    mp = result["matte_720p_pairs"]
    print("| row | value |\n| --- | --- |")
    for k in ("plain", "paired"):
        print(f"| matte 720p, {k} files | {mp[k]['median_ms']:.1f} ms (p95 {mp[k]['p95_ms']:.1f}) |")
    print(f"| paired / plain | {mp['paired_over_plain']:.3f} (max |dalpha| {mp['max_abs_alpha_diff']:.1e}) |")
    for k, v in result["process_720p_conversions"].items():
        if isinstance(v, dict):
            runs = ", ".join(f"{r['fps']:.1f}" for r in v["runs"])
            print(f"| {k} | {v['median_fps']:.1f} fps ({runs}); {v['median_cpu_ms_per_frame']:.1f} CPU ms a frame |")
        else:
            print(f"| {k} | {v:.2f} |")
    write_json(a.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
