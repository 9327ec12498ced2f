"""Live loop, camera and virtual camera tests with fakes (no camera or loopback device needed)."""
from __future__ import annotations

import sys
import threading
import time
import types
from fractions import Fraction

import numpy as np
import pytest

from vmatte.errors import VmatteError
from vmatte.io import camera as camera_mod
from vmatte.io import vcam as vcam_mod
from vmatte.io.camera import Captured, CameraSource, FileCamera
from vmatte.io.vcam import MODPROBE, NullSink, VirtualCamera, flatten_rgba
from vmatte.live import LatestSlot, LiveLoop, MatteSmoother, ema, motion_map, static_flicker

H, W = 24, 32


# -- fakes ------------------------------------------------------------------------------------------
class FakeCamera:
    """Numbered frames every `period` s (the frame's pixel value is its index mod 256)."""

    def __init__(self, period=0.002, n=None, fail_at=None):
        self.period, self.n, self.fail_at = period, n, fail_at
        self.i = 0

    def read(self, stop=None):
        if self.n is not None and self.i >= self.n:
            return None
        if self.fail_at is not None and self.i >= self.fail_at:
            raise VmatteError("camera 0 disconnected and did not come back")
        if stop is not None and stop.wait(self.period):
            return None
        rgb = np.full((H, W, 3), self.i % 256, np.uint8)
        fr = Captured(self.i, rgb, time.perf_counter())
        self.i += 1
        return fr


class SlowMatter:
    """Takes `delay` s a frame (slower than the camera), returns a constant matte."""

    def __init__(self, delay=0.02, value=0.5):
        self.delay, self.value, self.calls = delay, value, 0

    def __call__(self, rgb):
        self.calls += 1
        time.sleep(self.delay)
        return np.full(rgb.shape[:2], self.value, np.float32)


class RecordingSink(NullSink):
    def __init__(self):
        super().__init__()
        self.frames_seen = []

    def send(self, frame):
        super().send(frame)
        self.frames_seen.append(frame.copy())


def passthrough(rgb, alpha):
    return rgb


# -- latest-frame policy ----------------------------------------------------------------------------
def test_latest_slot_keeps_newest_and_counts_drops():
    s = LatestSlot()
    assert s.put(1) is False
    assert s.put(2) is True and s.put(3) is True
    assert s.drops == 2 and s.get(0) == 3 and s.get(0) is None
    s.close()
    assert s.get(1.0) is None  # closed and empty: returns at once


def test_stale_frames_dropped_output_increasing_latency_bounded():
    cam, matter, sink = FakeCamera(period=0.002), SlowMatter(0.02), RecordingSink()
    loop = LiveLoop(cam, matter, [sink], background=passthrough, smoothing=0.0, max_frames=30, stats_every=0)
    stats = loop.run()
    idx = list(loop.out_indices)
    assert stats.frames_out == 30 == len(sink.frames_seen)
    assert all(b > a for a, b in zip(idx, idx[1:])), idx  # monotonically increasing
    assert max(b - a for a, b in zip(idx, idx[1:])) > 1  # frames were skipped, not queued
    assert stats.dropped > 0 and stats.frames_in > stats.frames_out
    # The sink got exactly the frame that was matted (pixel value = index).
    assert [int(f[0, 0, 0]) for f in sink.frames_seen] == [i % 256 for i in idx]
    # No queue builds up: latency stays about one or two matting times (~40 ms); a FIFO queue would
    # reach about 30 * (20 - 2) ms = 540 ms by the last frame.
    assert stats.latency_ms_p95 < 300


def test_late_frames_dropped_by_max_latency():
    class OldFrames(FakeCamera):
        def read(self, stop=None):
            fr = super().read(stop)
            if fr is not None and fr.index % 2 == 0:
                fr.t -= 10.0  # pretend it arrived 10 s ago
            return fr

    loop = LiveLoop(OldFrames(period=0.01, n=10), SlowMatter(0.0), [NullSink()], background=passthrough,
                    max_latency=1.0, smoothing=0.0)
    stats = loop.run()
    assert stats.late >= 1
    assert all(i % 2 == 1 for i in loop.out_indices)
    assert stats.stopped_by == "end of source"


def test_model_slower_than_max_latency_still_gets_frames():
    loop = LiveLoop(FakeCamera(period=0.002), SlowMatter(0.03), [NullSink()], background=passthrough,
                    max_latency=0.01, max_frames=5)
    assert loop.run().frames_out == 5


