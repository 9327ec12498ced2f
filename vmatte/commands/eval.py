"""`vmatte eval DIR`: matting metrics (MSE, MAE, SAD, Grad, Conn) on a folder with true alphas."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval", help="score a model on DIR/image + DIR/alpha (MSE, MAE, SAD, Grad, Conn)",
        description="Evaluate matting quality on DIR/image/* with true alphas in DIR/alpha/* (same file stems).",
    )
    p.add_argument("dir", help="folder with image/ (or images/) and alpha/ (or alphas/)")
    p.add_argument("--model", default="rt", help="model variant (default: rt)")
    p.add_argument("--backend", default="auto", help="auto, onnxruntime, torch, torch-cuda or tensorrt")
    p.add_argument("--size", type=int, default=None, help="generator long side in px (default: the model's)")
    p.add_argument("--weights", default=None, help="a .safetensors file instead of the shipped weights")
    p.add_argument("--compare-mask", action="store_true", help="also score the segmenter's coarse mask as a matte")
    p.add_argument("--compare-rvm", metavar="ONNX", default=None, help="also score Robust Video Matting from this ONNX file")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--json", metavar="OUT", default=None, help="write per-image and mean metrics to this JSON file")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..evaluate import evaluate_dir, find_pairs, format_table

    n = len(find_pairs(args.dir, args.limit))  # fail on a bad folder before loading any model

    def bar(desc: str):
        return lambda items: tqdm(items, desc=desc, total=n, unit="img", leave=False)

    from ..api import Matter

    kwargs = {"model": args.model, "backend": args.backend}
    if args.size is not None:
        kwargs["size"] = args.size
    if args.weights is not None:
        kwargs["weights"] = args.weights
    results = {}
    matter = Matter(**kwargs)
    try:
        name = f"vmatte {args.model} ({matter.backend_name})"
        results[name] = evaluate_dir(args.dir, matter.matte, args.limit, progress=bar(name))
        if args.compare_mask:
            results[f"{args.model} segmenter mask"] = evaluate_dir(args.dir, matter.segment, args.limit,
                                                                   progress=bar("mask"))
    finally:
        matter.close()
    if args.compare_rvm:
        from ..rvm import RVMMatter

        rvm = RVMMatter(args.compare_rvm)
        results["RVM mobilenetv3"] = evaluate_dir(args.dir, rvm.matte, args.limit, progress=bar("RVM"))
    print(format_table(results))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({k: r.to_dict() for k, r in results.items()}, indent=2))
    return 0
