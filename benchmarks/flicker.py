"""Flicker of the matte on real footage: no filter, `vmatte process`'s temporal filter, the webcam's
causal smoother, and Robust Video Matting (recurrent and frame by frame) when its ONNX file is given;
the filters' cost per frame against the matting time; the matte error on moving frames.

Clips: the first --frames frames of each clip in ../shared/data/videos (or $VMATTE_DATA/videos),
scaled to --height px high (640x360 for the talking head). A clip that is absent is skipped with a
message; with none at all the script exits with status 2.

Definitions (docs/benchmarks.md, "Temporal stability"):
- A pixel "did not change" between two frames when, after a Gaussian blur of sigma 1 px of both,
  the largest of |dR|, |dG|, |dB| is below 4 (0..255) (vmatte.ops.temporal.changed_mask).
- flicker = mean |alpha_t - alpha_t-1| over every pixel that did not change, over all consecutive
  pairs, x 1e3. "band": the same over those pixels where either matte is in 0.02..0.98 (the
  subject's edge; the flat 0/1 areas dilute the first figure).
- Matte error on moving frames needs the true matte, which real footage lacks, so (with --rvm) a
  composite clip is built whose matte is exact by construction: RVM's foreground and matte of the
  clip (recurrent) over a still background photo plus sensor noise (sigma 2). Each method mattes
  that composite; error = mean |alpha - true| (MAE) and mean squared error over the frames where at
  least 1% of the pixels changed ("moving frames"), x 1e3.
- Cost: median ms per frame, wall and CPU time (all threads of the process: fairer than wall time
  on a shared machine), of the filter (guide + filter) and of Matter.matte (one onnxruntime thread,
  as `vmatte process` runs each of its workers), in the same run; also at --cost-height (720:
  1280x720, the clip upscaled) on --cost-frames frames.

    python benchmarks/flicker.py [--frames 300] [--rvm /path/rvm_mobilenetv3_fp32.onnx] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vmatte.live import MatteSmoother  # noqa: E402
from vmatte.ops import temporal as T  # noqa: E402

DATA = Path(os.environ.get("VMATTE_DATA", ROOT.parent / "shared" / "data"))
CLIPS = ("talking_head_bookshelf_1024x576.mp4", "carphone_pristine.mp4")
BACKGROUND = "rw_02.jpg"  # the composite's still background (../shared/data/backgrounds)
MOVING = 0.01  # a frame is "moving" when at least this share of its pixels changed


def read_clip(path: Path, frames: int, height: int) -> tuple[np.ndarray, float]:
    """The first `frames` frames scaled to `height` (even width) -> uint8 [N,h,w,3], and the rate."""
    from vmatte.io.sources import open_source

    out = []
    with open_source(path) as src:
        rate = float(src.rate)
        for fr in src:
            h, w = fr.rgb.shape[:2]
            size = (2 * round(w * height / h / 2), height)
            out.append(cv2.resize(fr.rgb, size, interpolation=cv2.INTER_AREA if h > height else cv2.INTER_LINEAR))
            if len(out) >= frames:
                break
    return np.stack(out), rate


class Clock:
    """Wall and CPU (all threads of this process) milliseconds of each timed step."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def __enter__(self):
        self._t = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc) -> None:
        self.wall.append((time.perf_counter() - self._t[0]) * 1e3)
        self.cpu.append((time.process_time() - self._t[1]) * 1e3)


def matte_all(matter, frames) -> tuple[np.ndarray, Clock]:
    alphas, clock = [], Clock()
    for f in frames:
        with clock:
            a = matter.matte(f)
        alphas.append(np.array(a, np.float32))
    return np.stack(alphas), clock


def file_filter(frames, alphas, params=T.DEFAULT) -> tuple[np.ndarray, Clock]:
    """vmatte process's filter; a frame's cost = guide + push, timed where a push gives out one
    frame (the steady state: not the first `radius` frames, which only fill the window)."""
    f, out, clock = T.TemporalFilter(params), [], Clock()
    for i, (fr, a) in enumerate(zip(frames, alphas)):
        with clock:
            done = f.push(i, T.guide(fr, params.work_side), a)
        if len(done) != 1:
            clock.wall.pop(), clock.cpu.pop()
        out += [x for _, x in done]
    out += [x for _, x in f.flush()]
    return np.stack(out), clock


def live_smoother(frames, alphas) -> tuple[np.ndarray, Clock]:
    sm, out, clock = MatteSmoother(), [], Clock()
    for fr, a in zip(frames, alphas):
        with clock:
            out.append(sm.apply(a, sm.weights(fr, a.shape)))
    return np.stack(out), clock