# -- smoothing --------------------------------------------------------------------------------------
def test_ema_zero_smoothing_is_identity_and_weights_mix():
    rng = np.random.default_rng(0)
    prev, a = rng.random((H, W), np.float32), rng.random((H, W), np.float32)
    np.testing.assert_array_equal(ema(prev, a, 0.0), a)
    np.testing.assert_allclose(ema(prev, a, 0.25), 0.25 * prev + 0.75 * a, atol=1e-6)
    w = np.full((H, W), 0.5, np.float32)
    np.testing.assert_allclose(ema(prev, a, w), 0.5 * (prev + a), atol=1e-6)
    sm = MatteSmoother(0.0)
    rgb = np.zeros((H, W, 3), np.uint8)
    for _ in range(3):
        a = rng.random((H, W), np.float32)
        np.testing.assert_array_equal(sm(rgb, a), a)


def test_smoothing_reduces_flicker_on_static_scene():
    rng = np.random.default_rng(1)
    rgb = np.full((H, W, 3), 120, np.uint8)  # a scene that does not move
    base = np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W)
    alphas = [np.clip(base + rng.normal(0, 0.05, (H, W)).astype(np.float32), 0, 1) for _ in range(30)]

    def flicker(smoothing):
        sm, out = MatteSmoother(smoothing), []
        for a in alphas:
            out.append(sm(rgb, a))
        return np.nanmean([static_flicker(rgb, rgb, p, q) for p, q in zip(out, out[1:])])

    raw = flicker(0.0)
    assert raw > 0.01
    assert flicker(0.5) < 0.7 * raw
    assert flicker(0.8) < flicker(0.5)


def test_motion_adaptive_smoothing_follows_moving_regions():
    still = np.full((64, 64, 3), 100, np.uint8)
    moved = still.copy()
    moved[:, 32:] = 250  # the right half changes a lot
    a0, a1 = np.zeros((64, 64), np.float32), np.ones((64, 64), np.float32)
    m = motion_map(still, moved)
    assert m[:, :16].max() < 0.01 and m[:, 48:].min() > 0.5
    sm = MatteSmoother(0.8, motion_adaptive=True)
    sm(still, a0)
    out = sm(moved, a1)
    assert np.allclose(out[:, 48:], 1.0)  # moving: no lag
    assert np.allclose(out[:, :16], 0.2, atol=1e-5)  # still: smoothed (0.8*0 + 0.2*1)
    with pytest.raises(VmatteError, match="0..1"):
        MatteSmoother(1.5)


# -- controls ---------------------------------------------------------------------------------------
def test_background_switch_mid_run_and_key_actions():
    sink = RecordingSink()
    black = lambda rgb, a: np.zeros_like(rgb)  # noqa: E731
    white = lambda rgb, a: np.full_like(rgb, 255)  # noqa: E731
    loop = LiveLoop(FakeCamera(period=0.001), SlowMatter(0.002), [sink], background=black, max_frames=10,
                    smoothing=0.0)

    def on_frame(fr, alpha, out):
        if sink.frames == 4:
            t = threading.Thread(target=loop.set_background, args=(white,))  # switched from another thread
            t.start()
            t.join()

    loop.on_frame = on_frame
    loop.run()
    vals = [int(f.max()) for f in sink.frames_seen]
    assert vals[:4] == [0, 0, 0, 0] and vals[-1] == 255
    first_white = vals.index(255)
    assert all(v == 255 for v in vals[first_white:])  # never back to the old background

    loop.handle_action("color")
    assert type(loop.background).__name__ == "ColorBackground"
    loop.handle_action("blur")
    assert type(loop.background).__name__ == "BlurBackground"
    loop.handle_action("image")  # no image configured: a warning, background unchanged
    assert type(loop.background).__name__ == "BlurBackground"
    s0 = loop.smoothing
    loop.handle_action("smooth+")
    assert loop.smoothing == pytest.approx(s0 + 0.1)
    loop.handle_action("quit")
    assert loop.stopped


def test_real_background_composites_frame():
    loop = LiveLoop(FakeCamera(period=0.001, n=3), lambda rgb: np.zeros(rgb.shape[:2], np.float32),
                    [sink := RecordingSink()], background="0,0,255", smoothing=0.0)
    loop.run()
    assert sink.frames_seen and (sink.frames_seen[-1][..., 2] == 255).all()


