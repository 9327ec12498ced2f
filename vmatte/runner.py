"""Pipelined execution: a source thread -> stage worker threads -> a sink in the calling thread.

Generic over stage callables, so the CPU path (decode | onnxruntime | composite | encode) and a
GPU path share one shape. Queues are bounded (memory stays bounded), sequence numbers keep frame
order even with several workers per stage, no item is dropped, the first error in any stage stops
every thread and is re-raised in the caller, and Ctrl-C in the caller shuts everything down cleanly.
onnxruntime, OpenCV and PyAV release the GIL, so threads overlap on a couple of cores.
"""
from __future__ import annotations

import heapq
import logging
import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

log = logging.getLogger(__name__)

_END = object()  # end-of-stream marker
_POLL = 0.1  # seconds between checks of the stop flag


@dataclass
class Stage:
    """A pipeline step: fn(item) -> item, run by `workers` threads."""

    fn: Callable[[Any], Any]
    workers: int = 1
    name: str = "stage"


class _Stopped(Exception):
    """Internal: another thread failed or the caller interrupted."""


class StopAware:
    """Threads that share one stop flag: the first error wins and stops all; blocking queue
    operations wake up every `poll` seconds to notice a stop. Subclasses call _init_stop()."""

    poll: float = _POLL

    def _init_stop(self) -> None:
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    def _fail(self, e: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = e
        self._stop.set()

    def _put(self, q: queue.Queue, item) -> None:
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                q.put(item, timeout=self.poll)
                return
            except queue.Full:
                continue

    def _get(self, q: queue.Queue):
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                return q.get(timeout=self.poll)
            except queue.Empty:
                continue


class Pipeline(StopAware):
    """Run items from `source` through `stages` into `sink`, in order.

    sink(item) runs in the calling thread (so Ctrl-C lands there). Returns the number of items.
    """

    def __init__(self, source: Iterable, stages: Sequence[Stage | Callable], sink: Callable[[Any], None],
                 *, queue_size: int = 4):
        self.source = source
        self.stages = [s if isinstance(s, Stage) else Stage(s, 1, getattr(s, "__name__", "stage")) for s in stages]
        self.sink = sink
        self.queue_size = max(1, queue_size)
        self._init_stop()

    # -- threads ------------------------------------------------------------------------------
    def _produce(self, out_q: queue.Queue, n_next: int) -> None:
        try:
            for seq, item in enumerate(self.source):
                self._put(out_q, (seq, item))
            for _ in range(n_next):
                self._put(out_q, _END)
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001 - forwarded to the caller
            self._fail(e)

    def _work(self, stage: Stage, in_q: queue.Queue, out_q: queue.Queue, n_next: int, done: list, lock) -> None:
        try:
            while True:
                msg = self._get(in_q)
                if msg is _END:
                    break
                seq, item = msg
                self._put(out_q, (seq, stage.fn(item)))
            with lock:  # the last worker of this stage forwards end-of-stream to every next worker
                done[0] += 1
                last = done[0] == stage.workers
            if last:
                for _ in range(n_next):
                    self._put(out_q, _END)
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001
            log.debug("stage %s failed: %r", stage.name, e)
            self._fail(e)

    def run(self) -> int:
        """Run to completion; re-raise the first error from any thread. Returns items delivered."""
        queues = [queue.Queue(self.queue_size) for _ in range(len(self.stages) + 1)]
        n_after = [s.workers for s in self.stages] + [1]
        threads = [threading.Thread(target=self._produce, args=(queues[0], n_after[0]), name="source", daemon=True)]
        for i, st in enumerate(self.stages):
            done, lock = [0], threading.Lock()
            for k in range(st.workers):
                threads.append(threading.Thread(target=self._work, args=(st, queues[i], queues[i + 1], n_after[i + 1],
                                                                         done, lock),
                                                name=f"{st.name}-{k}", daemon=True))
        for t in threads:
            t.start()
        count, want, pending = 0, 0, []  # reorder buffer: heap of (seq, item)
        try:
            while True:
                msg = self._get(queues[-1])
                if msg is _END:
                    break
                heapq.heappush(pending, (msg[0], id(msg[1]), msg[1]))
                while pending and pending[0][0] == want:
                    _, _, item = heapq.heappop(pending)
                    self.sink(item)
                    count += 1
                    want += 1
            if pending:  # pragma: no cover - would mean a lost item
                raise RuntimeError(f"pipeline ended with {len(pending)} items out of order; this is a bug")
        except _Stopped:
            pass
        except BaseException as e:  # sink error or KeyboardInterrupt: stop the others and re-raise
            self._fail(e)
        finally:
            self._stop.set()
            for t in threads:
                t.join(timeout=10)
        if self._error is not None:
            raise self._error
        return count


def run_pipeline(source: Iterable, stages: Sequence[Stage | Callable], sink: Callable[[Any], None],
                 *, queue_size: int = 4) -> int:
    """Convenience wrapper: Pipeline(...).run()."""
    return Pipeline(source, stages, sink, queue_size=queue_size).run()


def ordered_map(fn: Callable[[Any], Any], items: Iterable, workers: int, ahead: int) -> Iterator:
    """fn over items on `workers` threads, yielding results in input order, with at most `ahead`
    items submitted and not yet taken (memory stays bounded). Items are read in the consumer's
    thread; an error in fn is raised there at its item. Every wait is on one call of fn, so a
    consumer that stops (a Pipeline's source thread) notices soon; closing the generator cancels
    the calls not started and waits for those running."""
    ex = ThreadPoolExecutor(max(1, workers), thread_name_prefix="ordered-map")
    pending: deque = deque()
    try:
        for item in items:
            pending.append(ex.submit(fn, item))
            if len(pending) >= max(1, ahead):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