def flicker(frames, alphas, changed) -> dict:
    s = c = sb = cb = 0.0
    for t in range(1, len(alphas)):
        x, k = T.flicker(alphas[t - 1], alphas[t], changed[t])
        s, c = s + x, c + k
        a, b = alphas[t - 1], alphas[t]
        band = (((a > 0.02) & (a < 0.98)) | ((b > 0.02) & (b < 0.98))) & ~changed[t]
        sb, cb = sb + float(cv2.absdiff(a, b)[band].sum(dtype=np.float64)), cb + int(band.sum())
    return {"flicker": s / max(c, 1) * 1e3, "flicker_band": sb / max(cb, 1) * 1e3, "frames": len(alphas),
            "still_share": c / max(1, (len(alphas) - 1) * alphas[0].size)}


def errors(alphas, true, moving) -> dict:
    d = [alphas[t] - true[t] for t in moving]
    return {"mae": float(np.mean([np.abs(x).mean() for x in d]) * 1e3),
            "mse": float(np.mean([np.square(x).mean() for x in d]) * 1e3), "frames": len(moving)}


def changed_masks(frames) -> list:
    return [None] + [T.changed_mask(frames[t - 1], frames[t]) for t in range(1, len(frames))]


def costs(**clocks: Clock) -> dict:
    """Median wall and CPU ms per frame of each clock (the first frame, which warms caches, left out)."""
    med = lambda v: float(np.median(v[1:] if len(v) > 1 else v))  # noqa: E731
    return {k: {"wall": med(c.wall), "cpu": med(c.cpu)} for k, c in clocks.items()}


def run_clip(path: Path, args, matter, rvm_path) -> dict:
    frames, rate = read_clip(path, args.frames, args.height)
    n, (h, w) = len(frames), frames.shape[1:3]
    print(f"{path.name}: {n} frames at {w}x{h}, {rate:.2f} fps", file=sys.stderr)
    changed = changed_masks(frames)
    res: dict = {"frames": n, "size": [w, h], "fps": rate, "flicker": {}, "error": {}, "cost_ms": {}}
    vm, c_matte = matte_all(matter, frames)
    filt, c_filt = file_filter(frames, vm)
    live, c_live = live_smoother(frames, vm)
    res["cost_ms"] = costs(matte=c_matte, file_filter=c_filt, live_smoother=c_live)
    for label, al in (("vmatte, no filter", vm), ("vmatte process (temporal filter)", filt),
                      ("vmatte webcam smoother", live)):
        res["flicker"][label] = flicker(frames, al, changed)
    if rvm_path is not None:
        from vmatte.rvm import RVMMatter

        k = min(n, args.rvm_frames)
        rec = RVMMatter(rvm_path, recurrent=True)
        fgr, pha = zip(*(rec.run(f) for f in frames[:k]))
        fbf = RVMMatter(rvm_path, recurrent=False)
        for label, al in (("RVM recurrent", np.stack(pha)), ("RVM frame by frame", np.stack([fbf.matte(f) for f in frames[:k]]))):
            res["flicker"][label] = flicker(frames[:k], al, changed[:k])
        res["error"] = composite_errors(np.stack(fgr), np.stack(pha), matter)
    return res


def composite_errors(fgr, pha, matter) -> dict:
    """Each method on a composite whose matte is exact: RVM's foreground and matte over a photo."""
    from vmatte.ops.compose import cover_resize

    n, h, w = pha.shape
    bg_path = DATA / "backgrounds" / BACKGROUND
    bg = cv2.imread(str(bg_path))
    if bg is None:
        return {"skipped": f"{bg_path} not found"}
    bg = cover_resize(bg[..., ::-1], h, w).astype(np.float32)
    rng = np.random.default_rng(0)
    comp = np.stack([np.clip(a[..., None] * f * 255 + (1 - a[..., None]) * bg + rng.normal(0, 2.0, (h, w, 3)) + 0.5,
                             0, 255).astype(np.uint8) for f, a in zip(fgr, pha)])
    changed = changed_masks(comp)
    moving = [t for t in range(1, n) if changed[t].mean() >= MOVING]
    vm, _ = matte_all(matter, comp)
    out = {"moving_frames": len(moving), "frames": n}
    for label, al in (("vmatte, no filter", vm), ("vmatte process (temporal filter)", file_filter(comp, vm)[0]),
                      ("vmatte webcam smoother", live_smoother(comp, vm)[0])):
        out[label] = dict(errors(al, pha, moving), flicker=flicker(comp, al, changed)["flicker"])
    return out