def test_clean_stop_from_another_thread():
    cam = FakeCamera(period=0.002)
    loop = LiveLoop(cam, SlowMatter(0.005), [NullSink()], background=passthrough)
    t = threading.Timer(0.2, loop.stop)
    t.start()
    stats = loop.run()
    t.join()
    assert stats.stopped_by == "stop" and not stats.interrupted
    assert loop._eos.is_set()  # capture thread finished
    n = cam.i
    time.sleep(0.05)
    assert cam.i == n  # nothing reads the camera any more


def test_ctrl_c_is_a_clean_stop():
    class Interrupting(SlowMatter):
        def __call__(self, rgb):
            if self.calls == 3:
                raise KeyboardInterrupt
            return super().__call__(rgb)

    loop = LiveLoop(FakeCamera(), Interrupting(0.001), [NullSink()], background=passthrough)
    stats = loop.run()
    assert stats.interrupted and stats.frames_out == 3 and loop._eos.is_set()


def test_capture_error_is_raised_in_caller():
    loop = LiveLoop(FakeCamera(period=0.001, fail_at=5), SlowMatter(0.001), [NullSink()], background=passthrough)
    with pytest.raises(VmatteError, match="did not come back"):
        loop.run()


# -- OpenCV camera (fake VideoCapture) ----------------------------------------------------------------
class FakeCapture:
    """A cv2.VideoCapture stand-in: `frames` good reads, then failures; `opens` False = cannot open."""

    def __init__(self, frames=3, opens=True, size=(W, H)):
        self.frames, self.opens, self.size = frames, opens, size
        self.released = 0
        self.props = {}

    def isOpened(self):
        return self.opens

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def get(self, prop):
        return 30.0 if prop == camera_mod.cv2.CAP_PROP_FPS else 0.0

    def read(self):
        if self.frames <= 0:
            return False, None
        self.frames -= 1
        return True, np.zeros((self.size[1], self.size[0], 3), np.uint8)

    def release(self):
        self.released += 1


def test_camera_reconnects_after_disappearing():
    # open #1: probe read + 3 frames, then gone; reopen #2 fails; reopen #3 works again.
    caps = [FakeCapture(frames=4), FakeCapture(opens=False), FakeCapture(frames=100)]
    made = []

    def factory(dev):
        made.append(caps[len(made)])
        return made[-1]

    with CameraSource(0, W, H, 30, retries=3, backoff=0.001, capture_factory=factory) as cam:
        assert (cam.width, cam.height) == (W, H)
        idx = [cam.read().index for _ in range(6)]
    assert idx == list(range(6))
    assert cam.reconnects == 1 and len(made) == 3
    assert caps[0].released == 1 and caps[2].released == 1
    cam.close()  # second close is a no-op
    assert caps[2].released == 1


def test_camera_gone_for_good_raises_after_bounded_retries():
    caps = iter([FakeCapture(frames=2)] + [FakeCapture(opens=False)] * 3)
    with CameraSource(0, W, H, 30, retries=3, backoff=0.001, capture_factory=lambda d: next(caps)) as cam:
        cam.read()
        with pytest.raises(VmatteError, match="did not come back after 3 tries"):
            cam.read()


def test_no_camera_busy_camera_and_wrong_size_errors(monkeypatch):
    monkeypatch.setattr(camera_mod, "list_video_devices", lambda: [])
    with pytest.raises(VmatteError, match="--file"):
        CameraSource(0, capture_factory=lambda d: FakeCapture(opens=False)).__enter__()
    monkeypatch.setattr(camera_mod, "list_video_devices", lambda: ["/dev/video0"])
    with pytest.raises(VmatteError, match="busy"):
        CameraSource(0, capture_factory=lambda d: FakeCapture(opens=False)).__enter__()
    with pytest.raises(VmatteError, match="gives no frames"):
        CameraSource(0, capture_factory=lambda d: FakeCapture(frames=0)).__enter__()
    with pytest.raises(VmatteError, match="--width 32 --height 24"):
        CameraSource(0, 1280, 720, capture_factory=lambda d: FakeCapture()).__enter__()
    with pytest.raises(VmatteError, match="not found"):
        CameraSource("/dev/video-nope", capture_factory=lambda d: FakeCapture()).__enter__()


