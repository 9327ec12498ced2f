"""The live loop's in-flight policy: one frame while mattes are well under the camera interval,
two when they come close, with hysteresis."""
from __future__ import annotations

import pytest

from vmatte.live_policy import InFlightPolicy


def feed(p: InFlightPolicy, matte_s: float, frames: int) -> int:
    for _ in range(frames):
        p.observe(matte_s)
    return p.active


def test_one_frame_while_the_matte_is_well_under_the_interval():
    p = InFlightPolicy(2, 1 / 30, window=10)
    assert feed(p, 0.015, 100) == 1 and p.switches == 0


def test_two_when_the_matte_comes_close_and_back_only_well_below():
    p = InFlightPolicy(2, 1 / 30, window=10)  # thresholds 26.7 ms up, 20 ms down
    assert feed(p, 0.028, 9) == 1  # a full window is needed before any decision
    assert feed(p, 0.028, 1) == 2
    assert feed(p, 0.024, 50) == 2  # between the thresholds: stays (no flapping)
    assert feed(p, 0.018, 10) == 1
    assert feed(p, 0.024, 50) == 1
    assert p.switches == 2


def test_the_warm_up_time_makes_the_first_choice():
    assert InFlightPolicy(2, 1 / 30, alone_s=0.030).active == 2  # above 0.8 x 33.3 ms: two at once
    assert InFlightPolicy(2, 1 / 30, alone_s=0.020).active == 1
    assert InFlightPolicy(2, 1 / 30).active == 1  # not measured: one
    p = InFlightPolicy(2, 1 / 30, window=10, alone_s=0.030)
    assert feed(p, 0.015, 10) == 1 and p.switches == 1  # still measured as it runs


def test_a_single_worker_never_changes():
    p = InFlightPolicy(1, 1 / 30, window=2)
    assert feed(p, 1.0, 10) == 1 and p.switches == 0


@pytest.mark.parametrize("kw", [dict(max_workers=0, interval=1 / 30), dict(max_workers=2, interval=0.0),
                                dict(max_workers=2, interval=1 / 30, low=0.9, high=0.8)])
def test_bad_policy_arguments(kw):
    with pytest.raises(ValueError):
        InFlightPolicy(**kw)


# -- the refiner's cell budget ------------------------------------------------------------------------
from vmatte.live_policy import RefineBudget  # noqa: E402


def feed_budget(b: RefineBudget, matte_s: float, frames: int, saturated: bool = True) -> int:
    for _ in range(frames):
        b.observe(matte_s, saturated)
    return b.budget


def test_budget_falls_only_while_every_worker_is_busy_and_rises_when_fast():
    b = RefineBudget(32, 1 / 30, window=10, warmup=0)  # down above 36.7 ms, up below 20 ms
    assert b.levels == [32, 16, 8, 0]
    assert feed_budget(b, 0.040, 50, saturated=False) == 32  # a free worker is left: the in-flight policy's turn
    b = RefineBudget(32, 1 / 30, window=10, warmup=0)
    assert feed_budget(b, 0.040, 9) == 32 and feed_budget(b, 0.040, 1) == 16  # a full window first
    assert feed_budget(b, 0.030, 50) == 16  # between the thresholds: stays
    assert feed_budget(b, 0.040, 30) == 0 and feed_budget(b, 0.040, 30) == 0  # the floor
    assert feed_budget(b, 0.015, 10) == 8 and feed_budget(b, 0.015, 20) == 32
    assert b.switches == 6


def test_budget_tries_the_level_above_after_a_while_and_backs_off_when_it_is_too_slow():
    """Between the thresholds the budget would stay low for good: every `probe` frames it tries
    one level up; a try that is too slow falls back and the next waits twice as long."""
    b = RefineBudget(32, 1 / 30, window=10, probe=50, warmup=0)
    assert feed_budget(b, 0.040, 10) == 16
    assert feed_budget(b, 0.030, 9 + 49) == 16  # 0.9x the interval: neither threshold
    assert feed_budget(b, 0.030, 1) == 32 and b.switches == 2  # the try
    assert feed_budget(b, 0.040, 10) == 16 and b.probe_every == 100  # too slow: back, and wait longer
    assert feed_budget(b, 0.030, 9 + 99) == 16 and feed_budget(b, 0.030, 1) == 32
    assert feed_budget(b, 0.030, 10) == 32 and b.probe_every == 50  # the try held a full window


def test_budget_ignores_warm_up_frames():
    b = RefineBudget(32, 1 / 30, window=5, warmup=20)
    assert feed_budget(b, 0.100, 20) == 32  # a process's first, slow mattes
    assert feed_budget(b, 0.020, 30) == 32 and b.switches == 0


def test_a_zero_budget_has_one_level():
    b = RefineBudget(0, 1 / 30, window=2, warmup=0)
    assert b.levels == [0] and feed_budget(b, 1.0, 10) == 0 and b.switches == 0


@pytest.mark.parametrize("kw", [dict(full=-1, interval=1 / 30), dict(full=32, interval=0.0),
                                dict(full=32, interval=1 / 30, low=1.2, high=1.0), dict(full=32, interval=1 / 30, probe=0)])
def test_bad_budget_arguments(kw):
    with pytest.raises(ValueError):
        RefineBudget(**kw)