def cost_big(clip: Path, args, matter) -> dict:
    """Matting and filter time per frame at --cost-height (the clip upscaled), --cost-frames frames."""
    frames, _ = read_clip(clip, args.cost_frames, args.cost_height)
    vm, c_matte = matte_all(matter, frames)
    c_filt, c_live = file_filter(frames, vm)[1], live_smoother(frames, vm)[1]
    return dict(costs(matte=c_matte, file_filter=c_filt, live_smoother=c_live),
                size=list(frames.shape[2:0:-1]), frames=len(frames))


def machine() -> dict:
    import onnxruntime

    cpu = platform.processor()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "opencv": cv2.__version__, "onnxruntime": onnxruntime.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M"), "filter": vars(T.DEFAULT),
            "smoother": {"smoothing": MatteSmoother().smoothing, "motion_scale": MatteSmoother().motion_scale}}


def table(results: dict) -> str:
    lines = ["| clip | method | frames | flicker x1e3 | band x1e3 | MAE moving x1e3 | MSE moving x1e3 | "
             "ms/frame wall | CPU |", "|---|---|---|---|---|---|---|---|---|"]
    cost_key = {"vmatte, no filter": "matte", "vmatte process (temporal filter)": "file_filter",
                "vmatte webcam smoother": "live_smoother"}
    for clip, r in results["clips"].items():
        for label, f in r["flicker"].items():
            e = r["error"].get(label, {})
            ms = r["cost_ms"].get(cost_key.get(label, ""), {})
            lines.append(f"| {clip} | {label} | {f['frames']} | {f['flicker']:.3f} | {f['flicker_band']:.2f} | "
                         f"{e.get('mae', float('nan')):.3f} | {e.get('mse', float('nan')):.3f} | "
                         f"{ms.get('wall', float('nan')):.2f} | {ms.get('cpu', float('nan')):.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=300, help="frames from the start of each clip (default: 300)")
    p.add_argument("--height", type=int, default=360, help="scale the clips to this height (default: 360)")
    p.add_argument("--rvm", default=None, help="Robust Video Matting ONNX file: adds its rows and the error table")
    p.add_argument("--rvm-frames", type=int, default=300, help="frames RVM runs on (default: 300)")
    p.add_argument("--cost-frames", type=int, default=40, help="frames for the cost check at --cost-height (0: skip)")
    p.add_argument("--cost-height", type=int, default=720, help="frame height of the cost check (default: 720)")
    p.add_argument("--cost-only", action="store_true", help="only the cost check (on the first clip found)")
    p.add_argument("--clips", nargs="*", default=list(CLIPS), help="file names in the data's videos folder")
    p.add_argument("--json", default=None, help="write every number here")
    args = p.parse_args(argv)

    from vmatte.api import Matter

    found = [DATA / "videos" / c for c in args.clips if (DATA / "videos" / c).is_file()]
    for c in args.clips:
        if not (DATA / "videos" / c).is_file():
            print(f"skipped: {DATA / 'videos' / c} not found", file=sys.stderr)
    if not found:
        print(f"flicker.py: none of the clips is in {DATA / 'videos'}; set VMATTE_DATA to the folder holding videos/",
              file=sys.stderr)
        return 2
    rvm = Path(args.rvm) if args.rvm else None
    if rvm is not None and not rvm.is_file():
        print(f"flicker.py: --rvm {rvm} not found", file=sys.stderr)
        return 2
    if rvm is None:
        print("no --rvm: no RVM rows and no matte-error table (it is built from RVM's foreground)", file=sys.stderr)
    matter = Matter(backend="onnxruntime", threads=1)
    results = {"machine": machine(), "clips": {}}
    for path in ([] if args.cost_only else found):
        results["clips"][path.stem] = run_clip(path, args, matter, rvm)
    if args.cost_frames:
        results["cost_big"] = cost_big(found[0], args, matter)
    print(table(results))
    rows = [(clip, r["cost_ms"]) for clip, r in results["clips"].items()]
    if "cost_big" in results:
        rows.append(("x".join(map(str, results["cost_big"]["size"])), results["cost_big"]))
    for name, c in rows:
        print(f"{name}: " + ", ".join(
            f"{kind} filter {c['file_filter'][kind]:.2f} ms / matte {c['matte'][kind]:.1f} ms = "
            f"{100 * c['file_filter'][kind] / c['matte'][kind]:.1f}% (webcam smoother {c['live_smoother'][kind]:.2f})"
            for kind in ("cpu", "wall")))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
