"""Batch jobs: many inputs in one `vmatte process` run, each output written atomically.

A batch is a list of Jobs (input -> output, with optional per-file background and output kind)
from paths, globs, folders of videos or a manifest. It is checked as a whole before any work (a
typo in a manifest, such as an input that does not exist, fails at once), then run by local worker
processes (vmatte.workers) or by Ray tasks (vmatte.distributed). One file failing does not stop the
others: each ends done, skipped (--resume: its output is already complete) or failed with a
one-line reason, in a BatchReport.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from .errors import VmatteError
from .io import sinks as _sinks
from .io.sources import IMAGE_EXTS, VIDEO_EXTS, _natural_key, source_kind

log = logging.getLogger(__name__)

MEDIA_EXTS = IMAGE_EXTS | VIDEO_EXTS
STATUSES = ("done", "skipped", "failed", "pending")
GPU_BACKENDS = ("torch-cuda", "tensorrt")  # backends that put the model on a GPU (vmatte.workers, vmatte.distributed)


@dataclass(frozen=True)
class Job:
    """One file of a batch. background / output_kind None: the batch's default. where: the
    manifest line it came from, for messages. redo: its output exists but is not complete."""

    input: Path
    output: Path
    background: str | None = None
    output_kind: str | None = None
    where: str = ""
    redo: bool = False


@dataclass
class JobResult:
    """How one file ended: status done | skipped | failed | pending (not run: interrupted)."""

    input: str
    output: str
    status: str
    reason: str = ""
    frames: int = 0
    seconds: float = 0.0
    attempts: int = 0
    worker: str = ""


@dataclass
class BatchReport:
    """Every file's result, in the batch's order, and the batch's wall time."""

    results: list[JobResult]
    seconds: float = 0.0
    interrupted: bool = False
    workers: str = ""

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in STATUSES}

    @property
    def ok(self) -> bool:
        c = self.counts()
        return not self.interrupted and c["failed"] == 0 and c["pending"] == 0

    def to_dict(self) -> dict:
        return {"ok": self.ok, "interrupted": self.interrupted, "seconds": round(self.seconds, 3),
                "workers": self.workers, "summary": self.counts(), "files": [asdict(r) for r in self.results]}

    def write(self, path: str | Path) -> Path:
        """Write the report as JSON, atomically (temporary name, then rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
        try:
            tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise VmatteError(f"cannot write the report {path} ({e.strerror or e}); choose another --report path") from None
        return path


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a batch: carries the report of what finished before it."""

    def __init__(self, report: BatchReport):
        super().__init__("batch interrupted")
        self.report = report


@dataclass(frozen=True)
class MatterSpec:
    """A picklable recipe for the model: each worker process (or Ray task) builds its own."""

    model: str = "rt"
    backend: str = "auto"
    size: int | None = None
    weights: str | None = None
    precision: str = "fp32"
    refine_patches: int | None = None  # the refiner's cell budget (onnxruntime); None: the model's

    def __call__(self):
        try:
            from .api import Matter
        except ImportError as e:
            raise VmatteError(f"cannot load the matting model ({e}); reinstall vmatte") from None
        kw = {"weights": self.weights} if self.weights else {}
        return Matter(model=self.model, backend=self.backend, size=self.size, precision=self.precision,
                      refine_patches=self.refine_patches, **kw)


@dataclass
class Progress:
    """The batch so far, passed to the progress callback: files in the batch, finished (done,
    skipped or failed), failed, frames written, running {job index: (frames done, total or None)}
    and the result that just came in (None for frame updates)."""

    files: int
    finished: int = 0
    failed: int = 0
    frames: int = 0
    running: dict[int, tuple[int, int | None]] = field(default_factory=dict)
    last: JobResult | None = None


# -- collecting jobs -------------------------------------------------------------------------------

def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def _videos_in(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in VIDEO_EXTS]


def wants_batch(inputs: list[str], manifest: str | None = None) -> bool:
    """Whether these command-line inputs are a batch: several, a glob, a folder holding videos, or a manifest."""
    if manifest or len(inputs) > 1:
        return True
    return any((_has_magic(s) and not Path(s).exists()) or (Path(s).is_dir() and _videos_in(Path(s))) for s in inputs)


