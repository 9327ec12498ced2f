"""The live loop: camera -> matting -> temporal smoothing -> compositing -> sinks, with a live policy.

A capture thread reads the camera into a size-1 "latest frame" slot. `workers` matte threads each
take the freshest frame when they are free and matte it; the calling thread smooths, composites
and sends the results in capture order. A new frame replaces an unread one (the older one is
dropped and counted), so the output never lags behind a queue of stale frames; at most
workers + 1 frames are in flight. While a frame is being matted, the calling thread already does
the work that needs only the frame (the motion-adaptive smoothing weight, the blurred backdrop),
so after the matte only the EMA, one blend and the sinks remain on the latency path. A frame
older than `max_latency` when picked up is swapped for a fresher one if that arrives within a
frame or two (never starving a model slower than max_latency), and an optional fps cap throttles
work. Output runs in the calling thread so Ctrl-C lands there and a preview window (which OpenCV
wants on the main thread) can be serviced between frames.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Protocol

import cv2
import numpy as np

from .errors import VmatteError
from .ops.compose import blur_backdrop, blur_background, composite
from .ops.temporal import guide, max_change

log = logging.getLogger(__name__)
WARM_RUNS = 2  # mattes of the first frame on each worker before an adaptive loop starts

__all__ = ["LatestSlot", "MatteSmoother", "LiveLoop", "LiveStats", "ema", "motion_map", "static_flicker",
           "DEFAULT_KEY_BACKGROUNDS"]

MOTION_WORK_SIDE = 160  # long side (px) at which motion_map() computes frame differences
SMOOTH_WORK_SIDE = 320  # about the long side (px) of the smoother's colour guide (vmatte.ops.temporal.guide)
# Preview actions -> --background specs (the "image" entry is filled in by the caller).
DEFAULT_KEY_BACKGROUNDS: dict[str, str | None] = {"blur": "blur", "color": "green", "image": None,
                                                  "none": "transparent"}
SMOOTHING_STEP = 0.1
LATE_WAIT = 0.07  # s to wait for a fresher frame than a late one (about two frames at 30 fps)


class LiveSource(Protocol):
    def read(self, stop: threading.Event | None = None) -> Any: ...


class LiveSink(Protocol):
    def send(self, frame: np.ndarray) -> None: ...


# -- the latest-frame slot --------------------------------------------------------------------------
class LatestSlot:
    """A one-item mailbox: put() replaces an unread item (counting it in `drops`), get() waits."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._has = False
        self._closed = False
        self.drops = 0
        self.puts = 0

    def put(self, item: Any) -> bool:
        """Store `item`; True when it replaced (dropped) an unread one."""
        with self._cond:
            dropped = self._has
            if dropped:
                self.drops += 1
            self._item, self._has = item, True
            self.puts += 1
            self._cond.notify()
            return dropped

    def get(self, timeout: float | None = None) -> Any:
        """The newest item (removing it), or None after `timeout` s or once closed and empty."""
        with self._cond:
            if not self._has and not self._closed:
                self._cond.wait(timeout)
            if not self._has:
                return None
            item, self._item, self._has = self._item, None, False
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


# -- temporal smoothing -----------------------------------------------------------------------------
def ema(prev: np.ndarray, alpha: np.ndarray, weight: float | np.ndarray) -> np.ndarray:
    """weight*prev + (1-weight)*alpha (weight scalar or per pixel [H,W]) -> float32 [H,W].

    weight=0 returns the new matte unchanged; weight near 1 holds the old one (less flicker, more lag).
    """
    a = np.asarray(alpha, np.float32)
    if np.isscalar(weight) or np.ndim(weight) == 0:
        w = float(weight)
        if w <= 0.0:
            return a.copy()
        return cv2.addWeighted(np.asarray(prev, np.float32), w, a, 1.0 - w, 0.0)
    w = np.asarray(weight, np.float32)
    d = cv2.subtract(np.asarray(prev, np.float32), a)  # [H,W] float32, one pass each (no temporaries)
    cv2.multiply(d, w, dst=d)
    return cv2.add(a, d, dst=d)


def _grey_small(rgb: np.ndarray, side: int = MOTION_WORK_SIDE) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = min(1.0, side / max(h, w))
    small = rgb if s >= 1.0 else cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) * np.float32(1 / 255)