# -- virtual camera ---------------------------------------------------------------------------------
def _fake_pyvirtualcam(monkeypatch, error=None):
    sent = []

    class Camera:
        def __init__(self, width, height, fps, fmt=None, device=None, backend=None):
            if error:
                raise RuntimeError(error)
            self.fmt, self.device, self.backend = fmt, device or "/dev/video10", backend or "v4l2loopback"

        def send(self, frame):
            sent.append(frame)

        def close(self):
            sent.append("closed")

    mod = types.SimpleNamespace(Camera=Camera, PixelFormat=types.SimpleNamespace(RGB="RGB", I420="I420", YUYV="YUYV"))
    monkeypatch.setitem(sys.modules, "pyvirtualcam", mod)
    return sent


def test_no_loopback_device_error_has_modprobe_line(monkeypatch):
    monkeypatch.setattr(vcam_mod.sys, "platform", "linux")
    _fake_pyvirtualcam(monkeypatch, "'v4l2loopback' backend: No v4l2 loopback device found at /dev/video[0-99]. "
                                    "Did you run 'modprobe v4l2loopback'? See also pyvirtualcam's documentation.")
    with pytest.raises(VmatteError) as e:
        VirtualCamera(640, 480, 30).__enter__()
    assert MODPROBE in str(e.value)


def test_busy_loopback_and_missing_pyvirtualcam(monkeypatch):
    _fake_pyvirtualcam(monkeypatch, "'v4l2loopback' backend: Device or resource busy")
    with pytest.raises(VmatteError, match="in use by another program"):
        VirtualCamera(640, 480, 30, device="/dev/video10").__enter__()
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)
    with pytest.raises(VmatteError, match="pip install"):
        VirtualCamera(640, 480, 30).__enter__()