def expand_inputs(specs: list[str]) -> list[Path]:
    """Paths, globs and folders -> input files (a folder holding videos gives its videos and images;
    a folder of images only stays one input, an image sequence). A path that does not exist or a
    glob that matches nothing is an error: on a command line it is a typo."""
    found: list[Path] = []
    for s in specs:
        p = Path(s)
        if p.exists():
            matches = [p]
        elif _has_magic(s):
            import glob

            matches = sorted((Path(m) for m in glob.glob(s, recursive=True)), key=_natural_key)
            media = [m for m in matches if m.is_dir() or m.suffix.lower() in MEDIA_EXTS]
            if len(media) < len(matches):
                log.info("%s: skipping %d files that are not videos or images", s, len(matches) - len(media))
            if not media:
                raise VmatteError(f"no video or image matches {s!r}; check the pattern")
            matches = media
        else:
            raise VmatteError(f"input not found: {s}; check the path")
        for m in matches:
            if m.is_dir() and _videos_in(m):
                found += sorted((f for f in m.iterdir() if f.is_file() and not f.name.startswith(".")
                                 and f.suffix.lower() in MEDIA_EXTS), key=_natural_key)
            else:
                found.append(m)
    return found


def default_output_ext(inp: Path, needs_alpha: bool) -> str:
    """The output extension when the user gives a folder only: the input's own when vmatte writes
    it (and it can hold alpha where needed), else .mov / .mp4 for videos and .png for images."""
    kind, ext = source_kind(inp), inp.suffix.lower()
    if kind == "folder":
        return ""
    writable = _sinks.VIDEO_OUT_EXTS if kind == "video" else _sinks.IMAGE_OUT_EXTS
    if ext in writable and (not needs_alpha or ext in _sinks.ALPHA_EXTS):
        return ext
    if kind == "image":
        return ".png"
    return ".mov" if needs_alpha else ".mp4"


def jobs_into_folder(inputs: list[Path], out_dir: str | Path, *, output_ext: str | None = None,
                     needs_alpha: bool = False) -> list[Job]:
    """One job per input, written into `out_dir` under the input's name (extension: output_ext,
    else default_output_ext)."""
    out_dir = Path(out_dir)
    if out_dir.suffix.lower() in _sinks.VIDEO_OUT_EXTS | _sinks.IMAGE_OUT_EXTS and not out_dir.is_dir():
        raise VmatteError(f"several inputs are written into a folder, so -o must be a folder, got {out_dir}; "
                          "or name each output in a --manifest")
    if output_ext is not None and output_ext and not output_ext.startswith("."):
        output_ext = "." + output_ext
    jobs = []
    for inp in inputs:
        if inp.is_dir():  # an image sequence: a folder of the same name
            jobs.append(Job(inp, out_dir / inp.name))
            continue
        ext = default_output_ext(inp, needs_alpha) if output_ext is None else output_ext
        jobs.append(Job(inp, out_dir / (inp.stem + ext)))
    return jobs


