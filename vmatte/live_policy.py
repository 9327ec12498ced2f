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