def _motion_small(prev_grey: np.ndarray, grey: np.ndarray) -> np.ndarray:
    d = cv2.absdiff(prev_grey, grey)
    return cv2.GaussianBlur(d, (0, 0), 1.0)


def motion_map(prev_rgb: np.ndarray, rgb: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Per-pixel scene change in [0,1]: |grey_t - grey_t-1| at low resolution, softened and upsampled.

    size=(H,W) of the result (default: the frame's). Computed at MOTION_WORK_SIDE px on the long side,
    which both saves time and ignores sensor noise.
    """
    d = _motion_small(_grey_small(prev_rgb), _grey_small(rgb))
    H, W = size or rgb.shape[:2]
    return cv2.resize(d, (W, H), interpolation=cv2.INTER_LINEAR)


class MatteSmoother:
    """Temporal EMA of the alpha matte against frame-to-frame flicker (live: causal, no look-ahead).

    smoothing in [0,1]: 0 = off (output = current matte), 0.8 = 80% of the running matte kept each
    frame, towards 1 = steadier but laggier edges. With motion_adaptive, the weight at a pixel is
    smoothing * (1 - d / motion_scale)^2 (0 past motion_scale), d being the largest change of R, G,
    B (0..1) between the frame and the colour the running matte was made from: a running colour,
    averaged with the same weights as the matte. Comparing with that rather than with the previous
    frame alone also catches slow motion, which would otherwise pile up lag a little each frame.
    Weights are computed on small colour guides (about SMOOTH_WORK_SIDE px, the file filter's
    vmatte.ops.temporal.guide) and upsampled once. The state resets when the frame size changes.
    Defaults tuned on real clips: benchmarks/flicker.py, docs/benchmarks.md.
    """

    def __init__(self, smoothing: float = 0.8, motion_adaptive: bool = True, motion_scale: float = 0.05):
        self.smoothing = smoothing
        self.motion_adaptive = motion_adaptive
        self.motion_scale = float(motion_scale)
        self.reset()

    @property
    def smoothing(self) -> float:
        return self._s

    @smoothing.setter
    def smoothing(self, value: float) -> None:
        v = float(value)
        if not 0.0 <= v <= 1.0:
            raise VmatteError(f"smoothing {v} is out of range; use a value in 0..1 (0 = off, 0.8 = default)")
        self._s = min(v, 0.98)  # 1.0 would freeze the matte forever

    def reset(self) -> None:
        self._prev_alpha: np.ndarray | None = None
        self._colour: np.ndarray | None = None  # running colour guide float32 [h,w,3], 0..255
        self._wbuf: np.ndarray | None = None
        self._bufs: list[np.ndarray] = []
        self._prev_shape: tuple[int, ...] | None = None

    def weights(self, rgb: np.ndarray, size: tuple[int, int] | None = None) -> float | np.ndarray | None:
        """Phase 1 (needs only the frame): the EMA weight for this frame, scalar or float32 [H,W].

        None means "no smoothing this frame" (first frame, size change, smoothing 0). Advances the
        motion state, so call it once per frame, then apply() with that frame's matte. size=(H,W)
        of the matte (default: the frame's).
        """
        H, W = size or rgb.shape[:2]
        s = self._s
        g = guide(rgb, SMOOTH_WORK_SIDE).astype(np.float32) if self.motion_adaptive else None  # [h,w,3]
        colour, self._colour = self._colour, g
        same = self._prev_shape == rgb.shape
        self._prev_shape = rgb.shape
        if not same or s <= 0.0:
            return None
        if g is None or colour is None:
            return s
        d = max_change(g, colour)  # [h,w] largest change of R, G, B (0..255)
        w_small = np.clip(1.0 - d * np.float32(1.0 / (255.0 * self.motion_scale)), 0.0, 1.0)
        np.multiply(w_small, w_small, out=w_small)
        w_small *= np.float32(s)
        self._colour = colour + (g - colour) * (1.0 - w_small)[..., None]  # the colour the new matte stands for
        buf = self._wbuf if self._wbuf is not None and self._wbuf.shape == (H, W) else None
        self._wbuf = cv2.resize(w_small, (W, H), dst=buf, interpolation=cv2.INTER_LINEAR)  # [H,W], reused
        return self._wbuf

    def apply(self, alpha: np.ndarray, weight: float | np.ndarray | None, reuse: bool = False) -> np.ndarray:
        """Phase 2: the smoothed matte float32 [H,W] from this frame's matte and weights()'s result.

        The result is never `alpha` itself, so the caller may reuse its matte buffer. reuse=True
        (the live loop) writes into one of two buffers used in turn, valid until the next-but-one
        call, which saves page faults on a fresh 720p array per frame; else a new array.
        """
        alpha = np.asarray(alpha, np.float32)
        prev = self._prev_alpha
        if weight is None or prev is None or prev.shape != alpha.shape:
            out = alpha.copy()
        else:
            # Two alternating output buffers: `prev` is read while the other is written, and the
            # caller's copy of the last result stays valid for one more frame (no page faults).
            bufs = self._bufs
            if reuse and (len(bufs) != 2 or bufs[0].shape != alpha.shape):
                bufs[:] = [np.empty_like(alpha), np.empty_like(alpha)]
            dst = (bufs[0] if bufs[0] is not prev else bufs[1]) if reuse else None
            if np.ndim(weight) == 0:
                out = cv2.addWeighted(prev, float(weight), alpha, 1.0 - float(weight), 0.0, dst=dst)
            else:
                d = cv2.subtract(prev, alpha, dst=dst)  # [H,W] float32
                cv2.multiply(d, weight, dst=d)
                out = cv2.add(alpha, d, dst=d)
        self._prev_alpha = out
        return out

    @property
    def previous(self) -> np.ndarray | None:
        """The last smoothed matte float32 [H,W] (None before the first frame)."""
        return self._prev_alpha

    def __call__(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """Smoothed alpha float32 [H,W] for this frame (rgb uint8 [H,W,3] drives the motion map)."""
        alpha = np.asarray(alpha, np.float32)
        return self.apply(alpha, self.weights(rgb, alpha.shape))


def static_flicker(prev_rgb: np.ndarray, rgb: np.ndarray, prev_alpha: np.ndarray, alpha: np.ndarray,
                   threshold: float = 0.02) -> float:
    """Mean |alpha_t - alpha_t-1| over pixels where the scene does not move (grey change < threshold).

    A matte of a still region should not change; what it does change there is flicker. Returns nan
    when no pixel is static.
    """
    static = motion_map(prev_rgb, rgb, alpha.shape) < threshold  # [H,W] bool
    if not static.any():
        return float("nan")
    d = cv2.absdiff(np.asarray(alpha, np.float32), np.asarray(prev_alpha, np.float32))
    return float(d[static].mean())


# -- stats ------------------------------------------------------------------------------------------
@dataclass
class LiveStats:
    """What a live run did. Latency is frame arrival (capture) to the last sink's send returning."""

    seconds: float = 0.0
    frames_in: int = 0  # frames the camera delivered
    frames_out: int = 0  # frames sent to the sinks
    dropped: int = 0  # replaced in the slot before being processed (stale)
    late: int = 0  # older than max_latency when picked up and replaced by a fresher one
    fps: float = 0.0  # output frames per second
    input_fps: float = 0.0
    latency_ms_p50: float = float("nan")
    latency_ms_p95: float = float("nan")
    latency_ms_max: float = float("nan")
    interrupted: bool = False
    stopped_by: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)  # mean per stage
    in_flight: int = 0  # frames matted at once at the end (adaptive: what the policy chose)
    in_flight_switches: int = 0  # times the adaptive policy changed it
    refine_patches: int | None = None  # the refiner's cell budget at the end (adaptive: the budget policy's)
    refine_switches: int = 0  # times the budget policy changed it

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (f"{self.fps:.1f} fps out ({self.input_fps:.1f} in), latency p50 {self.latency_ms_p50:.0f} ms "
                f"p95 {self.latency_ms_p95:.0f} ms, dropped {self.dropped + self.late}")


def _pct(values: Iterable[float], q: float) -> float:
    v = np.asarray(list(values), np.float64)
    return float(np.percentile(v, q)) if v.size else float("nan")


# -- the loop ---------------------------------------------------------------------------------------
class LiveLoop:
    """Run a live source through matting and compositing into sinks until stopped.

    source: entered object with read(stop) -> frame with .index, .rgb, .t (perf_counter arrival) or
    None at the end (vmatte.io.camera sources). matte: rgb uint8 [H,W,3] -> alpha float32 [H,W]
    (e.g. Matter(...).matte). sinks: entered objects with send(frame); those with poll() (the
    preview window) are polled for key actions. background: a --background spec or a
    vmatte.backgrounds.Background; switch it while running with set_background() from any thread.

    Pipeline: a capture thread fills the latest-frame slot; `workers` matte threads each take the
    freshest frame when they are free (so at most `workers` frames are being matted and none waits
    in a queue); the calling thread smooths, composites and sends the results in capture order,
    overlapping the matting of the next frame(s). workers=1 suits a backend using every core for
    one frame; workers=2 with one-thread sessions keeps two frames in flight (more throughput on a
    2-core CPU). `matte` must be safe to call from `workers` threads at once when workers > 1.
    adaptive: with workers > 1, let vmatte.live_policy.InFlightPolicy choose from measured matte
    times how many of them take frames (one while mattes stay well under the camera interval, all
    of them when they come close). refine_patches: (the matte's full refiner budget, a setter for
    it), e.g. (m.refine_patches, lambda k: setattr(m, "refine_patches", k)) for a Matter m (a None
    budget, as a GPU backend's, turns it off): when adaptive (with any number of workers),
    vmatte.live_policy.RefineBudget lowers the budget while even every worker cannot keep up with
    the camera, and raises it again when the mattes get fast enough.
    """

    def __init__(self, source: LiveSource, matte: Callable[[np.ndarray], np.ndarray], sinks: Iterable[LiveSink] = (),
                 *, background: Any = "blur", smoothing: float = 0.8, motion_adaptive: bool = True,
                 fps_cap: float | None = None, max_latency: float = 0.5, max_seconds: float | None = None,
                 max_frames: int | None = None, stats_every: float = 5.0,
                 key_backgrounds: dict[str, Any] | None = None, keep_latencies: int = 100_000, workers: int = 1,
                 adaptive: bool = False, refine_patches: tuple[int, Callable[[int], None]] | None = None):
        if int(workers) < 1:
            raise VmatteError(f"workers={workers} is invalid; use 1 (one frame matted at a time) or more")
        self.source = source
        self.matte = matte
        self.sinks = list(sinks)
        self.smoother = MatteSmoother(smoothing, motion_adaptive)
        self.fps_cap = float(fps_cap) if fps_cap else None
        self.max_latency = float(max_latency) if max_latency else None
        self.max_seconds = max_seconds
        self.max_frames = max_frames
        self.stats_every = stats_every
        self.workers = int(workers)
        self.adaptive = bool(adaptive) and self.workers > 1  # the in-flight policy
        self.adapt_budget = bool(adaptive)  # the refiner budget's policy (one worker too: it is then always busy)
        self._active = self.workers  # workers allowed to take frames (the policy's choice when adaptive)
        self.refine_patches = refine_patches
        self.key_backgrounds = dict(DEFAULT_KEY_BACKGROUNDS, **(key_backgrounds or {}))
        self._bg_lock = threading.Lock()
        self._retired: list[Any] = []
        self._background = self._parse(background)
        self._stop = threading.Event()
        self._stop_reason = ""
        self._slot = LatestSlot()
        self._warm_frame: Any = None  # the camera's first frame while the workers warm up on it (run())
        self._error: BaseException | None = None
        self._eos = threading.Event()
        self.latencies: deque[float] = deque(maxlen=keep_latencies)  # seconds
        self.out_indices: deque[int] = deque(maxlen=keep_latencies)
        # on_frame(captured, alpha, out) after each send; alpha is reused two frames later: copy to keep.
        self.on_frame: Callable[[Any, np.ndarray, np.ndarray], None] | None = None
        self._tsum: dict[str, float] = {}

    # -- controls (thread-safe) -----------------------------------------------------------------
    @staticmethod
    def _parse(spec: Any) -> Any:
        from .backgrounds import parse_background

        if callable(spec) and not hasattr(spec, "render"):
            return _FnBackground(spec)
        return parse_background(spec)

    @property
    def background(self) -> Any:
        with self._bg_lock:
            return self._background

    def set_background(self, spec: Any) -> None:
        """Switch the background (spec string, Background, or fn(rgb, alpha) -> frame); takes effect next frame."""
        new = self._parse(spec)  # parse outside the lock: may read a file, may raise
        with self._bg_lock:
            old, self._background = self._background, new
            if old is not new:
                self._retired.append(old)  # closed by the loop thread, which may be rendering with it now
        log.info("background -> %r", new)

    @property
    def smoothing(self) -> float:
        return self.smoother.smoothing

    @smoothing.setter
    def smoothing(self, value: float) -> None:
        self.smoother.smoothing = min(1.0, max(0.0, float(value)))
        log.info("smoothing -> %.2f", self.smoother.smoothing)

    def stop(self, reason: str = "stop") -> None:
        """Ask the loop to finish after the current frame (any thread, e.g. a signal handler)."""
        if not self._stop.is_set():
            self._stop_reason = reason
        self._stop.set()
        self._slot.close()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def handle_action(self, action: str | None) -> None:
        """Apply a preview key action: background switch, smoothing +/-, quit."""
        if not action:
            return
        if action == "quit":
            self.stop("quit key")
        elif action == "smooth+":
            self.smoothing = self.smoothing + SMOOTHING_STEP
        elif action == "smooth-":
            self.smoothing = self.smoothing - SMOOTHING_STEP
        elif action in self.key_backgrounds:
            spec = self.key_backgrounds[action]
            if spec is None:
                log.warning("no %s background configured for this key; pass --background-image PATH", action)
                return
            try:
                self.set_background(spec)
            except VmatteError as e:
                log.warning("cannot switch background: %s", e)

    # -- threads --------------------------------------------------------------------------------
    def _fail(self, e: BaseException, reason: str) -> None:
        if self._error is None:
            self._error = e
        self._stop_reason = self._stop_reason or reason
        self._stop.set()
        self._slot.close()

    def _capture(self) -> None:
        try:
            while not self._stop.is_set():
                fr = self.source.read(self._stop)
                if fr is None:
                    break
                self._slot.put(fr)
        except BaseException as e:  # handed to the loop thread and re-raised there
            self._fail(e, "capture error")
        finally:
            self._eos.set()
            self._slot.close()

    def _warm_up(self, i: int) -> None:
        """Worker i's warm-up, before the loop starts: matte the camera's first frame WARM_RUNS times
        on this thread (a thread's first mattes run slower: its allocations, scratch buffers and
        caches), one worker at a time so each matte runs alone; worker 0's fastest time tells the
        in-flight policy what a matte costs alone. A failure is left for the loop to meet again."""
        try:
            if i > 0:
                self._warmed[i - 1].wait()
            for _ in range(WARM_RUNS):
                if self._stop.is_set():
                    break
                t0 = time.perf_counter()
                self.matte(self._warm_frame.rgb)
                self._warm_times[i].append(time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 - the worker's loop meets it again and reports it
            log.debug("live warm-up of worker %d stopped: %s", i, e)
        finally:
            self._warmed[i].set()
        self._go.wait()

    def _begin(self, cap: threading.Thread, workers: list[threading.Thread], interval: float) -> tuple[Any, Any]:
        """Start the loop: for an adaptive loop, warm its workers up on the camera's first frame
        (each in turn, _warm_up) and make the in-flight policy's first choice from a matte's time
        alone; then the live policies, the capture thread and the workers. -> (in-flight policy,
        refiner budget policy), each None when off."""
        policy = budget = None
        self._warm_frame = self.source.read(self._stop) if self.adaptive else None
        self._warm_times: list[list[float]] = [[] for _ in workers]
        if self._warm_frame is not None:
            for w in workers:
                w.start()
            for e in self._warmed:
                while not e.wait(0.1) and not self._stop.is_set():
                    pass
        if self.adaptive:
            from .live_policy import InFlightPolicy

            alone = self._warm_times[0][1:] or self._warm_times[0]
            policy = InFlightPolicy(self.workers, interval, alone_s=min(alone) if alone else None)
            if policy.active > 1:
                log.info("live: %d frames in flight from the start (a matte alone, %.1f ms, is over %.0f%% of the "
                         "camera interval)", policy.active, 1e3 * min(alone), 100 * policy.high)
        self._active = policy.active if policy is not None else self.workers
        if self.adapt_budget and self.refine_patches is not None and self.refine_patches[0] is not None:
            from .live_policy import RefineBudget

            budget = RefineBudget(self.refine_patches[0], interval)
        if self._warm_frame is not None:
            fr = self._warm_frame  # still the loop's first frame, its latency counted from now
            self._slot.put(dataclasses.replace(fr, t=time.perf_counter()) if dataclasses.is_dataclass(fr) else fr)
        self._go.set()
        cap.start()
        if self._warm_frame is None:
            for w in workers:
                w.start()
        return policy, budget

    def _take(self) -> tuple[int, Any, float] | None:
        """The freshest frame for a free matte worker: (ticket, frame, pick-up time), None at the end.

        Tickets number the frames in pick-up (= capture) order; the output stage follows them.
        """
        with self._take_lock:
            while not self._stop.is_set():
                now = time.perf_counter()
                if self.fps_cap and now < self._next_due:
                    if self._stop.wait(self._next_due - now):
                        return None
                fr = self._slot.get(timeout=0.1)
                if fr is None:
                    if self._eos.is_set():
                        return None
                    continue
                picked = time.perf_counter()
                if self.max_latency is not None and picked - fr.t > self.max_latency:
                    # Too old (a driver's buffered frame, or a stall): take a fresher one if it comes
                    # within a frame or two; else use this one (dropping it would starve a slow model).
                    newer = self._slot.get(timeout=min(self.max_latency, LATE_WAIT))
                    if newer is not None:
                        self._late += 1
                        fr, picked = newer, time.perf_counter()
                if self.fps_cap:
                    self._next_due = max(self._next_due + 1.0 / self.fps_cap, picked)
                ticket = self._tickets
                self._tickets += 1
                return ticket, fr, picked
            return None

    def _matte_worker(self, i: int = 0) -> None:
        """Take the freshest frame when free, matte it, hand it to the output stage; repeat.
        Worker i idles while the in-flight policy allows fewer than i + 1 workers."""
        try:
            if self._warm_frame is not None:
                self._warm_up(i)
            while not self._stop.is_set():
                if i >= self._active:
                    if self._eos.is_set():  # the source ended: the active workers take what is left
                        break
                    self._stop.wait(0.005)
                    continue
                if not self._inflight.acquire(timeout=0.1):  # bounded: output stage is behind
                    continue
                got = self._take()
                if got is None:
                    self._inflight.release()
                    break
                ticket, fr, picked = got
                with self._done_cond:
                    self._taken[ticket] = fr  # the output stage prepares it meanwhile
                    self._done_cond.notify_all()
                t0 = time.perf_counter()
                alpha = self.matte(fr.rgb)  # [H,W] float32
                if isinstance(alpha, np.ndarray) and not alpha.flags.owndata:
                    alpha = alpha.copy()  # a view of a per-thread buffer the next frame overwrites
                t1 = time.perf_counter()
                with self._done_cond:
                    self._done[ticket] = (fr, alpha, picked, t0, t1)
                    self._done_cond.notify_all()
        except BaseException as e:  # Ctrl-C surfaces here when raised inside matte; handled by run()
            self._fail(e, "interrupted" if isinstance(e, KeyboardInterrupt) else "matting error")
        finally:
            with self._done_cond:
                self._alive -= 1
                self._done_cond.notify_all()

    def _close_retired(self) -> None:
        with self._bg_lock:
            retired, self._retired = self._retired, []
        for bg in retired:
            try:
                bg.close()
            except Exception as e:  # pragma: no cover - best effort
                log.debug("closing background %r: %s", bg, e)

    def _add(self, key: str, seconds: float) -> None:
        self._tsum[key] = self._tsum.get(key, 0.0) + seconds

    def prepare(self, fr: Any) -> tuple[Any, Any, Any]:
        """Output work that needs only the frame, run while it is being matted: the smoothing
        weight and, for the blur background, the blurred backdrop (weighted by the previous
        frame's matte). Returns (background, weight, backdrop or None)."""
        t0 = time.perf_counter()
        bg = self.background
        H, W = fr.rgb.shape[:2]
        weight = self.smoother.weights(fr.rgb, (H, W))
        backdrop = None
        if type(bg).__name__ == "BlurBackground" and getattr(bg, "sigma", 0) > 0:
            prev = self.smoother.previous
            if prev is not None and prev.shape == (H, W):
                backdrop = blur_backdrop(fr.rgb, prev, bg.sigma)
        self._add("prepare", time.perf_counter() - t0)
        return bg, weight, backdrop

    def process(self, fr: Any, alpha: np.ndarray | None = None, prepared: tuple | None = None) -> np.ndarray:
        """Smooth and composite one captured frame (matting it first when `alpha` is None), send it
        to every sink; returns the output frame. `prepared` is prepare(fr)'s result, if done."""
        if alpha is None:
            t = time.perf_counter()
            alpha = self.matte(fr.rgb)  # [H,W] float32
            self._add("matte", time.perf_counter() - t)
        bg, weight, backdrop = prepared if prepared is not None else self.prepare(fr)
        t0 = time.perf_counter()
        alpha = self.smoother.apply(alpha, weight, reuse=True)  # [H,W] float32, valid for one more frame
        t1 = time.perf_counter()
        if backdrop is not None:
            out = composite(fr.rgb, alpha, backdrop)
        elif type(bg).__name__ == "BlurBackground":
            out = blur_background(fr.rgb, alpha, bg.sigma)  # first frame: no previous matte yet
        else:
            out = bg.render(fr.rgb, alpha, fr.index)
        t2 = time.perf_counter()
        for s in self.sinks:
            s.send(out)
        t3 = time.perf_counter()
        self._add("smooth", t1 - t0)
        self._add("composite", t2 - t1)
        self._add("sinks", t3 - t2)
        if self.on_frame is not None:
            self.on_frame(fr, alpha, out)
        return out

    def _next_result(self, ticket: int, timeout: float) -> tuple[Any, tuple | None]:
        """(the frame with this ticket once a worker took it or None, its matte result or None)."""
        with self._done_cond:
            if ticket not in self._done and self._alive > 0 and not self._stop.is_set():
                if ticket not in self._taken or self._prepared_ticket == ticket:
                    self._done_cond.wait(timeout)
            return self._taken.get(ticket), self._done.pop(ticket, None)

    def run(self) -> LiveStats:
        """Run until stop(), Ctrl-C, max_seconds/max_frames or the end of a non-looping source.

        Returns the stats; an error in the capture or a matte thread (camera gone for good, model
        failure) is re-raised here. Ctrl-C ends the run cleanly (stats.interrupted is True).
        Frames already matted when the loop stops are still sent (at most `workers`).
        """
        stats = LiveStats()
        self._tsum = {}
        self._late = 0
        self._tickets = 0
        self._next_due = 0.0
        self._take_lock = threading.Lock()
        self._done: dict[int, tuple] = {}
        self._taken: dict[int, Any] = {}
        self._prepared_ticket = -1
        self._done_cond = threading.Condition()
        # Frames taken from the slot but not yet sent: one per worker plus the one being output.
        self._inflight = threading.BoundedSemaphore(self.workers + 1)
        self._alive = self.workers
        pollers = [s for s in self.sinks if callable(getattr(s, "poll", None))]
        cap = threading.Thread(target=self._capture, name="vmatte-capture", daemon=True)
        rates = [r for r in (self.fps_cap, getattr(self.source, "fps", None)) if r and r > 0]
        interval = 1.0 / min(rates or [30.0])  # frames come at the slower rate
        workers = [threading.Thread(target=self._matte_worker, args=(i,), name=f"vmatte-matte-{i}", daemon=True)
                   for i in range(self.workers)]
        self._warmed = [threading.Event() for _ in workers]
        self._go = threading.Event()
        policy = budget = None
        start = time.perf_counter()
        try:
            policy, budget = self._begin(cap, workers, interval)
            start = time.perf_counter()
            self._next_due = start
            next_log = start + self.stats_every if self.stats_every else float("inf")
            win_start, win_frames, win_lat = start, 0, []
            ticket = 0
            prepared: tuple | None = None
            while True:
                now = time.perf_counter()
                if self.max_seconds is not None and now - start >= self.max_seconds:
                    self._stop_reason = self._stop_reason or "max_seconds"
                    break
                taken, item = self._next_result(ticket, timeout=0.05)
                if taken is not None and self._prepared_ticket != ticket:
                    prepared = self.prepare(taken)  # overlaps the matting of this frame
                    self._prepared_ticket = ticket
                if item is None:
                    with self._done_cond:
                        finished = self._alive == 0 or self._stop.is_set()
                        finished = finished and ticket not in self._done
                    if finished:
                        if self._eos.is_set() and not self._stop.is_set():
                            self._stop_reason = self._stop_reason or "end of source"
                        break
                    for p in pollers:
                        self.handle_action(p.poll())
                    continue
                with self._done_cond:
                    self._taken.pop(ticket, None)
                ticket += 1
                fr, alpha, picked, t0, t1 = item
                self._close_retired()
                t_out = time.perf_counter()
                self.process(fr, alpha, prepared)
                done = time.perf_counter()
                self._inflight.release()
                self._add("wait", picked - fr.t)  # capture -> picked up by a matte worker
                self._add("matte", t1 - t0)
                self._add("queue", t_out - t1)  # matted -> output stage free
                saturated = self._active == self.workers  # while this frame was matted
                if policy is not None:
                    switches = policy.switches
                    self._active = policy.observe(t1 - t0)
                    if budget is not None and policy.switches != switches:
                        budget.reset()  # its window holds frames matted with the other worker count
                if budget is not None:
                    k = budget.budget
                    if budget.observe(t1 - t0, saturated) != k:
                        self.refine_patches[1](budget.budget)
                lat = done - fr.t
                self.latencies.append(lat)
                self.out_indices.append(fr.index)
                stats.frames_out += 1
                win_frames += 1
                win_lat.append(lat)
                for p in pollers:
                    self.handle_action(p.poll())
                if self.max_frames is not None and stats.frames_out >= self.max_frames:
                    self._stop_reason = self._stop_reason or "max_frames"
                    break
                if done >= next_log:
                    span = done - win_start
                    log.info("live: %.1f fps, latency p50 %.0f ms p95 %.0f ms, dropped %d, smoothing %.2f",
                             win_frames / span, _pct(win_lat, 50) * 1e3, _pct(win_lat, 95) * 1e3,
                             self._slot.drops + self._late, self.smoothing)
                    win_start, win_frames, win_lat = done, 0, []
                    next_log = done + self.stats_every
        except KeyboardInterrupt:
            stats.interrupted = True
            self._stop_reason = "interrupted"
            log.info("live: interrupted, shutting down")
        finally:
            self._stop.set()
            self._go.set()  # workers still waiting after their warm-up
            self._slot.close()
            self._warm_frame = None
            for t in [cap, *workers]:
                if t.ident is None:  # never started (the loop stopped during the warm-up)
                    continue
                t.join(timeout=5.0)
                if t.is_alive():  # pragma: no cover - a driver stuck in read() or a hung model
                    log.warning("%s did not stop within 5 s; leaving it to exit with the process", t.name)
            self._close_retired()
        end = time.perf_counter()
        if isinstance(self._error, KeyboardInterrupt):  # Ctrl-C landed in a matte thread
            stats.interrupted, self._error = True, None
            log.info("live: interrupted, shutting down")
        stats.seconds = end - start
        stats.frames_in = self._slot.puts
        stats.dropped = self._slot.drops
        stats.late = self._late
        stats.stopped_by = self._stop_reason or "stop"
        stats.in_flight = self._active
        stats.in_flight_switches = policy.switches if policy is not None else 0
        if self.refine_patches is not None and self.refine_patches[0] is not None:
            stats.refine_patches = budget.budget if budget is not None else self.refine_patches[0]
            stats.refine_switches = budget.switches if budget is not None else 0
        stats.fps = stats.frames_out / stats.seconds if stats.seconds > 0 else 0.0
        stats.input_fps = stats.frames_in / stats.seconds if stats.seconds > 0 else 0.0
        lats = list(self.latencies)
        stats.latency_ms_p50 = _pct(lats, 50) * 1e3
        stats.latency_ms_p95 = _pct(lats, 95) * 1e3
        stats.latency_ms_max = max(lats) * 1e3 if lats else float("nan")
        n = max(1, stats.frames_out)
        stats.timings_ms = {k: self._tsum.get(k, 0.0) / n * 1e3
                            for k in ("wait", "matte", "queue", "prepare", "smooth", "composite", "sinks")}
        log.info("live done (%s): %s", stats.stopped_by, stats.line())
        if self._error is not None:
            raise self._error
        return stats


class _FnBackground:
    """Adapter: a plain fn(rgb, alpha) -> frame used as a background."""

    alpha = False

    def __init__(self, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]):
        self.fn = fn

    def render(self, rgb: np.ndarray, alpha: np.ndarray, index: int = 0) -> np.ndarray:
        return self.fn(rgb, alpha)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"_FnBackground({getattr(self.fn, '__name__', 'fn')})"
