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


def test_a_single_worker_never_changes():
    p = InFlightPolicy(1, 1 / 30, window=2)
    assert feed(p, 1.0, 10) == 1 and p.switches == 0


@pytest.mark.parametrize("kw", [dict(max_workers=0, interval=1 / 30), dict(max_workers=2, interval=0.0),
                                dict(max_workers=2, interval=1 / 30, low=0.9, high=0.8)])
def test_bad_policy_arguments(kw):
    with pytest.raises(ValueError):
        InFlightPolicy(**kw)
