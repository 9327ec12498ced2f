"""Files per minute of `vmatte process` batches of short clips on one machine: a shell loop of
`vmatte process` (one process and one model load per file), the local batch with 1 and 2
workers, and the same batch through Ray on a private local cluster (its overhead against the
local run). The shipped `rt` model on onnxruntime, the sample clip's real person at 640x360.

Each configuration runs `--rounds` times, interleaved, so a neighbour's load spreads over all of
them; the table gives the best round, the JSON every round, the CPU model and the load average.
CPU seconds per file (this process, its reaped children, and for Ray its live processes read
from /proc before the cluster stops) count the work a configuration costs whatever else runs on
the machine.

    python benchmarks/batch.py [--files 8] [--seconds 2] [--rounds 2] [--out docs/benchmarks/batch.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vmatte.batch import MatterSpec, expand_inputs, jobs_into_folder, run_batch  # noqa: E402
from vmatte.sample import make_sample  # noqa: E402


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
    except Exception:  # noqa: BLE001
        return platform.processor() or "unknown"


def own_cpu() -> float:
    """CPU seconds of this process and its reaped children."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def live_descendants_cpu() -> float:
    """CPU seconds of this process's live descendants (Ray's GCS, raylet and workers), from /proc."""
    parent, ticks = {}, {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(d.name)], ticks[int(d.name)] = int(f[1]), int(f[11]) + int(f[12])
    mine, todo = set(), [os.getpid()]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in mine]
        mine.update(kids)
        todo += kids
    return sum(ticks[c] for c in mine) / os.sysconf("SC_CLK_TCK")


def shell_loop(clips: list[Path], out: Path) -> dict:
    """One `vmatte process` per file, one after another: what a user's for-loop does."""
    for c in clips:
        subprocess.run([sys.executable, "-m", "vmatte", "process", str(c), "-o", str(out / c.name), "-q"], check=True)
    return {"workers": "1 process per file, in turn", "failed": 0}


def local(clips: list[Path], out: Path, workers: int, threads: int) -> dict:
    rep = run_batch(jobs_into_folder(clips, out), matter=MatterSpec(), workers=workers, threads=threads)
    return {"workers": rep.workers, "failed": rep.counts()["failed"]}


def through_ray(clips: list[Path], out: Path, threads: int) -> dict:
    """A private cluster started and stopped inside the measurement (its start-up is timed apart)."""
    import ray

    t = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    start = time.perf_counter() - t
    try:
        rep = run_batch(jobs_into_folder(clips, out), matter=MatterSpec(), ray="auto", threads=threads)
        cpu = live_descendants_cpu()
    finally:
        ray.shutdown()
    return {"workers": rep.workers, "failed": rep.counts()["failed"], "ray_start_s": round(start, 2), "ray_cpu_s": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each clip")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--ray", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "batch.json")
    args = ap.parse_args()

    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="vmatte-batch-bench-"))
    try:
        src = work / "clips"
        src.mkdir()
        first = make_sample(src / "clip00.mp4", seconds=args.seconds)
        for i in range(1, args.files):  # the same clip under several names: every file costs the same
            shutil.copy(first, src / f"clip{i:02d}.mp4")
        clips = expand_inputs([str(src)])
        import av

        with av.open(str(first)) as c:
            frames = c.streams.video[0].frames
        configs = {"shell loop": lambda o: shell_loop(clips, o),
                   "local, 1 worker x 2 threads": lambda o: local(clips, o, 1, cores),
                   "local, 2 workers x 1 thread": lambda o: local(clips, o, 2, max(1, cores // 2))}
        if args.ray:
            configs["Ray, local cluster, 1 CPU a task"] = lambda o: through_ray(clips, o, max(1, cores // 2))
        runs: dict[str, list[dict]] = {k: [] for k in configs}
        for r in range(args.rounds):
            for name, fn in configs.items():
                out = work / f"out-{r}-{len(runs[name])}-{abs(hash(name)) % 10000}"
                out.mkdir()
                load0, cpu0, t0 = os.getloadavg()[0], own_cpu(), time.perf_counter()
                info = fn(out)
                wall = time.perf_counter() - t0
                cpu = own_cpu() - cpu0 + info.pop("ray_cpu_s", 0.0)
                runs[name].append(dict(info, wall_s=round(wall, 2), files_per_min=round(60 * args.files / wall, 1),
                                       fps=round(args.files * frames / wall, 1),
                                       cpu_s_per_file=round(cpu / args.files, 2), load_before=round(load0, 2)))
                print(f"round {r + 1}: {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
                shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    best = {k: min(v, key=lambda x: x["wall_s"]) for k, v in runs.items()}
    ref = best["local, 2 workers x 1 thread"]["wall_s"]
    result = {"cpu": cpu_model(), "cores": cores, "python": platform.python_version(),
              "files": args.files, "frames_per_file": frames, "clip": "vmatte sample, 640x360, 25 fps, H.264 + AAC",
              "model": "rt, onnxruntime", "rounds": args.rounds, "loadavg_end": [round(x, 2) for x in os.getloadavg()],
              "runs": runs}
    try:
        import ray

        result["ray"] = ray.__version__
    except ImportError:
        pass
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{result['cpu']}, {cores} cores; {args.files} clips of {frames} frames; best of {args.rounds} rounds\n")
    print("| run | workers | wall s | files/min | fps | CPU s per file | vs local 2 workers |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, b in best.items():
        extra = f" (cluster start {b['ray_start_s']} s)" if "ray_start_s" in b else ""
        print(f"| {name} | {b['workers']}{extra} | {b['wall_s']} | {b['files_per_min']} | {b['fps']} | "
              f"{b['cpu_s_per_file']} | {b['wall_s'] / ref:.2f}x |")


if __name__ == "__main__":
    main()
