"""`vmatte process` end to end on an NVIDIA GPU: the user's own path (decode -> matte -> composite
-> encode, audio and timestamps kept), over a synthetic clip, with the torch-cuda backend.

Routes, each over the same clip in one run:
  gpu   the GPU route process() takes for a torch CUDA backend: frames decoded to RGB on a host
        thread, batches of GPU_BATCH through one CUDA-graphed device program (model, background,
        conversion), encoded on the caller's thread;
  host  the route every other backend takes: per-frame matting calls (one at a time on a GPU
        backend) and compositing on the CPU.
With --long-frames N each job also runs over an N-frame clip: the difference of the two runs
gives the steady-state fps (frames per second once set up) and the fixed cost of one call (opening
files, building and capturing the device program), which a short clip's fps mixes together.
Writes $OUT/gpu_process.json (or --out) and prints a markdown table.

    python benchmarks/gpu_process.py [--frames 300] [--long-frames 1200] [--size 1080p] [--routes gpu,host] [-v]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vmatte import bench as B  # noqa: E402


class _HostOnly:
    """The same Matter without its backend attribute: process() then takes the host route."""

    def __init__(self, matter) -> None:
        self.matte = matter.matte


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "out"))
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--size", default="1080p", help="one of 480p, 720p, 1080p, 4k")
    ap.add_argument("--long-frames", type=int, default=0, help="also run an N-frame clip: steady-state fps and fixed cost per call")
    ap.add_argument("--routes", default="gpu,host")
    ap.add_argument("--backend", default="torch-cuda")
    ap.add_argument("--outputs", default="composite:blur:.mp4,alpha:blur:.mp4",
                    help="comma-separated KIND:BACKGROUND:EXT jobs")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="timestamped debug log: graph captures, first and last frame, closing time per call")
    args = ap.parse_args(argv)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s: %(message)s")
    from vmatte.api import Matter
    from vmatte.process import process

    (label, h, w), = B.parse_sizes(args.size)
    tmp = Path(tempfile.mkdtemp(prefix="gpu_process-"))
    clip = B.make_test_video(tmp / f"clip{label}.mp4", h, w, args.frames)
    long_clip = B.make_test_video(tmp / f"long{label}.mp4", h, w, args.long_frames) if args.long_frames > args.frames else None
    matter = Matter(backend=args.backend)
    res: dict = {"system": B.system_info(), "backend": matter.backend_name, "size": label, "frames": args.frames,
                 "runs": []}
    # Warm-up: graph capture, cudnn autotuning.
    process(clip, tmp / "warm.mp4", matter=matter, overwrite=True)
    for job in args.outputs.split(","):
        kind, bg, ext = job.split(":")
        for route in args.routes.split(","):
            m = matter if route == "gpu" else _HostOnly(matter)
            t0 = time.perf_counter()
            r = process(clip, tmp / f"out{ext}", matter=m, background=bg, output_kind=kind, overwrite=True)
            wall = time.perf_counter() - t0
            row = {"route": route, "kind": kind, "background": bg, "ext": ext, "frames": r.frames,
                   "fps": r.frames / wall, "seconds": wall}
            if long_clip is not None:
                t0 = time.perf_counter()
                r2 = process(long_clip, tmp / f"long_out{ext}", matter=m, background=bg, output_kind=kind, overwrite=True)
                wall2 = time.perf_counter() - t0
                steady = (r2.frames - r.frames) / max(wall2 - wall, 1e-9)
                row.update(long_frames=r2.frames, long_seconds=wall2, steady_fps=steady,
                           fixed_seconds=wall - r.frames / steady)
            res["runs"].append(row)
            print(f"[gpu_process] {row}", flush=True)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu_process.json").write_text(json.dumps(res, indent=2, default=str))
    s = res["system"]
    print(f"## vmatte process, {label}, {args.frames} frames | {s.get('gpu')} | torch {s.get('torch')} | "
          f"backend {res['backend']}\n")
    print("| route | output | fps | seconds | steady fps | fixed s |\n| --- | --- | --- | --- | --- | --- |")
    for r in res["runs"]:
        extra = f"{r['steady_fps']:.1f} | {r['fixed_seconds']:.2f}" if "steady_fps" in r else "- | -"
        print(f"| {r['route']} | {r['kind']} over {r['background']}, {r['ext']} | {r['fps']:.1f} | {r['seconds']:.2f} | {extra} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
