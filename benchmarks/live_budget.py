"""The webcam loop with and without the refiner budget policy, alternating in one process
(docs/benchmarks.md, ninth session): `vmatte webcam`'s defaults on a 720p 30 fps file camera
("auto": the in-flight policy and the budget policy) against the same with the budget fixed at
the model's ("auto-fixed", as --refine-patches 32), each run `--seconds` long after one untimed
warm-up run; latency p95 over the whole run and after its first 5 s (while the policies adapt).

    python benchmarks/live_budget.py [--seconds 30] [--rounds 2] [--json docs/benchmarks/live_budget.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from live_latency import live_run, vmatte_matter  # noqa: E402

from vmatte.bench import system_info  # noqa: E402

KEYS = ("fps", "latency_ms_p50", "latency_ms_p95", "latency_ms_p95_after_5s", "dropped", "in_flight",
        "refine_patches", "refine_switches", "foreign_cores")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    args = argparse.Namespace(video=None, synthetic=False, width=1280, height=720, fps=30.0, seconds=a.seconds,
                              smoothing=0.8, model="rt", weights=None, random_init=False, backend="auto", size=None)
    name, m, why = vmatte_matter(args, 1)
    if m is None:
        raise SystemExit(f"{name}: {why}")
    live_run(argparse.Namespace(**{**vars(args), "seconds": 4.0}), m.matte, 1)  # the first live run is slower
    runs = []
    print("| mode | fps | p50 ms | p95 ms | p95 after 5 s | dropped | budget at the end (switches) |\n|---|---:|---:|---:|---:|---:|---|")
    for _ in range(a.rounds):
        for mode in ("auto", "auto-fixed"):
            r = live_run(args, m.matte, mode)
            runs.append({"mode": mode, **{k: r.get(k) for k in KEYS}})
            print(f"| {mode} | {r['fps']:.1f} | {r['latency_ms_p50']:.1f} | {r['latency_ms_p95']:.1f} | "
                  f"{r['latency_ms_p95_after_5s']:.1f} | {r['dropped']} | {r.get('refine_patches')} ({r.get('refine_switches')}) |",
                  flush=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"system": system_info(), "model": name, "seconds": a.seconds, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
