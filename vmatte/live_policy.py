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


class InFlightPolicy:
    """The number of matte workers that may take frames (`active`: 1 or max_workers).

    observe(matte_s) after every output frame, with the seconds its matte took. Over the last
    `window` frames: with one active, a median above `high` x the camera interval switches to
    max_workers; with more active, a median below `low` x the interval switches back to one (two
    mattes sharing the cores run slower than one alone, so this errs towards staying at two).
    """

    def __init__(self, max_workers: int, interval: float, *, high: float = 0.8, low: float = 0.6, window: int = 30):
        if max_workers < 1 or interval <= 0 or window < 1 or not 0 < low < high:
            raise ValueError(f"bad policy: max_workers={max_workers}, interval={interval}, window={window}, "
                             f"low={low}, high={high} (need low < high)")
        self.max_workers = int(max_workers)
        self.interval = float(interval)
        self.high, self.low = float(high), float(low)
        self.active = 1
        self.switches = 0
        self._times: deque[float] = deque(maxlen=int(window))

    def observe(self, matte_s: float) -> int:
        """Record one frame's matte time (seconds); returns the workers now active."""
        if self.max_workers == 1:
            return 1
        self._times.append(float(matte_s))
        if len(self._times) < (self._times.maxlen or 1):
            return self.active
        m = median(self._times)
        if self.active == 1 and m > self.high * self.interval:
            self._set(self.max_workers, m)
        elif self.active > 1 and m < self.low * self.interval:
            self._set(1, m)
        return self.active

    def _set(self, active: int, m: float) -> None:
        self.active = active
        self.switches += 1
        self._times.clear()
        log.info("live: %d frame(s) in flight (median matte %.1f ms, camera interval %.1f ms)",
                 active, m * 1e3, self.interval * 1e3)


class RefineBudget:
    """The refiner's cell budget a frame under live load (`budget`: full, full/2, full/4 or 0).

    When every worker is already busy (the in-flight policy has nothing left to give) and the
    median matte over the last `window` frames is still above `high` x the camera interval, the
    frames wait and latency grows, so the budget drops a level; below `low` x it goes back up a
    level. The refiner's cells are the one cost that scales down without touching the segmenter
    and generator (on the dev set, no cells at all: MSE 9.31 vs 9.29 x1e-3, SAD +7 %; docs/
    benchmarks.md), so a slow CPU keeps the frame rate and loses only some edge detail.
    """

    def __init__(self, full: int, interval: float, *, high: float = 1.1, low: float = 0.6, window: int = 30):
        if full < 0 or interval <= 0 or window < 1 or not 0 < low < high:
            raise ValueError(f"bad budget policy: full={full}, interval={interval}, window={window}, low={low}, high={high}")
        self.levels = sorted({full, full // 2, full // 4, 0}, reverse=True)  # [full, ..., 0]
        self.interval = float(interval)
        self.high, self.low = float(high), float(low)
        self.level = 0
        self.switches = 0
        self._times: deque[float] = deque(maxlen=int(window))

    @property
    def budget(self) -> int:
        return self.levels[self.level]

    def observe(self, matte_s: float, saturated: bool) -> int:
        """Record one frame's matte time (seconds) and whether every worker takes frames now;
        returns the budget to use."""
        self._times.append(float(matte_s))
        if len(self._times) < (self._times.maxlen or 1):
            return self.budget
        m = median(self._times)
        if saturated and m > self.high * self.interval and self.level < len(self.levels) - 1:
            self._set(self.level + 1, m)
        elif m < self.low * self.interval and self.level > 0:
            self._set(self.level - 1, m)
        return self.budget

    def _set(self, level: int, m: float) -> None:
        self.level = level
        self.switches += 1
        self._times.clear()
        log.info("live: refiner budget %d cells a frame (median matte %.1f ms, camera interval %.1f ms)",
                 self.budget, m * 1e3, self.interval * 1e3)
