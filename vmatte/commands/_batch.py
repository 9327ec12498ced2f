"""`vmatte process` with several inputs: the batch options, the progress bar, the summary and the report."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ..errors import VmatteError

BATCH_ONLY = ("manifest", "resume", "report", "workers", "threads", "devices", "ray", "ray_gpus", "output_ext")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("batches (several inputs, a glob, a folder of videos, or --manifest)")
    g.add_argument("--manifest", metavar="FILE",
                   help="text file of 'INPUT -> OUTPUT' lines, or JSON lines {\"input\", \"output\", optional "
                        "\"background\", \"output_kind\"}; relative paths are from the manifest's folder")
    g.add_argument("--output-ext", metavar="EXT",
                   help="extension of the outputs written into the -o folder, for one input too (default: the "
                        "input's own, .mov/.png where alpha needs it)")
    g.add_argument("--resume", action="store_true", help="skip files whose output is already complete (after a crash)")
    g.add_argument("--report", metavar="PATH", help="write every file's status, reason and timing as JSON (an existing file: only with --overwrite)")
    g.add_argument("--workers", type=int, metavar="N", help="files processed side by side on this machine (default: from the core count)")
    g.add_argument("--threads", type=int, metavar="N", help="frames each file mattes at once (default: cores / workers)")
    g.add_argument("--devices", metavar="IDS", help="one worker per GPU, e.g. 0,1 (CUDA device ids)")
    g.add_argument("--retries", type=int, default=2, metavar="N", help="runs again a file whose worker process died, this many times (default: 2)")
    g.add_argument("--ray", metavar="ADDRESS",
                   help="one Ray task per file: auto (the running cluster), HOST:PORT, ray://HOST:10001, or local "
                        "(a private cluster on this machine); needs vmatte[ray] and paths every node sees")
    g.add_argument("--ray-gpus", type=float, metavar="N", help="GPUs each Ray task asks for (default: 1 for GPU backends, else 0)")


def wanted(args) -> bool:
    """Whether this `vmatte process` call is a batch (else the single-input path runs unchanged)."""
    from ..batch import wants_batch

    return wants_batch(args.input, args.manifest) or any(
        getattr(args, k) not in (None, False) for k in BATCH_ONLY)


def _positive(name: str, v: int | None) -> None:
    if v is not None and v < 1:
        raise VmatteError(f"--{name} {v} must be 1 or more")


def _jobs(args):
    from ..batch import Job, expand_inputs, jobs_into_folder, read_manifest, wants_batch
    from ..io import sinks

    if args.manifest:
        if args.input or args.output or args.output_ext is not None:
            raise VmatteError("--manifest names every input and output; drop the other inputs, -o and --output-ext")
        return read_manifest(args.manifest), None
    if not args.input:
        raise VmatteError("no input given; name videos, images, folders or globs, or a --manifest")
    if not args.output:
        raise VmatteError("-o/--output is required: the folder the outputs go into (created if missing)")
    out_dir = Path(args.output)
    if not wants_batch(args.input):
        if args.output_ext is None:  # one input with batch options: a batch of one, -o as given
            return [Job(Path(args.input[0]), out_dir)], None
        if out_dir.suffix.lower() in sinks.VIDEO_OUT_EXTS | sinks.IMAGE_OUT_EXTS and not out_dir.is_dir():
            raise VmatteError(f"--output-ext sets the extension of outputs written into the -o folder, but -o {out_dir} "
                              "names a file; give -o a folder or drop --output-ext")
    needs_alpha = args.output_kind == "rgba" or (args.output_kind == "composite"
                                                 and str(args.background).strip().lower() in ("transparent", "none", "alpha"))
    return jobs_into_folder(expand_inputs(args.input), out_dir, output_ext=args.output_ext, needs_alpha=needs_alpha), out_dir


def run(args) -> int:
    from ..backends import backend_for_precision
    from ..batch import BatchInterrupted, MatterSpec, run_batch

    for name in ("workers", "threads"):
        _positive(name, getattr(args, name))
    args.backend = backend_for_precision(args.backend, args.precision)  # int8: onnxruntime, CPU workers
    devices = None
    if args.devices is not None:
        devices = [d.strip() for d in args.devices.split(",")]
        if not all(devices) or len(set(devices)) != len(devices):
            raise VmatteError(f"--devices {args.devices!r} is not a list of distinct GPU ids; e.g. --devices 0,1")
        if args.backend in ("onnxruntime", "torch"):
            raise VmatteError(f"--devices runs one worker per GPU, which --backend {args.backend} does not use; "
                              "pick --backend torch-cuda or tensorrt (or auto)")
    if args.ray_gpus is not None and (args.ray is None or not args.ray_gpus >= 0):
        raise VmatteError(f"--ray-gpus {args.ray_gpus:g} needs --ray and a number of GPUs, 0 or more (e.g. 1 or 0.5)")
    if args.report and not Path(args.report).resolve().parent.is_dir():
        raise VmatteError(f"the folder of --report {args.report} does not exist; create it first")
    if args.report and Path(args.report).is_dir():
        raise VmatteError(f"--report {args.report} is a folder; give the path of a file")
    if args.report and Path(args.report).exists() and not args.overwrite:
        raise VmatteError(f"the report {args.report} already exists; pass --overwrite to replace it or choose another "
                          "--report path" + (" (--resume cannot be combined with --overwrite)" if args.resume else ""))
    if args.ray is not None:
        from ..distributed import import_ray

        import_ray()  # a missing extra fails here, in one line, before any work
    jobs, out_dir = _jobs(args)
    made = out_dir is not None and not out_dir.exists()
    if made:
        out_dir.mkdir(parents=True)
    extra = {"temporal": args.temporal == "on"}

    bar = None

    def progress(p):
        nonlocal bar
        if args.quiet:
            return
        if bar is not None and p.last is not None and p.last.status == "failed":  # at once, not only in the summary
            bar.write(f"vmatte: failed: {p.last.input}: {p.last.reason}", file=sys.stderr)
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=p.files, unit="file", dynamic_ncols=True, file=sys.stderr, desc="batch",
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total} files [{elapsed}<{remaining}{postfix}]")
        bar.n = p.finished + sum(d / t for d, t in p.running.values() if t)
        bar.set_postfix_str(f"{p.frames} frames" + (f", {p.failed} failed" if p.failed else ""), refresh=False)
        bar.refresh()

    def _terminate(signum, frame):  # `kill PID`: stop like Ctrl-C, leaving nothing half-written
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _terminate) if main else None
    interrupted = False
    try:
        report = run_batch(jobs, matter=MatterSpec(args.model, args.backend, args.size, precision=args.precision,
                                                   refine_patches=args.refine_patches),
                           background=args.background,
                           output_kind=args.output_kind, resume=args.resume, overwrite=args.overwrite,
                           workers=args.workers, threads=args.threads, devices=devices, retries=args.retries,
                           ray=args.ray, gpus_per_task=args.ray_gpus, progress=progress, process_options=extra)
    except BatchInterrupted as e:
        report, interrupted = e.report, True
    except BaseException:
        if made and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    finally:
        if bar is not None:
            bar.close()
        if main:
            signal.signal(signal.SIGTERM, old_term)
    c = report.counts()
    if not args.quiet or not report.ok:
        rate = f" ({60 * c['done'] / report.seconds:.1f} files/min)" if c["done"] and report.seconds > 0 else ""
        print(f"vmatte: batch of {len(report.results)} file{'s' if len(report.results) != 1 else ''} in "
              f"{report.seconds:.1f} s: {c['done']} done, {c['skipped']} skipped, {c['failed']} failed"
              + (f", {c['pending']} not run" if c["pending"] else "") + rate, file=sys.stderr)
        for r in report.results:
            if r.status == "failed":
                print(f"vmatte: failed: {r.input}: {r.reason}", file=sys.stderr)
    if args.report:
        print(f"vmatte: report written to {report.write(args.report)}", file=sys.stderr)
    if interrupted:
        print("vmatte: interrupted; finished outputs are kept, none is half-written; run again with --resume "
              "to do the rest", file=sys.stderr)
        return 130
    return 0 if report.ok else 1
