"""The live loop's in-flight policy: one frame while one keeps up, two when it cannot, re-probed."""
from __future__ import annotations

import pytest

from vmatte.live_policy import InFlightPolicy


def feed(p: InFlightPolicy, matte_s: float, frames: int, t0: float, dt: float = 1 / 30) -> float:
    for i in range(frames):
        p.observe(matte_s, t0 + i * dt)
    return t0 + frames * dt


def test_one_frame_while_one_keeps_up():
    p = InFlightPolicy(2, 1 / 30, window=10)
    feed(p, 0.020, 100, 0.0)
    assert p.active == 1 and p.switches == 0


def test_two_when_one_cannot_keep_up_then_probes_back_and_backs_off():
    p = InFlightPolicy(2, 1 / 30, window=10, probe_every=5.0, max_probe_every=20.0)
    t = feed(p, 0.045, 10, 0.0)  # a slow machine: 45 ms for a 33 ms interval
    assert p.active == 2
    t = feed(p, 0.080, 30, t)  # matte times with two in flight are not used to decide
    assert p.active == 2
    t = feed(p, 0.080, 4 * 30 + 1, t)  # the probe comes after probe_every seconds...
    assert p.active == 1
    t = feed(p, 0.045, 10, t)  # ...fails...
    assert p.active == 2 and p._wait == 10.0  # ...so the next one waits twice as long
    t = feed(p, 0.080, 9 * 30, t)
    assert p.active == 2
    t = feed(p, 0.080, 31, t)
    assert p.active == 1
    feed(p, 0.020, 10, t)  # the machine got faster: one frame in flight stays
    assert p.active == 1 and p._wait == 5.0


def test_a_single_worker_never_changes():
    p = InFlightPolicy(1, 1 / 30, window=2)
    feed(p, 1.0, 10, 0.0)
    assert p.active == 1 and p.switches == 0


def test_bad_policy_arguments():
    with pytest.raises(ValueError):
        InFlightPolicy(0, 1 / 30)
    with pytest.raises(ValueError):
        InFlightPolicy(2, 0.0)
