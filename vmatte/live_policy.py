"""How many frames the live loop mattes at once, re-chosen from what this machine measures.

One frame in flight gives the lowest latency (capture -> matte -> composite, nothing waits); a
second frame in flight buys throughput on a CPU too slow to matte one frame per camera interval,
at the price of about one more matte time of latency (two frames share the cores). The right
choice depends on the machine and on what else runs on it, so it is measured, not fixed: start
with one; go to two when one cannot keep up with the camera; now and then try one again, and
stay there if it keeps up.
"""
from __future__ import annotations

import logging
from collections import deque
from statistics import median

log = logging.getLogger(__name__)


class InFlightPolicy:
    """The number of matte workers that may take frames (`active`, 1..max_workers).

    observe(matte_s, now) after every output frame, with the seconds its matte took. With one
    active, the median over `window` frames above `headroom` x the camera interval means one
    worker cannot keep up: go to max_workers. With more active, every `probe_every` seconds go
    back to one for a window; if it still cannot keep up the next probe waits twice as long
    (at most `max_probe_every`), so a slow machine is disturbed less and less.
    """

    def __init__(self, max_workers: int, interval: float, *, headroom: float = 0.85, window: int = 20,
                 probe_every: float = 10.0, max_probe_every: float = 80.0):
        if max_workers < 1 or interval <= 0 or window < 1:
            raise ValueError(f"bad policy: max_workers={max_workers}, interval={interval}, window={window}")
        self.max_workers = int(max_workers)
        self.interval = float(interval)
        self.headroom = float(headroom)
        self.window = int(window)
        self.probe_every = float(probe_every)
        self.max_probe_every = float(max_probe_every)
        self.active = 1
        self.switches = 0
        self._times: deque[float] = deque(maxlen=self.window)
        self._next_probe: float | None = None
        self._wait = self.probe_every

    def observe(self, matte_s: float, now: float) -> int:
        """Record one frame's matte time (seconds) at time `now`; returns the workers now active."""
        if self.max_workers == 1:
            return 1
        if self.active == 1:
            self._times.append(float(matte_s))
            if len(self._times) < self.window:
                return 1
            if median(self._times) <= self.headroom * self.interval:  # keeps up: a probe (if any) succeeded
                self._next_probe, self._wait = None, self.probe_every
            else:
                probing = self._next_probe is not None
                self._set(self.max_workers, now, "one frame in flight cannot keep up: median matte %.1f ms for a "
                          "%.1f ms camera interval" % (median(self._times) * 1e3, self.interval * 1e3))
                if probing:  # a failed probe: try less often
                    self._wait = min(self.max_probe_every, 2 * self._wait)
                self._next_probe = now + self._wait
        elif self._next_probe is not None and now >= self._next_probe:
            self._set(1, now, "trying one frame in flight again (lower latency)")
        return self.active

    def _set(self, active: int, now: float, why: str) -> None:
        self.active = active
        self.switches += 1
        self._times.clear()
        log.info("live: %d frame(s) in flight: %s", active, why)
