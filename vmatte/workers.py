"""Local batch workers: one process per slot (CPU workers, or one per GPU), each building its
model once and taking files one at a time from the parent.

Processes rather than threads: a decoder or model that crashes (or is killed for memory) takes one
worker with it, not the batch. The parent sees the death, removes what the file left half-written,
starts a fresh worker and retries the file. Spawned, not forked: the parent may hold threads
(progress bar, Ray) that a fork would copy in an unknown state.
"""
from __future__ import annotations

import glob
import logging
import multiprocessing as mp
import os
import signal
import time
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Callable

from .batch import GPU_BACKENDS, Job, JobResult, cpu_plan, one_line, run_job, throttled
from .errors import VmatteError

log = logging.getLogger(__name__)

PROGRESS_EVERY = 0.2  # seconds between a worker's frame-count messages


def _stop(signum, frame):  # SIGTERM from the parent: unwind like Ctrl-C so the sink drops its file
    raise KeyboardInterrupt


def _serve(conn, matter, threads: int, device: str | None, opts: dict) -> None:
    """A worker's loop: receive (index, job), send ('frames', index, done, total) now and then
    and ('result', index, JobResult) at the end; ('fatal', index, reason) when the model cannot be
    built (every file would fail alike). None from the parent ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    signal.signal(signal.SIGTERM, _stop)
    from .memory import keep_freed_buffers

    keep_freed_buffers()  # as the CLI process does (a spawned worker starts with glibc's defaults)
    if device is not None:  # before anything imports torch: the worker sees its GPU as device 0
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    built = None
    try:
        while (msg := conn.recv()) is not None:
            index, job = msg
            if built is None:
                try:
                    built = matter()
                except Exception as e:  # noqa: BLE001
                    conn.send(("fatal", index, one_line(e)))
                    return
            frames = throttled(lambda done, total, index=index: conn.send(("frames", index, done, total)), PROGRESS_EVERY)
            conn.send(("result", index, run_job(job, matter=built, threads=threads, progress=frames, **opts)))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass


@dataclass
class _Slot:
    label: str
    device: str | None
    proc: mp.process.BaseProcess | None = None
    conn: object = None
    job: tuple[int, Job] | None = None


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def default_devices(matter) -> list[str] | None:
    """The GPUs to give one worker each when the model runs on a GPU and the user named none:
    CPU-sized worker counts would pile several models onto one GPU. None for CPU backends (or a
    factory without a `backend`); on a machine without NVIDIA device nodes torch is not imported."""
    backend = getattr(matter, "backend", None)
    if backend not in ("auto", *GPU_BACKENDS) or (backend == "auto" and not glob.glob("/dev/nvidia[0-9]*")):
        return None
    from .backends import resolve_backend

    try:
        if resolve_backend(backend) not in GPU_BACKENDS:
            return None
        import torch

        n = torch.cuda.device_count()
    except (VmatteError, ImportError):
        return None  # the workers' own model build reports what is missing
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return (visible or [str(i) for i in range(n)])[:n] or None


def run_local(todo: list[tuple[int, Job]], *, matter: Callable[[], object], workers: int | None, threads: int | None,
              devices: list[str] | None, retries: int, opts: dict,
              on_frames: Callable[[int, int, int | None], None], on_result: Callable[[int, JobResult], None]) -> str:
    """Run (index, job) pairs in worker processes; report through on_frames / on_result. Returns
    a description of the workers used (for the report)."""
    if devices is None and workers is None:
        devices = default_devices(matter)
    if devices:
        if workers is not None and workers != len(devices):
            raise VmatteError(f"--devices {','.join(devices)} runs one worker per GPU; drop --workers {workers}")
        n, threads = min(len(devices), len(todo)), threads or 2
        slots = [_Slot(f"GPU {d}", d) for d in devices[:n]]
        what = f"{n} worker{'s' if n > 1 else ''}, one per GPU ({', '.join(devices[:n])})"
    else:
        n, threads = cpu_plan(os.cpu_count() or 1, len(todo), workers, threads)
        slots = [_Slot(f"worker {k + 1}", None) for k in range(n)]
        what = f"{n} worker{'s' if n > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}"
    log.info("batch: %d files on %s", len(todo), what)
    ctx = mp.get_context("spawn")
    queue = list(todo)
    attempts = {i: 0 for i, _ in todo}
    left = len(todo)

    def start(slot: _Slot) -> None:
        parent, child = ctx.Pipe()
        slot.proc = ctx.Process(target=_serve, args=(child, matter, threads, slot.device, opts), daemon=True,
                                name=f"vmatte-{slot.label.replace(' ', '')}")
        slot.proc.start()
        child.close()
        slot.conn, slot.job = parent, None

    def finish(slot: _Slot, result: JobResult) -> None:
        nonlocal left
        i, _ = slot.job
        result.attempts, result.worker = attempts[i], slot.label
        slot.job, left = None, left - 1
        on_result(i, result)

    def died(slot: _Slot) -> None:
        slot.proc.join(1)
        why = _death(slot.proc.exitcode)
        slot.conn.close()
        slot.proc = None
        if slot.job is None:
            return
        i, job = slot.job
        from .batch import _remove_partial

        _remove_partial(job.output)
        if attempts[i] <= retries:
            log.warning("%s: the worker process %s mid-file; retrying (attempt %d of %d)", job.input, why,
                        attempts[i] + 1, retries + 1)
            queue.insert(0, (i, job))
            slot.job = None
        else:
            finish(slot, JobResult(str(job.input), str(job.output), "failed",
                                   f"the worker process {why} mid-file, {attempts[i]} time{'s' if attempts[i] > 1 else ''}"))

    try:
        while left:
            for slot in slots:  # start workers and hand out files
                if slot.job is None and queue:
                    if slot.proc is None:
                        start(slot)
                    slot.job = queue.pop(0)
                    attempts[slot.job[0]] += 1
                    slot.conn.send(slot.job)
            busy = [s for s in slots if s.proc is not None]
            ready = wait([s.conn for s in busy] + [s.proc.sentinel for s in busy], timeout=1.0)
            for slot in busy:
                if slot.conn in ready:
                    try:
                        while slot.conn.poll():
                            msg = slot.conn.recv()
                            if msg[0] == "frames":
                                on_frames(msg[1], msg[2], msg[3])
                            elif msg[0] == "result":
                                finish(slot, msg[2])
                            else:  # fatal: the model cannot be built; every file would fail alike
                                raise VmatteError(msg[2])
                    except (EOFError, OSError):
                        pass  # the pipe closed: the sentinel says why
                if slot.proc is not None and slot.proc.sentinel in ready and not slot.proc.is_alive():
                    died(slot)
    finally:
        for slot, result in _shutdown(slots):  # files that finished while the batch was being stopped
            with suppress(KeyboardInterrupt):
                finish(slot, result)
    return what


def _shutdown(slots: list[_Slot]) -> list[tuple[_Slot, JobResult]]:
    """End every worker: idle ones get None; busy ones SIGTERM (their sink drops its file), then
    SIGKILL if they do not stop in time. Returns the results busy ones sent meanwhile; the caller
    removes anything still partial."""
    late = []
    for s in slots:
        if s.proc is None:
            continue
        try:
            if s.job is None:
                s.conn.send(None)
            else:
                s.proc.terminate()
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + 10
    for s in slots:
        if s.proc is None:
            continue
        s.proc.join(max(0.1, deadline - time.monotonic()))
        if s.proc.is_alive():
            s.proc.kill()
            s.proc.join(5)
        try:
            while s.job is not None and s.conn.poll():
                msg = s.conn.recv()
                if msg[0] == "result":
                    late.append((s, msg[2]))
        except (EOFError, OSError):
            pass
        s.conn.close()
        s.proc = None
    return late
