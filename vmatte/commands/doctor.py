"""`vmatte doctor`: check the installation and say how to fix what is missing."""
from __future__ import annotations

import argparse
import json
import shutil
import textwrap

HELP = "check packages, GPU, CUDA/TensorRT, cameras, virtual cameras and weights; say how to fix gaps"
_LABEL = {"ok": "OK", "missing": "MISSING", "warn": "WARN", "info": "-"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("doctor", help=HELP, description=HELP.capitalize() + ". Exit status 0 when the "
                              "default CPU path works, 1 otherwise.")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--no-cameras", action="store_true", help="do not probe /dev/video* devices")
    p.add_argument("--model", default="rt", help="model whose shipped weights to check (default: rt)")
    p.set_defaults(func=run)
    return p


def format_table(checks) -> str:
    """A plain-text table: check | status | details (and the fix under anything not OK)."""
    name_w = max(len(c.name) for c in checks) if checks else 10
    width = shutil.get_terminal_size((120, 20)).columns
    lines, group = [], None
    for c in checks:
        if c.group != group:
            group = c.group
            lines.append(f"\n[{group}]")
        room = max(30, width - name_w - 14)
        detail = textwrap.wrap(c.detail, room) or [""]  # wrapped, not cut: the end often says what is off
        lines.append(f"  {c.name:<{name_w}}  {_LABEL.get(c.status, c.status):<7}  {detail[0]}")
        lines.extend(f"  {'':<{name_w}}  {'':<7}  {more}" for more in detail[1:])
        if c.fix and c.status != "ok":
            lines.append(f"  {'':<{name_w}}  {'':<7}  -> {c.fix}")
    return "\n".join(lines).lstrip("\n")


def run(args) -> int:
    from ..doctor import cpu_path_ok, run_checks

    checks = run_checks(cameras=not args.no_cameras, model=args.model)
    ok = cpu_path_ok(checks)
    if args.json:
        print(json.dumps({"cpu_path_ok": ok, "checks": [c.as_dict() for c in checks]}, indent=2))
    else:
        print(format_table(checks))
        bad = [c.name for c in checks if c.required and c.status != "ok"]
        print("\nvmatte can run on the CPU." if ok else f"\nvmatte cannot run yet: fix {', '.join(bad)} (see above).")
    return 0 if ok else 1