def read_manifest(path: str | Path) -> list[Job]:
    """Jobs from a manifest: lines `INPUT -> OUTPUT` (# comments, blank lines skipped), or JSON
    lines {"input", "output", optional "background", "output_kind"}. Relative paths are taken
    from the manifest's folder."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise VmatteError(f"cannot read the manifest {path} ({e.strerror or e}); check the path") from None
    base = path.parent
    jobs = []
    for n, raw in enumerate(lines, 1):
        line, where = raw.strip(), f"{path.name} line {n}"
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            jobs.append(_json_job(line, where, base))
            continue
        parts = [s.strip() for s in line.split("->")]
        if len(parts) != 2 or not all(parts):
            raise VmatteError(f"{where}: expected 'INPUT -> OUTPUT' or a JSON object, got {line[:80]!r}; fix that line")
        jobs.append(Job(base / parts[0], base / parts[1], where=where))
    if not jobs:
        raise VmatteError(f"the manifest {path} lists no files; add lines 'INPUT -> OUTPUT'")
    return jobs


_JSON_KEYS = {"input", "output", "background", "output_kind"}


def _json_job(line: str, where: str, base: Path) -> Job:
    try:
        d = json.loads(line)
    except json.JSONDecodeError as e:
        raise VmatteError(f"{where}: not valid JSON ({e.msg} at column {e.colno}); fix that line") from None
    if not isinstance(d, dict) or not {"input", "output"} <= d.keys() or d.keys() - _JSON_KEYS:
        got = ", ".join(sorted(d)) if isinstance(d, dict) else type(d).__name__
        raise VmatteError(f"{where}: a JSON line needs keys input and output (optional: background, output_kind), "
                          f"got {got}; fix that line")
    for key in ("input", "output"):
        if not isinstance(d[key], str) or not d[key].strip():
            raise VmatteError(f"{where}: {key} must be a path (a non-empty string), got {json.dumps(d[key])[:40]}; "
                              "fix that line")
    for key in ("background", "output_kind"):
        if not isinstance(d.get(key), (str, type(None))):
            raise VmatteError(f"{where}: {key} must be a string or null, got {json.dumps(d[key])[:40]}; fix that line")
    bg = d.get("background")
    if bg and (base / bg).exists():  # a background file beside the manifest
        bg = str(base / bg)
    return Job(base / d["input"], base / d["output"], bg, d.get("output_kind"), where=where)


# -- checking ---------------------------------------------------------------------------------------

def is_complete(out: Path) -> bool:
    """Whether an existing output is complete. Outputs appear under their name only when whole
    (atomic rename), so this only guards against files left by other tools: empty, or a video
    without a video stream."""
    if out.is_dir():
        return any(not p.name.startswith(".") for p in out.iterdir())
    if not out.is_file() or out.stat().st_size == 0:
        return False
    if _sinks.sink_kind(out) != "video":
        return True
    import av

    try:
        with av.open(str(out)) as c:
            return bool(c.streams.video) and (c.streams.video[0].frames > 0 or (c.duration or 0) > 0)
    except Exception:  # noqa: BLE001 - unreadable: not complete
        return False


def check_jobs(jobs: list[Job], *, background: str | None = "blur", output_kind: str = "composite",
               resume: bool = False, overwrite: bool = False) -> tuple[list[tuple[int, Job]], list[tuple[int, JobResult]]]:
    """Check the batch as a whole before any work and split it: ([(index, job to run)],
    [(index, result)] of the files skipped because their output is complete). Raises VmatteError (one line) for what would
    make many files fail the same way or clobber each other: an unknown kind or background, an
    output the input cannot be written as, two jobs writing one output, an output that is an
    input, outputs that exist without --resume or --overwrite, inputs that do not exist (a typo;
    not checked for files --resume skips)."""
    from .backgrounds import parse_background
    from .process import _check_kinds

    if resume and overwrite:
        raise VmatteError("--resume keeps complete outputs and --overwrite replaces them; pass one of the two")
    if not jobs:
        raise VmatteError("the batch has no files; give videos, images, folders or a --manifest")
    bgs: dict[str | None, object] = {}
    missing: set[int] = set()
    try:
        seen: dict[Path, Job] = {}
        inputs = {j.input.resolve() for j in jobs}
        for n, j in enumerate(jobs):
            at = f"{j.where}: " if j.where else ""
            if not j.input.exists():  # refused below unless --resume skips it
                missing.add(n)
            spec = j.background if j.background is not None else background
            if spec not in bgs:
                try:
                    bgs[spec] = parse_background(spec)
                except VmatteError as e:
                    raise VmatteError(f"{at}{e}") from None
            try:
                if n not in missing:  # a missing input's kind is unknown
                    _check_kinds(j.input, j.output, j.output_kind or output_kind, bgs[spec])
            except VmatteError as e:
                raise VmatteError(f"{at}{e}") from None
            key = j.output.resolve()
            if key in seen:
                raise VmatteError(f"{at}{j.input} and {seen[key].input} would both write {j.output}; "
                                  "give them different outputs (a --manifest names each)")
            if key in inputs:
                raise VmatteError(f"{at}output {j.output} is an input of this batch; choose another output name")
            seen[key] = j
    finally:
        for bg in bgs.values():
            bg.close()
    todo, skipped, clash = [], [], []
    for i, j in enumerate(jobs):
        if not (j.output.exists() and not overwrite):
            todo.append((i, j))
        elif not resume:
            clash.append(j.output)
        elif is_complete(j.output):
            skipped.append((i, JobResult(str(j.input), str(j.output), "skipped", "output already complete")))
        else:
            log.info("%s exists but is not complete: making it again", j.output)
            todo.append((i, replace(j, redo=True)))
    gone = [j for i, j in todo if i in missing]
    if gone:
        at = f"{gone[0].where}: " if gone[0].where else ""
        more = f" and {len(gone) - 1} more" if len(gone) > 1 else ""
        raise VmatteError(f"{at}input not found: {gone[0].input}{more}; check the path"
                          + (" (or remove that line from the manifest)" if gone[0].where else ""))
    if clash:
        more = f" and {len(clash) - 1} more" if len(clash) > 1 else ""
        raise VmatteError(f"output {clash[0]}{more} already exist{'s' if len(clash) == 1 else ''}; pass --resume to "
                          "skip complete outputs or --overwrite to replace them")
    return todo, skipped


# -- running ----------------------------------------------------------------------------------------

def one_line(e: BaseException) -> str:
    """An exception as one line: VmatteError's message as it is, others with their type."""
    msg = " ".join(str(e).split())
    if not isinstance(e, VmatteError):
        msg = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    return msg[:400]


