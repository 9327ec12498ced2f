"""`vmatte eval DIR`: matting metrics (MSE, MAE, SAD, Grad, Conn) on true alphas, or person-mask
metrics (IoU, boundary IoU, FP/FN area) on binary human labels with --masks; baselines (RVM,
MODNet, MediaPipe) scored in the same run when their files are given."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import add_precision_arg, add_refine_patches_arg

# --compare-* option -> (table name, loader module, class); each loads before any image is scored.
BASELINES = {
    "rvm": ("RVM mobilenetv3", "vmatte.rvm", "RVMMatter"),
    "modnet": ("MODNet", "vmatte.modnet", "MODNetMatter"),
    "mediapipe": ("MediaPipe selfie", "vmatte.mediapipe_selfie", "MediaPipeSelfie"),
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval", help="score a model on DIR/image + DIR/alpha (MSE, MAE, SAD, Grad, Conn) or person masks (--masks)",
        description="Evaluate on DIR/image/* with labels in DIR/alpha/* (or mask/) of the same file stems: "
                    "true alpha mattes by default, binary person masks with --masks.",
    )
    p.add_argument("dir", help="folder with image/ (or images/) and alpha/ (or alphas/, mask/, masks/)")
    p.add_argument("--model", default="rt", help="model variant (default: rt)")
    p.add_argument("--backend", default="auto", help="auto, onnxruntime, torch, torch-cuda or tensorrt")
    add_precision_arg(p)
    add_refine_patches_arg(p)
    p.add_argument("--size", type=int, default=None, help="generator long side in px (default: the model's)")
    p.add_argument("--weights", default=None, help="a .safetensors file instead of the shipped weights")
    p.add_argument("--masks", action="store_true",
                   help="labels are binary person masks: report IoU, boundary IoU (band 2%% of the diagonal), "
                        "false-positive and false-negative area")
    p.add_argument("--compare-mask", action="store_true", help="also score the segmenter's coarse mask")
    p.add_argument("--compare-rvm", metavar="ONNX", default=None, help="also score Robust Video Matting (rvm_mobilenetv3_fp32.onnx)")
    p.add_argument("--compare-modnet", metavar="ONNX", default=None, help="also score MODNet (modnet.onnx)")
    p.add_argument("--compare-mediapipe", metavar="TFLITE", default=None,
                   help="also score MediaPipe selfie segmentation (selfie_segmentation.tflite; needs ai-edge-litert)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--json", metavar="OUT", default=None, help="write per-image and mean metrics to this JSON file")
    p.set_defaults(func=run)
    return p


def load_baselines(args: argparse.Namespace) -> dict[str, object]:
    """{table name: model with .matte(rgb)} for every --compare-* file given (VmatteError if one is bad)."""
    import importlib

    out = {}
    for key, (name, module, cls) in BASELINES.items():
        path = getattr(args, f"compare_{key}")
        if path:
            out[name] = getattr(importlib.import_module(module), cls)(path)
    return out


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..errors import VmatteError
    from ..evaluate import evaluate_dir, find_pairs, format_table

    n = len(find_pairs(args.dir, args.limit))  # fail on a bad folder before loading any model
    if args.json and Path(args.json).is_dir():
        raise VmatteError(f"--json {args.json} is a folder; give a file path such as {Path(args.json) / 'eval.json'}")
    baselines = load_baselines(args)  # bad files fail here, before the evaluation runs

    def score(name: str, fn):
        bar = lambda items: tqdm(items, desc=name, total=n, unit="img", leave=False)  # noqa: E731
        results[name] = evaluate_dir(args.dir, fn, args.limit, progress=bar, masks=args.masks)

    from ..api import Matter

    kwargs = {"model": args.model, "backend": args.backend, "precision": args.precision}
    if args.size is not None:
        kwargs["size"] = args.size
    if args.weights is not None:
        kwargs["weights"] = args.weights
    if args.refine_patches is not None:
        kwargs["refine_patches"] = args.refine_patches
    results = {}
    matter = Matter(**kwargs)
    try:
        score(f"vmatte {args.model} ({matter.backend_name}{', int8' if args.precision == 'int8' else ''})", matter.matte)
        if args.compare_mask:
            score(f"{args.model} segmenter mask", matter.segment)
    finally:
        matter.close()
    for name, model in baselines.items():
        score(name, model.matte)
    print(format_table(results))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({k: r.to_dict() for k, r in results.items()}, indent=2))
    return 0
