"""How many frames the live loop mattes at once, re-chosen from what this machine measures.

With one frame in flight nothing competes with the matte for the cores, but a frame that arrives
while the worker is busy waits for it; with two in flight a free worker takes every frame at once,
but two mattes running together share the cores. Which gives the lower latency depends on how
the matte time compares with the camera interval on this machine, under what else runs on it
(2026-11-30, 2-core AMD EPYC, 720p30: a 31.6 ms matte gave p95 62 ms with one in flight and 40 ms
with two), so it is measured, not fixed: one while the median matte time stays well under the
interval, two when it comes close, with a gap between the two thresholds so it does not flap.
"""
from __future__ import annotations

import logging
from collections import deque
from statistics import median

log = logging.getLogger(__name__)


class _MedianWindow:
    """Matte times of the last `window` frames against two thresholds (multiples of the camera
    interval): what both policies below share. A switch clears the window, so the next decision
    rests only on frames matted after it."""

    def __init__(self, interval: float, high: float, low: float, window: int, what: str):
        if interval <= 0 or window < 1 or not 0 < low < high:
            raise ValueError(f"bad {what} policy: interval={interval}, window={window}, low={low}, high={high} (need low < high)")
        self.interval = float(interval)
        self.high, self.low = float(high), float(low)
        self.switches = 0
        self._times: deque[float] = deque(maxlen=int(window))

    def _median(self, matte_s: float) -> float | None:
        """Add one time; the window's median once it is full, else None."""
        self._times.append(float(matte_s))
        return median(self._times) if len(self._times) == self._times.maxlen else None

    def _switched(self, m: float, what: str) -> None:
        self.switches += 1
        self._times.clear()
        log.info("live: %s (median matte %.1f ms, camera interval %.1f ms)", what, m * 1e3, self.interval * 1e3)


class InFlightPolicy(_MedianWindow):
    """The number of matte workers that may take frames (`active`: 1 or max_workers).

    observe(matte_s) after every output frame, with the seconds its matte took. Over the last
    `window` frames: with one active, a median above `high` x the camera interval switches to
    max_workers; with more active, a median below `low` x the interval switches back to one (two
    mattes sharing the cores run slower than one alone, so this errs towards staying at two).
    alone_s: a matte's time with nothing else running, measured before the loop starts (its
    warm-up); with it the first choice is made at once, by the same `high` rule, instead of after
    a first window of frames queued behind one worker. None starts with one.
    """

    def __init__(self, max_workers: int, interval: float, *, high: float = 0.8, low: float = 0.6, window: int = 30,
                 alone_s: float | None = None):
        if max_workers < 1:
            raise ValueError(f"bad in-flight policy: max_workers={max_workers} (need 1 or more)")
        super().__init__(interval, high, low, window, "in-flight")
        self.max_workers = int(max_workers)
        self.active = max_workers if alone_s is not None and alone_s > high * interval else 1

    def observe(self, matte_s: float) -> int:
        """Record one frame's matte time (seconds); returns the workers now active."""
        if self.max_workers == 1:
            return 1
        m = self._median(matte_s)
        if m is not None and self.active == 1 and m > self.high * self.interval:
            self.active = self.max_workers
        elif m is not None and self.active > 1 and m < self.low * self.interval:
            self.active = 1
        else:
            return self.active
        self._switched(m, f"{self.active} frame(s) in flight")
        return self.active


class RefineBudget(_MedianWindow):
    """The refiner's cell budget a frame under live load (`budget`: full, full/2, full/4 or 0).

    When every worker is already busy (the in-flight policy has nothing left to give) and the
    median matte over the last `window` frames (half a second at 30 fps, so the start of a call
    adapts quickly) is still above `high` x the camera interval, the frames wait and latency
    grows, so the budget drops a level; below `low` x it goes back up a level. A level changes
    the matte by only 10-15 % at 720p, so a budget that settled low after a busy spell would
    rarely get that fast: after `probe` frames (a minute at 30 fps) at a level without a drop it
    tries the level above for one window, and keeps it unless that window is too slow (then it
    waits twice as long before the next try, up to 8x). The first `warmup` frames (a process's
    first mattes run slower) are not counted. The cells are the one cost that scales down without
    touching the segmenter and generator: a slow CPU keeps the frame rate and refines less of the
    outline (docs/benchmarks.md, "A cell budget").
    """

    def __init__(self, full: int, interval: float, *, high: float = 1.1, low: float = 0.6, window: int = 15,
                 probe: int = 1800, warmup: int = 10):
        if full < 0 or probe < 1 or warmup < 0:
            raise ValueError(f"bad budget policy: full={full}, probe={probe}, warmup={warmup} (need full >= 0, probe >= 1)")
        super().__init__(interval, high, low, window, "budget")
        self.levels = sorted({full, full // 2, full // 4, 0}, reverse=True)  # [full, ..., 0]
        self.level = 0
        self.probe_every = self._probe_base = int(probe)
        self._since = 0  # frames counted at this level
        self._probing = False  # the current level is a probe not yet confirmed by a full window
        self._warmup = int(warmup)

    @property
    def budget(self) -> int:
        return self.levels[self.level]

    def reset(self) -> None:
        """Forget the window (the frames in it were matted under other conditions, e.g. before the
        in-flight policy changed the number of workers)."""
        self._times.clear()

    def observe(self, matte_s: float, saturated: bool) -> int:
        """Record one frame's matte time (seconds) and whether every worker was taking frames
        while it was matted; returns the budget to use."""
        if self._warmup > 0:
            self._warmup -= 1
            return self.budget
        m = self._median(matte_s)
        if m is None:
            return self.budget
        self._since += 1
        slow = m > self.high * self.interval
        if saturated and slow and self.level < len(self.levels) - 1:
            if self._probing:  # the level above was too slow: wait longer before the next try
                self.probe_every = min(8 * self._probe_base, 2 * self.probe_every)
            self._change(self.level + 1, m, "")
        elif self.level > 0 and (m < self.low * self.interval or (not slow and self._since >= self.probe_every)):
            self._change(self.level - 1, m, "" if m < self.low * self.interval else " (a try)")
            self._probing = True
        elif self._probing and not slow:  # a full window at the tried level: it holds
            self._probing = False
            self.probe_every = self._probe_base
        return self.budget

    def _change(self, level: int, m: float, why: str) -> None:
        self.level = level
        self._since = 0
        self._probing = False
        self._switched(m, f"refiner budget {self.budget} cells a frame{why}")