def test_virtual_camera_sends_i420_and_flattens_alpha(monkeypatch):
    monkeypatch.setattr(vcam_mod.sys, "platform", "linux")
    sent = _fake_pyvirtualcam(monkeypatch)
    rgba = np.zeros((H, W, 4), np.uint8)  # fully transparent -> chroma green
    with VirtualCamera(W, H, 30) as cam:
        assert cam._kind == "i420"
        cam.send(rgba)
        cam.send(np.zeros((H, W, 3), np.uint8))
    assert sent[0].shape == (H * 3 // 2, W) and sent[-1] == "closed"
    cam.close()
    assert sum(isinstance(x, str) for x in sent) == 1
    np.testing.assert_array_equal(flatten_rgba(rgba)[0, 0], vcam_mod.CHROMA_GREEN)
    with VirtualCamera(W, H, 30, fmt="rgb") as cam:
        cam.send(np.zeros((H, W, 3), np.uint8))
    assert sent[-2].shape == (H, W, 3)


# -- file as camera ---------------------------------------------------------------------------------
def _tiny_video(path, n=6, fps=20, size=(64, 48)):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(n):
            img = np.full((size[1], size[0], 3), 20 + 30 * i, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_file_camera_paces_in_real_time_and_loops(tmp_path):
    path = _tiny_video(tmp_path / "tiny.mp4", n=6, fps=20)
    with FileCamera(path, loop=False) as cam:
        assert (cam.width, cam.height, cam.fps) == (64, 48, 20.0)
        t0 = cam._t0
        frames = []
        while (fr := cam.read()) is not None:
            frames.append(fr)
            assert time.perf_counter() >= t0 + fr.index / 20.0 - 1e-3  # never delivered early
    assert frames and len(frames) + cam.skipped == 6
    assert all(b.index > a.index for a, b in zip(frames, frames[1:]))
    with FileCamera(path, 32, 24, realtime=False) as cam:  # looped, resized, unpaced
        got = [cam.read() for _ in range(15)]
    assert cam.loops >= 2 and got[-1].rgb.shape == (24, 32, 3)
    with pytest.raises(VmatteError, match="not found"):
        FileCamera(tmp_path / "missing.mp4")


def test_webcam_command_file_to_record(tmp_path, monkeypatch):
    import vmatte.api
    from vmatte.cli import main

    class FakeMatter:
        backend_name = "fake"

        def __init__(self, **kw):
            pass

        def matte(self, rgb):
            return np.ones(rgb.shape[:2], np.float32)

        def close(self):
            pass

    monkeypatch.setattr(vmatte.api, "Matter", FakeMatter)
    src = _tiny_video(tmp_path / "in.mp4", n=6, fps=20)
    out = tmp_path / "rec.mp4"
    rc = main(["webcam", "--file", str(src), "--width", "64", "--height", "48", "--no-vcam",
               "--record", str(out), "--max-seconds", "0.6", "--background", "blur"])
    assert rc == 0 and out.is_file() and out.stat().st_size > 0
    rc = main(["webcam", "--file", str(src), "--smoothing", "2", "--no-vcam"])
    assert rc == 2  # VmatteError -> exit 2


# -- pipelining -------------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_pipelined_workers_keep_capture_order_and_drop_stale(workers):
    cam, matter, sink = FakeCamera(period=0.002), SlowMatter(0.02), RecordingSink()
    loop = LiveLoop(cam, matter, [sink], background=passthrough, smoothing=0.0, max_frames=20, stats_every=0,
                    workers=workers)
    stats = loop.run()
    idx = list(loop.out_indices)
    assert stats.frames_out == 20 == len(sink.frames_seen)
    assert all(b > a for a, b in zip(idx, idx[1:])), idx  # in capture order, never an older frame
    assert [int(f[0, 0, 0]) for f in sink.frames_seen] == [i % 256 for i in idx]
    assert stats.dropped > 0 and stats.latency_ms_p95 < 300
    assert {"wait", "matte", "prepare", "composite"} <= set(stats.timings_ms)


@pytest.mark.parametrize("delay,want", [(0.004, 1), (0.03, 2)])
def test_adaptive_in_flight_uses_two_workers_only_when_one_cannot_keep_up(delay, want):
    """A 100 fps camera: a 4 ms matte keeps up with one frame in flight, a 30 ms one does not; the
    warm-up's matte time makes that choice before the first frame, so neither needs a switch."""
    cam, matter = FakeCamera(period=0.01), SlowMatter(delay)
    loop = LiveLoop(cam, matter, [NullSink()], background=passthrough, smoothing=0.0, max_frames=45, stats_every=0,
                    fps_cap=100.0, workers=2, adaptive=True)
    stats = loop.run()
    assert stats.frames_out == 45
    assert stats.in_flight == want and stats.in_flight_switches == 0


def test_adaptive_warm_up_mattes_the_first_frame_and_keeps_it():
    """The adaptive loop mattes the camera's first frame twice on each worker before it starts (to
    warm the threads up and time a matte alone) and still outputs that frame: a finite source loses
    nothing."""
    class WarmThenFast(SlowMatter):  # 0.2 s a matte during the warm-up (0.8 s, past max_latency), then 1 ms
        def __call__(self, rgb):
            self.delay = 0.2 if self.calls < 4 else 0.001
            return super().__call__(rgb)

    cam, matter = FakeCamera(period=0.01, n=12), WarmThenFast()
    sink = RecordingSink()
    stats = LiveLoop(cam, matter, [sink], background=passthrough, smoothing=0.0, stats_every=0, fps_cap=100.0,
                     workers=2, adaptive=True, max_latency=0.5, max_seconds=20).run()
    assert stats.stopped_by == "end of source"  # not max_seconds: an idle worker leaves at the end
    assert stats.frames_out == 12 and matter.calls == 12 + 2 * 2
    assert [int(f[0, 0, 0]) for f in sink.frames_seen] == list(range(12))
    assert stats.latency_ms_max < 600  # the warm-up frame's latency counts from the loop's start


def test_stop_during_the_warm_up_ends_the_loop_and_its_threads():
    import threading

    holder = {}

    def matte(rgb):
        holder["loop"].stop()
        return np.zeros(rgb.shape[:2], np.float32)

    loop = LiveLoop(FakeCamera(period=0.01), matte, [NullSink()], background=passthrough, smoothing=0.0,
                    stats_every=0, workers=2, adaptive=True)
    holder["loop"] = loop
    stats = loop.run()
    assert stats.frames_out <= 1
    assert not [t for t in threading.enumerate() if t.name.startswith("vmatte-matte")]


def budget_matte(per_cell: float):
    """A matte whose time follows a refiner budget ({"k": cells}, starting at 32): per_cell s a cell."""
    budget = {"k": 32}

    def matte(rgb):
        time.sleep(per_cell * budget["k"] + 0.002)
        return np.full(rgb.shape[:2], 0.5, np.float32)

    return budget, matte


def test_adaptive_loop_lowers_the_refiner_budget_only_when_two_workers_cannot_keep_up():
    """A 100 fps camera and a matte whose time follows the refiner budget (1 ms a cell): with both
    workers busy and 32 ms mattes the budget falls until the mattes are fast enough."""
    budget, matte = budget_matte(0.001)
    loop = LiveLoop(FakeCamera(period=0.01), matte, [NullSink()], background=passthrough, smoothing=0.0,
                    max_frames=150, stats_every=0, fps_cap=100.0, workers=2, adaptive=True,
                    refine_patches=(32, lambda k: budget.update(k=k)))
    stats = loop.run()
    assert stats.in_flight == 2
    assert stats.refine_patches == budget["k"] < 32 and stats.refine_switches >= 1


def test_budget_policy_runs_with_one_worker_and_stays_off_without_a_budget():
    """One worker (a 1-core machine) is always busy: the budget still falls; a None budget (a GPU
    backend's) turns the policy off."""
    budget, matte = budget_matte(0.0006)
    loop = LiveLoop(FakeCamera(period=0.01), matte, [NullSink()], background=passthrough, smoothing=0.0,
                    max_frames=100, stats_every=0, fps_cap=100.0, workers=1, adaptive=True,
                    refine_patches=(32, lambda k: budget.update(k=k)))
    stats = loop.run()
    assert stats.refine_patches == budget["k"] < 32
    calls = []
    loop = LiveLoop(FakeCamera(period=0.01), SlowMatter(0.02), [NullSink()], background=passthrough, smoothing=0.0,
                    max_frames=40, stats_every=0, fps_cap=100.0, workers=1, adaptive=True, refine_patches=(None, calls.append))
    stats = loop.run()
    assert stats.refine_patches is None and calls == []


def test_fast_mattes_keep_the_full_refiner_budget():
    set_to = []
    loop = LiveLoop(FakeCamera(period=0.01), SlowMatter(0.002), [NullSink()], background=passthrough, smoothing=0.0,
                    max_frames=60, stats_every=0, fps_cap=100.0, workers=2, adaptive=True,
                    refine_patches=(32, set_to.append))
    stats = loop.run()
    assert stats.refine_patches == 32 and stats.refine_switches == 0 and set_to == []


def test_matte_returning_a_reused_buffer_is_copied_before_the_next_frame():
    """Matter.matte may return a view of a per-thread buffer; the worker overwrites it with the next
    frame while the output stage is still using the previous one."""
    buf = np.zeros((H + 8, W), np.float32)

    def matte(rgb):
        buf[:] = rgb[0, 0, 0] / 255.0  # this frame's value, written at once ...
        time.sleep(0.01)  # ... while the output stage works on the previous frame
        return buf[:H]  # a view (owndata False)

    seen = []
    loop = LiveLoop(FakeCamera(period=0.002), matte, [NullSink()], background=passthrough, smoothing=0.0,
                    max_frames=8, workers=1)
    loop.on_frame = lambda fr, a, out: seen.append((int(fr.rgb[0, 0, 0]), int(round(float(a[0, 0]) * 255))))
    loop.run()
    assert len(seen) == 8 and all(v == a for v, a in seen), seen


def test_smoother_two_phases_equal_call_and_reuse_buffers():
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 255, (H, W, 3), np.uint8) for _ in range(4)]
    alphas = [rng.random((H, W), np.float32) for _ in range(4)]
    a_sm, b_sm = MatteSmoother(0.5), MatteSmoother(0.5)
    kept = []
    for f, a in zip(frames, alphas):
        ref = a_sm(f, a)
        got = b_sm.apply(a, b_sm.weights(f), reuse=True)
        np.testing.assert_allclose(got, ref, atol=1e-6)
        assert got is not a
        kept.append(got)
    assert kept[1] is kept[3] and kept[0] is not kept[1]  # two buffers in turn after the first frame


def test_webcam_workers_option():
    from vmatte.commands.webcam import resolve_workers

    assert resolve_workers("auto", "onnxruntime", cpus=2) == 2
    assert resolve_workers("auto", "onnxruntime", cpus=1) == 1
    assert resolve_workers("auto", "tensorrt", cpus=16) == 1
    assert resolve_workers("3", "torch") == 3
    with pytest.raises(VmatteError, match="--workers"):
        resolve_workers("0", "onnxruntime")
    with pytest.raises(VmatteError, match="workers"):
        LiveLoop(FakeCamera(), SlowMatter(), workers=0)


def test_live_size_default_depends_on_the_backend_device():
    """Live video on a CPU backend defaults to the smaller generator size; an explicit --size or a
    GPU backend keeps its own."""
    from vmatte.commands.webcam import LIVE_CPU_SIZE, live_size

    assert live_size(None, "onnxruntime") == LIVE_CPU_SIZE
    assert live_size(320, "onnxruntime") == 320
    assert live_size(None, "tensorrt") is None  # a GPU backend: the model's own size
