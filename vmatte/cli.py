"""Command line: thin argparse subcommands over the library API."""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from . import __version__
from .errors import VmatteError

COMMANDS = ("process", "webcam", "eval", "export", "bench", "doctor", "sample")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vmatte", description="Real-time portrait matting: replace, blur or remove backgrounds.")
    p.add_argument("--version", action="version", version=f"vmatte {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    import vmatte.commands as cmds

    available = {m.name for m in pkgutil.iter_modules(cmds.__path__)}
    for name in COMMANDS:
        if name in available:
            importlib.import_module(f"vmatte.commands.{name}").add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)], format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if getattr(args, "command", None) in ("process", "webcam"):  # the commands that stream frames
        from .memory import keep_freed_buffers

        keep_freed_buffers()  # frame buffers reused, not re-mapped every frame (vmatte/memory.py)
    try:
        return int(args.func(args) or 0)
    except VmatteError as e:
        print(f"vmatte: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vmatte: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
