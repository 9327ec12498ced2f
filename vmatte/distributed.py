"""Batches on a Ray cluster (`vmatte process --ray`): one Ray task per file.

Each task asks Ray for its resources (CPUs for its matting threads; a GPU for the GPU backends),
builds the model once per Ray worker process (cached for the next file it gets), and writes its
output itself, atomically, to the path the driver gave: inputs and outputs must be on storage that
every node mounts at the same path. Ray retries a task whose worker process died (max_retries);
errors of the file itself (a corrupt input) are results, not retried. Frame counts stream back
through a small actor that the driver polls for the progress bar.

Ray is optional (`pip install "vmatte[ray]"`) and imported only here, only when asked for.
"""
from __future__ import annotations

import logging
import os
from contextlib import suppress
from typing import Callable

from .batch import GPU_BACKENDS, Job, JobResult, one_line, run_job, throttled
from .errors import VmatteError

log = logging.getLogger(__name__)

PROGRESS_EVERY = 0.5  # seconds between a task's frame-count updates
_MATTERS: dict = {}  # per Ray worker process: (factory, visible GPUs) -> built model


def import_ray():
    """Ray, or a one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise VmatteError('--ray needs Ray, which is not installed; pip install "vmatte[ray]"') from None
    return ray


class _Tracker:
    """Actor: per running file, how many times a task started on it, where, and its latest frame
    count. The driver drops files once it has their result (forget): a snapshot holds only the
    files running, not every file of the batch."""

    def __init__(self):
        self.frames: dict[int, tuple[int, int | None]] = {}
        self.starts: dict[int, int] = {}
        self.nodes: dict[int, str] = {}

    def started(self, i: int, node: str) -> None:
        self.starts[i] = self.starts.get(i, 0) + 1
        self.nodes[i] = node
        self.frames[i] = (0, None)

    def update(self, i: int, done: int, total: int | None) -> None:
        if i in self.starts:  # not an update that arrives after forget
            self.frames[i] = (done, total)

    def forget(self, indices: list[int]) -> None:
        for i in indices:
            self.frames.pop(i, None)
            self.starts.pop(i, None)
            self.nodes.pop(i, None)

    def snapshot(self):
        return self.frames, self.starts, self.nodes


def _matter(factory):
    key = (factory, os.environ.get("CUDA_VISIBLE_DEVICES"))
    try:
        hash(key)
    except TypeError:  # an unhashable factory: build it for every file
        return factory()
    if key not in _MATTERS:
        _MATTERS[key] = factory()
    return _MATTERS[key]


def _task(index: int, job: Job, matter, threads: int, opts: dict, tracker) -> JobResult:
    """One file on a Ray worker."""
    import ray

    node = ray.util.get_node_ip_address()
    ray.get(tracker.started.remote(index, node))
    where = f"on node {node}; inputs and outputs must be on storage every node mounts at the same path"
    if not job.input.exists():
        return JobResult(str(job.input), str(job.output), "failed", f"input not found {where}")
    if not job.output.parent.is_dir():
        return JobResult(str(job.input), str(job.output), "failed", f"output folder {job.output.parent} not found {where}")
    try:
        built = _matter(matter)
    except Exception as e:  # noqa: BLE001
        return JobResult(str(job.input), str(job.output), "failed", f"cannot build the model: {one_line(e)}")
    frames = throttled(lambda done, total: tracker.update.remote(index, done, total), PROGRESS_EVERY)
    return run_job(job, matter=built, threads=threads, progress=frames, **opts)


def task_resources(backend: str, threads: int, cluster: dict, gpus_per_task: float | None = None) -> dict:
    """Ray resources for one file: `threads` CPUs, and one GPU for a GPU backend (for "auto"
    when the cluster has GPUs), unless gpus_per_task says otherwise."""
    if gpus_per_task is None:
        gpus_per_task = 1 if backend in GPU_BACKENDS or (backend == "auto" and cluster.get("GPU", 0) > 0) else 0
    return {"num_cpus": threads, "num_gpus": gpus_per_task}


def _check_fits(ray, res: dict) -> None:
    """A task no node can hold would wait forever: refuse it now, in one line."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for key, name, opt in (("num_cpus", "CPU", "--threads"), ("num_gpus", "GPU", "--ray-gpus")):
        most = max((n.get(name, 0) for n in nodes), default=0)
        if res[key] > most:
            raise VmatteError(f"each task asks for {res[key]:g} {name}s but no node of the Ray cluster has more than "
                              f"{most:g}; lower {opt} or add such nodes")


