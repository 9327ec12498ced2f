"""`vmatte bench`: model-only and end-to-end speed over a resolution sweep, per backend; with
--stages, where a CPU frame's time goes, stage by stage (vmatte.profile)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bench", help="measure speed: per-stage latency (p50/p95/p99) and fps per size and backend",
        description="Benchmark vmatte on random frames over a resolution sweep (and optionally a video end to end). "
                    "GPU stages are timed with CUDA events after a warm-up. --stages times every stage of "
                    "the CPU path instead, on the sample's real frames.",
    )
    p.add_argument("--backend", default="auto",
                   help="auto, torch-cuda, onnxruntime, torch or tensorrt; several comma-separated (default: auto)")
    p.add_argument("--model", default="rt", help="model variant (default: rt)")
    p.add_argument("--weights", default=None, help="a .safetensors file (default: shipped, else random weights)")
    p.add_argument("--sizes", default=None,
                   help="comma-separated: 360p,480p,720p,1080p,1440p,4k or WxH (default: 480p,720p,1080p,4k; "
                        "720p with --stages)")
    p.add_argument("--frames", type=int, default=100, help="timed frames per size (default: 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed warm-up frames per size (default: 10)")
    p.add_argument("--batch", type=int, default=1, help="frames per model call (default: 1)")
    p.add_argument("--end-to-end", metavar="VIDEO", default=None,
                   help="also time decode -> matte -> blur -> encode over this video file")
    p.add_argument("--stages", action="store_true",
                   help="instead: profile every stage of one frame's CPU path (decode, conversions, each model "
                        "split by op group, temporal filter, compositing, encode) on onnxruntime; a table per size")
    p.add_argument("--json", metavar="OUT", default=None, help="write the full results to this JSON file")
    p.add_argument("--plot", metavar="OUT.png", default=None, help="draw fps vs resolution into this PNG")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..bench import format_table, plot, run_bench
    from ..errors import VmatteError

    if args.frames < 1 or args.warmup < 0 or args.batch < 1:
        raise VmatteError(f"--frames {args.frames} / --warmup {args.warmup} / --batch {args.batch} out of range; "
                          "use frames >= 1, warmup >= 0, batch >= 1")
    if args.stages:
        return run_stages(args)
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    result = run_bench(backends, args.model, args.sizes or "480p,720p,1080p,4k", frames=args.frames,
                       warmup=args.warmup, batch=args.batch,
                       weights=args.weights, end_to_end=args.end_to_end,
                       progress=lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True))
    s = result["system"]
    print(f"vmatte {result['model']} ({result['weights']} weights) on {s.get('gpu') or s.get('cpu')}; "
          f"torch {s.get('torch')}, onnxruntime {s.get('onnxruntime')}, CUDA {s.get('cuda')}, driver {s.get('driver')}")
    print(format_table(result))
    _write_json(args.json, result)
    if args.plot:
        print(f"wrote {plot(result, args.plot)}")
    return 0


def run_stages(args: argparse.Namespace) -> int:
    """`vmatte bench --stages`: the per-stage CPU profile (vmatte.profile), a table per size."""
    from ..errors import VmatteError
    from ..profile import format_stage_table, profile_sizes

    if args.backend not in ("auto", "onnxruntime"):
        raise VmatteError(f"--stages profiles the CPU path (onnxruntime), not --backend {args.backend}; "
                          "drop --backend or pass --backend onnxruntime")
    if args.end_to_end or args.plot or args.batch != 1:
        raise VmatteError("--stages takes no --end-to-end, --plot or --batch; run those without --stages")
    result = profile_sizes(args.sizes or "720p", frames=args.frames, warmup=args.warmup, model=args.model,
                           weights=args.weights, progress=lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True))
    for k, prof in enumerate(result["stage_profiles"]):
        print(("\n" if k else "") + f"vmatte {result['model']} on onnxruntime, {prof['size']}")
        print(format_stage_table(prof))
    _write_json(args.json, result)
    return 0


def _write_json(path: str | None, result: dict) -> None:
    if path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
