"""`vmatte sample OUT.mp4`: write a short clip of a real person to try `vmatte process` on."""
from __future__ import annotations

import argparse

HELP = "write a short sample clip of a person (a slow camera over a public-domain portrait, with a tone) to try vmatte on"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sample", help=HELP, description=HELP.capitalize() + ".")
    p.add_argument("output", nargs="?", default="sample.mp4", help="output .mp4, .mov or .mkv (default: sample.mp4)")
    p.add_argument("--seconds", type=float, default=4.0, help="length of the clip in seconds (default: 4)")
    p.add_argument("--size", default="640x360", help="WxH (default: 640x360)")
    p.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ..errors import VmatteError
    from ..sample import make_sample

    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise VmatteError(f"--size {args.size!r} is not WxH, e.g. 640x360") from None
    if w < 64 or h < 64 or w % 2 or h % 2:
        raise VmatteError(f"--size {args.size} must be even and at least 64x64")
    path = make_sample(args.output, args.seconds, (w, h), overwrite=args.overwrite)
    print(f"wrote {path}")
    return 0