def _connect(ray, address: str) -> bool:
    """Connect (address 'auto' or HOST:PORT / ray://...) or start a private local cluster
    ('local'); return whether this call started Ray (and so must shut it down)."""
    if ray.is_initialized():
        return False
    try:
        if address == "local":
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False)
        else:
            ray.init(address=address)
    except ConnectionError as e:
        raise VmatteError(f"cannot reach a Ray cluster at {address!r} ({one_line(e)[:120]}); start one with "
                          "`ray start --head`, give its address, or use --ray local") from None
    return True


def _failure(ray, e: Exception, attempts: int) -> str:
    if isinstance(e, ray.exceptions.TaskCancelledError):
        return "cancelled"
    if isinstance(e, ray.exceptions.RayTaskError):
        return one_line(e.cause if e.cause is not None else e)
    return f"the Ray worker died mid-file, {attempts} time{'s' if attempts != 1 else ''} ({type(e).__name__})"


def run_on_ray(todo: list[tuple[int, Job]], *, address: str, matter: Callable[[], object], threads: int | None,
               gpus_per_task: float | None, retries: int, opts: dict,
               on_frames: Callable[[int, int, int | None], None], on_result: Callable[[int, JobResult], None]) -> str:
    """Run (index, job) pairs as Ray tasks; report through on_frames / on_result. Returns a
    description of the cluster used (for the report). threads None: 2 CPUs a file (as the local
    default, vmatte.batch.cpu_plan), or what the largest node has if less."""
    ray = import_ray()
    started = _connect(ray, address)
    try:
        if threads is None:
            most = max((n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1)
            threads = max(1, min(2, int(most)))
        res = task_resources(getattr(matter, "backend", "auto"), threads, ray.cluster_resources(), gpus_per_task)
        _check_fits(ray, res)
        tracker = ray.remote(num_cpus=0)(_Tracker).remote()
        task = ray.remote(max_retries=retries, retry_exceptions=False)(_task).options(**res)
        refs = {}
        for i, job in todo:  # absolute paths: a task's working folder is not the driver's
            job = Job(job.input.resolve(), job.output.resolve(), job.background, job.output_kind, job.where, job.redo)
            refs[task.remote(i, job, matter, threads, opts, tracker)] = (i, job)
        nodes = len([n for n in ray.nodes() if n.get("Alive")])
        what = (f"Ray at {address}: {nodes} node{'s' if nodes != 1 else ''}, {res['num_cpus']:g} CPU"
                + (f" + {res['num_gpus']:g} GPU" if res["num_gpus"] else "") + " per file")
        log.info("batch: %d files as Ray tasks (%s)", len(todo), what)
        pending, reported = list(refs), {}
        running = {i for i, _ in refs.values()}  # files whose task has not returned
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
                frames, starts, where = ray.get(tracker.snapshot.remote())
                done = [refs[r][0] for r in ready]
                running.difference_update(done)
                for i in done:
                    reported.pop(i, None)
                if done:
                    tracker.forget.remote(done)  # ordered before the next snapshot (same caller)
                for i, f in frames.items():
                    if i in running and reported.get(i) != f:
                        reported[i] = f
                        on_frames(i, *f)
                for ref in ready:
                    i, job = refs[ref]
                    try:
                        r = ray.get(ref)
                    except ray.exceptions.RayError as e:
                        r = JobResult(str(job.input), str(job.output), "failed", _failure(ray, e, starts.get(i, 0)))
                    r.attempts, r.worker = starts.get(i, r.attempts), f"Ray node {where.get(i, '?')}"
                    on_result(i, r)
        except KeyboardInterrupt:  # stop the tasks still running; the caller removes their partial files
            for ref in pending:
                ray.cancel(ref, force=True)
            ready, _ = ray.wait(pending, num_returns=len(pending), timeout=10)
            for ref in ready:  # a file that finished meanwhile is reported as done, not as not run
                try:
                    r = ray.get(ref)
                except ray.exceptions.RayError:
                    continue
                with suppress(KeyboardInterrupt):
                    on_result(refs[ref][0], r)
            raise
        return what
    finally:
        if started:
            ray.shutdown()
