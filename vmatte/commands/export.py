"""`vmatte export`: ONNX files, TensorRT engines or Torch-TensorRT programs from trained weights."""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export",
        help="export a model to ONNX, TensorRT or Torch-TensorRT",
        description="Export a model's three components. Examples: `vmatte export --format onnx`, "
        "`vmatte export --format tensorrt --sizes 1280x720,1920x1080` (prebuilds the engines the tensorrt backend uses).",
    )
    p.add_argument("--model", default="rt", help="model variant (default: rt)")
    p.add_argument("--weights", default=None, help="a vmatte .safetensors file (default: the shipped weights)")
    p.add_argument("--format", default="onnx", help="onnx, onnx-fp16, tensorrt or torch-tensorrt (default: onnx); --list-formats shows the table")
    p.add_argument("--sizes", default=None, help="frame sizes WIDTHxHEIGHT, comma separated, for TensorRT profiles (default: 1280x720,640x480,1920x1080; the first is the optimum)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the TensorRT profile (default: 1)")
    p.add_argument("--long-side", type=int, default=None, help="generator long side in pixels (default: the model's)")
    p.add_argument("--workspace", type=float, default=None, metavar="GB", help="TensorRT builder workspace limit in GiB (default: 4)")
    p.add_argument("--out", default=None, help="output folder (default: ./<name>_onnx for ONNX, the engine cache for TensorRT)")
    p.add_argument("--force", action="store_true", help="re-export / rebuild even when up-to-date files exist")
    p.add_argument("--list-formats", action="store_true", help="print the export formats and exit")
    p.set_defaults(func=run)
    return p


def _print_formats() -> None:
    from vmatte.export import export_formats

    print(f"{'format':<16}{'suffix':<9}{'GPU':<5}requirements / description")
    for row in export_formats():
        print(f"{row['format']:<16}{row['suffix']:<9}{'yes' if row['gpu'] else 'no':<5}{', '.join(row['requirements'])}: {row['description']}")


def run(args: argparse.Namespace) -> int:
    if args.list_formats:
        _print_formats()
        return 0
    from vmatte.export import FORMATS, check_requirements, export

    if args.format in FORMATS and FORMATS[args.format].gpu and args.sizes is not None:
        from vmatte.export.tensorrt import parse_sizes

        parse_sizes(args.sizes)  # a typo first, as export() does
    check_requirements(args.format)  # before the "building" line, which would promise work that cannot start
    if FORMATS[args.format].gpu:
        print(f"vmatte: building {args.format} (this takes a few minutes the first time)...", file=sys.stderr)
    paths = export(model=args.model, weights=args.weights, format=args.format, sizes=args.sizes, batch=args.batch, out_dir=args.out, workspace_gb=args.workspace, force=args.force, long_side=args.long_side)
    for comp, path in paths.items():
        print(f"{comp}: {path}")
    return 0