def run_job(job: Job, *, matter, background: str | None, output_kind: str, overwrite: bool = False,
            threads: int | None = None, progress: Callable[[int, int | None], None] | None = None,
            **process_options) -> JobResult:
    """Process one file with an already built matter; any error becomes a failed result (Ctrl-C
    still propagates). The sink removes its temporary file on every error. process_options go to
    vmatte.process.process as they are."""
    from .process import process

    t0 = time.perf_counter()
    res = JobResult(str(job.input), str(job.output), "failed", attempts=1)
    try:
        r = process(job.input, job.output, matter=matter,
                    background=job.background if job.background is not None else background,
                    output_kind=job.output_kind or output_kind, overwrite=overwrite or job.redo,
                    progress=progress, threads=threads, **process_options)
        res.status, res.frames = "done", r.frames
    except Exception as e:  # noqa: BLE001 - one file's failure is reported, the batch goes on
        log.debug("%s failed", job.input, exc_info=True)
        res.reason = one_line(e)
    res.seconds = time.perf_counter() - t0
    return res


def throttled(send: Callable[[int, int | None], None], every: float) -> Callable[[int, int | None], None]:
    """A progress callback (done, total) that passes updates on to `send` at most once every
    `every` seconds, and always the last frame."""
    last = -float("inf")

    def frames(done: int, total: int | None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= every or done == total:
            last = now
            send(done, total)

    return frames


def cpu_plan(cores: int, files: int, workers: int | None = None, threads: int | None = None) -> tuple[int, int]:
    """(workers, threads each) for a CPU batch: files side by side, each matting `threads` frames
    at once. By default one worker per two cores, the cores shared among them: on 2 cores one
    worker with 2 threads matched two 1-thread workers in files per minute, used 4-10% less CPU
    per file in each of three rounds (docs/benchmarks.md) and holds one model instead of two.
    Never more workers than files."""
    if workers is None:
        workers = max(1, cores // (threads or 2))
    workers = max(1, min(workers, files))
    if threads is None:
        threads = max(1, cores // workers)
    return workers, threads


def run_batch(jobs: list[Job], *, matter: Callable[[], object] | None = None, background: str | None = "blur",
              output_kind: str = "composite", resume: bool = False, overwrite: bool = False,
              workers: int | None = None, threads: int | None = None, devices: list[str] | None = None,
              retries: int = 2, ray: str | None = None, gpus_per_task: float | None = None,
              progress: Callable[[Progress], None] | None = None, process_options: dict | None = None) -> BatchReport:
    """Run a batch and return its report (raises BatchInterrupted, carrying the report, on Ctrl-C).

    matter: a picklable zero-argument factory (default MatterSpec()): every worker builds its own
    model once. Locally the files run in `workers` processes x `threads` matting threads (default
    cpu_plan), or one process per GPU in `devices` (CUDA device ids). ray: None (local), "local",
    "auto" or a cluster address: one Ray task per file (vmatte.distributed). A worker that dies
    mid-file is replaced and its file retried up to `retries` times; nothing partial is left.
    process_options: more keyword arguments of vmatte.process.process, the same for every file.
    progress(Progress) is called as frames and files finish."""
    if matter is None:
        matter = MatterSpec()
    if not isinstance(matter, type) and hasattr(matter, "matte"):
        raise TypeError("run_batch takes a picklable model factory (e.g. MatterSpec(model='rt')), not a built "
                        "model: every worker process builds its own")
    if retries < 0:
        raise VmatteError(f"--retries {retries} is negative; give 0 or more")
    if ray is not None and devices:
        raise VmatteError("--devices picks this machine's GPUs; with --ray each task asks Ray for a GPU instead: drop --devices")
    todo, skipped = check_jobs(jobs, background=background, output_kind=output_kind, resume=resume, overwrite=overwrite)
    opts = dict(process_options or {}, background=background, output_kind=output_kind, overwrite=overwrite)
    results: dict[int, JobResult] = dict(skipped)
    state = Progress(files=len(jobs), finished=len(skipped))

    def on_frames(i: int, done: int, total: int | None) -> None:
        state.running[i] = (done, total)
        state.frames = sum(d for d, _ in state.running.values()) + sum(r.frames for r in results.values())
        state.last = None
        if progress is not None:
            progress(state)

    def on_result(i: int, r: JobResult) -> None:
        results[i] = r
        state.running.pop(i, None)
        state.finished += 1
        state.failed += r.status == "failed"
        state.frames = sum(d for d, _ in state.running.values()) + sum(x.frames for x in results.values())
        state.last = r
        if r.status == "failed":
            _remove_partial(Path(r.output))
            log.info("%s failed: %s", r.input, r.reason)
        if progress is not None:
            progress(state)

    t0 = time.perf_counter()
    report = BatchReport([])
    try:
        if not todo:
            report.workers = "none (nothing to do)"
        elif ray is not None:
            from .distributed import run_on_ray

            report.workers = run_on_ray(todo, address=ray, matter=matter, threads=threads,
                                        gpus_per_task=gpus_per_task, retries=retries, opts=opts,
                                        on_frames=on_frames, on_result=on_result)
        else:
            from .workers import run_local

            report.workers = run_local(todo, matter=matter, workers=workers, threads=threads, devices=devices,
                                       retries=retries, opts=opts, on_frames=on_frames, on_result=on_result)
    except KeyboardInterrupt:
        report.interrupted = True
        raise BatchInterrupted(_finish(report, jobs, results, t0)) from None
    except BaseException:  # e.g. the model cannot be built: stop, leaving nothing partial
        _finish(report, jobs, results, t0)
        raise
    return _finish(report, jobs, results, t0)


def _finish(report: BatchReport, jobs: list[Job], results: dict[int, JobResult], t0: float) -> BatchReport:
    for i, j in enumerate(jobs):
        if i not in results:  # interrupted before it finished: make sure nothing partial is left
            _remove_partial(j.output)
    report.results = [results.get(i) or JobResult(str(j.input), str(j.output), "pending", "not run: the batch was interrupted")
                      for i, j in enumerate(jobs)]
    report.seconds = time.perf_counter() - t0
    return report


def _remove_partial(out: Path) -> None:
    """Remove what a worker that died (or was stopped) mid-file left at the output's temporary name."""
    import shutil

    try:
        tmp = _sinks.partial_path(out)
    except VmatteError:
        return
    try:
        if tmp.is_dir():
            shutil.rmtree(tmp)
        elif tmp.exists():
            tmp.unlink()
        else:
            return
        log.info("removed the partial output %s", tmp)
    except OSError as e:
        log.warning("could not remove the partial output %s (%s)", tmp, e)
