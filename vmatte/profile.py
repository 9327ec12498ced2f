"""Where a CPU frame's time goes: every stage of one frame's path through `vmatte process` on
onnxruntime (the light install's path, no torch), timed on its own per frame.

The path, in order: H.264 decode, yuv420p -> RGB, padding, the area resize and the uint8 ->
float conversions of vmatte.api.prepare (the full-resolution one only for an export without the
refiner's patch net), segmenter, generator, refiner (each split by op group with onnxruntime's
profiler, vmatte.graph_profile; the refiner's host plumbing on its own row), copy out, the
temporal filter's guide and push, the blur composite, RGB -> yuv420p as VideoSink converts it, libx264 encode. Beside it,
not summed: a colour background, and the webcam's smoother, blur backdrop and I420 conversion.

Frames are real: the shipped portrait through the sample clip's slow virtual camera
(vmatte.sample), because the refiner's work depends on where the subject's border lies. One thread
runs every stage in turn (onnxruntime with one intra-op thread as the backend runs it, the decoder
and encoder with one thread each, so each call does its own frame's work), so a stage's time is
its own; OpenCV's parallel loops and swscale still use their threads. Wall time by
perf_counter; CPU time of the whole process (process_time: every thread's, so a stage split over
threads shows its full cost) and of the calling thread (thread_time). CPU below wall time means
the stage waited: for a core another process held, on a shared machine.
"""
from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

log = logging.getLogger(__name__)

RATE = 25  # the sample clip's frame rate: the virtual camera moves u = i / 100 per frame
ENCODER = {"crf": "18", "preset": "veryfast"}  # VideoSink's H.264 settings

# (key, label, kind): "frame" stages are the path and are summed; "alt" ones replace a path stage
# in another configuration and are not. Op groups ("part") go under each model's row.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("decode", "decode H.264 (1 thread)", "frame"),
    ("yuv_in", "in: yuv420p -> RGB (OpenCV, as VideoSource)", "frame"),
    ("pad", "in: pad to whole 64-px cells", "frame"),
    ("resize", "in: area resize to the generator's size", "frame"),
    ("low_float", "in: low res uint8 -> float", "frame"),
    ("full_float", "in: full res uint8 -> float", "frame"),
    ("segmenter", "segmenter", "frame"),
    ("generator", "generator", "frame"),
    ("refiner", "refiner", "frame"),
    ("copy_out", "copy out (the matte from the backend's buffer)", "frame"),
    ("guide", "temporal filter: guide", "frame"),
    ("push", "temporal filter: push (filters the frame 4 back)", "frame"),
    ("blur", "composite: blur background (the default)", "frame"),
    ("yuv_out", "out: RGB -> yuv420p (OpenCV, as VideoSink)", "frame"),
    ("encode", "encode H.264 (libx264 veryfast, 1 thread)", "frame"),
    ("colour", "composite: colour background, instead of blur", "alt"),
    ("smoother", "webcam: smoother (weights + apply), instead of the filter", "alt"),
    ("webcam_blur", "webcam: blur backdrop + over, instead of blur", "alt"),
    ("i420", "webcam: RGB -> I420 for the virtual camera (OpenCV)", "alt"),
)
MODELS = ("segmenter", "generator", "refiner")


@dataclass
class StageTime:
    """One row: median and p95 wall ms per frame, median CPU ms of the process (all threads) and of
    the calling thread (None for op groups: those are onnxruntime's kernel times), and kind:
    "frame" (on the path, summed), "part" (inside the model row above), "alt" (another
    configuration's, not summed)."""

    name: str
    median_ms: float
    p95_ms: float
    cpu_ms: float | None = None
    thread_cpu_ms: float | None = None
    kind: str = "frame"
    n: int = 0


@dataclass
class StageProfile:
    """The stage profile at one size; `frame_ms` sums the medians of the path's stages."""

    size: str
    height: int
    width: int
    frames: int
    warmup: int
    long_side: int
    low_size: tuple[int, int]
    full_size: tuple[int, int]
    stages: list[StageTime]
    graphs: dict[str, Any] = field(default_factory=dict)  # vmatte.graph_profile.profile_graphs()
    system: dict[str, Any] = field(default_factory=dict)

    @property
    def frame_ms(self) -> float:
        return sum(s.median_ms for s in self.stages if s.kind == "frame")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "frame_ms": self.frame_ms}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageProfile:
        """The inverse of as_dict (a profile read back from `vmatte bench --stages --json`)."""
        d = {k: v for k, v in d.items() if k != "frame_ms"}
        d.update(stages=[StageTime(**s) for s in d["stages"]], low_size=tuple(d["low_size"]),
                 full_size=tuple(d["full_size"]))
        return cls(**d)


class _Clock:
    """Per-stage lists of milliseconds: wall, process CPU, thread CPU."""

    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}
        self.thread: dict[str, list[float]] = {}

    @contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        p0, c0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
        try:
            yield
        finally:
            t1, c1, p1 = time.perf_counter(), time.thread_time(), time.process_time()
            self.wall.setdefault(key, []).append((t1 - t0) * 1e3)
            self.cpu.setdefault(key, []).append((p1 - p0) * 1e3)
            self.thread.setdefault(key, []).append((c1 - c0) * 1e3)

    def count(self, key: str) -> int:
        return len(self.wall.get(key, ()))


def source_frames(h: int, w: int, n: int) -> Iterator[np.ndarray]:
    """n frames h x w of the sample clip (the shipped portrait, slow pan and zoom) as uint8 RGB."""
    from .sample import load_photo, render_frame

    photo = load_photo()
    for i in range(n):
        yield render_frame(photo, (i / (4 * RATE)) % 1.0, w, h)


def prepare_timed(rgb: np.ndarray, long_side: int, clock: _Clock, full_buf: np.ndarray | None = None, full: bool = True
                  ) -> tuple[np.ndarray | None, np.ndarray]:
    """vmatte.api.prepare in its pieces, each timed: pad, area resize, low and (when `full`, for a
    refiner graph that takes the whole frame) full to float."""
    from .api import to_nchw
    from .ops.resize import area_shrink
    from .ops.sizes import frame_sizes

    H, W = rgb.shape[:2]
    (Hp, Wp), (h, w) = frame_sizes(H, W, long_side)
    with clock("pad"):
        padded = rgb if (Hp, Wp) == (H, W) else cv2.copyMakeBorder(rgb, 0, Hp - H, 0, Wp - W, cv2.BORDER_REPLICATE)
    with clock("resize"):
        small = area_shrink(padded, w, h)
    with clock("low_float"):
        low = to_nchw(small)
    if not full:
        return None, low
    with clock("full_float"):
        out = to_nchw(padded, full_buf)
    return out, low


def _encoder(h: int, w: int, threads: int):
    """libx264 as VideoSink opens it (yuv420p, crf 18, veryfast, limited range, the size's matrix)."""
    import av

    from .io.sources import guess_matrix

    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base, enc.framerate = Fraction(1, RATE), Fraction(RATE)
    enc.options = dict(ENCODER)
    enc.colorspace = enc.color_primaries = enc.color_trc = guess_matrix(w, h)
    enc.color_range = 1
    enc.thread_count = threads
    return enc


def to_yuv420p(rgb: np.ndarray):
    """RGB uint8 [H,W,3] (even sides) -> a yuv420p av.VideoFrame, converted as VideoSink.write does."""
    from .io.sinks import i420_frame
    from .io.sources import guess_matrix
    from .ops.yuv import rgb_to_i420

    m = guess_matrix(rgb.shape[1], rgb.shape[0])
    return i420_frame(rgb_to_i420(rgb, m), m)


def encode_sample(h: int, w: int, n: int) -> list:
    """The H.264 packets of n frames of the sample clip at w x h (even sides), encoded as VideoSink
    encodes: the input the profile decodes."""
    from .ops.compose import pad_to_even

    enc = _encoder(h + h % 2, w + w % 2, threads=0)
    packets = []
    for i, rgb in enumerate(source_frames(h, w, n)):
        f = to_yuv420p(pad_to_even(rgb))
        f.pts = i
        packets += enc.encode(f)
    return packets + enc.encode(None)


def _stats(key: str, label: str, kind: str, clock: _Clock, warmup: int, frames: int) -> StageTime:
    wall, cpu, thread = (np.asarray(d.get(key, [])[warmup:warmup + frames]) for d in (clock.wall, clock.cpu, clock.thread))
    if wall.size == 0:
        return StageTime(label, 0.0, 0.0, None, None, kind, 0)
    return StageTime(label, float(np.median(wall)), float(np.percentile(wall, 95)), float(np.median(cpu)),
                     float(np.median(thread)), kind, int(wall.size))


def profile_stages(height: int = 720, width: int = 1280, frames: int = 60, warmup: int = 10, model: str = "rt",
                   weights: str | Path | None = None, graph_runs: int = 20, label: str | None = None,
                   progress: Callable[[str], None] | None = None) -> StageProfile:
    """Time every stage of `frames` frames (after `warmup`) of height x width through the CPU path
    (onnxruntime), then split each model's time by op group over `graph_runs` more frames with
    onnxruntime's profiler (0: skip). Returns a StageProfile; format_stage_table() prints it."""
    from .bench import onnx_dir_for, open_backend, resolve_weights, system_info
    from .errors import VmatteError
    from .graph_profile import GROUPS, group_label, profile_graphs
    from .io.sources import frame_to_array
    from .live import MatteSmoother
    from .ops.compose import blur_backdrop, blur_background, composite, composite_color, pad_to_even
    from .ops.patches import refine_alpha
    from .ops.sizes import frame_sizes, needs_refiner
    from .ops.temporal import DEFAULT, TemporalFilter, guide
    from .weights import read_header

    if frames < 1 or warmup < 0 or min(height, width) < 8:
        raise VmatteError(f"stage profile of {width}x{height}, {frames} frames after {warmup}: "
                          "need frames >= 1, warmup >= 0 and sides of 8 px or more")
    system = system_info()
    wpath, _ = resolve_weights(model, weights)
    long_side = int(json.loads(read_header(wpath)["config"])["gen_long_side"])
    h2, w2 = height + height % 2, width + width % 2  # the encoder's even size (VideoSink pads)
    radius = DEFAULT.radius
    # Enough input for every stage to fill: the decoder's reorder delay, the filter's look-ahead and
    # x264's lookahead (its first calls only buffer, and are not counted) come before the output.
    n_in = warmup + frames + radius + 24
    if progress:
        progress(f"encoding {n_in} frames of the sample at {width}x{height}")
    packets = encode_sample(height, width, n_in)

    import av

    clock = _Clock()
    dec = av.CodecContext.create("h264", "r")
    dec.thread_count = 1
    enc = _encoder(h2, w2, threads=1)
    filt, smoother = TemporalFilter(DEFAULT), MatteSmoother()
    backend = open_backend("onnxruntime", model, wpath)
    full_buf: np.ndarray | None = None
    need = warmup + frames
    encoded = [0]
    decoded = [0]
    shapes: dict[str, Any] = {}

    def output(rgb: np.ndarray, a: np.ndarray, pts: int) -> None:
        with clock("blur"):
            out = blur_background(rgb, a)
        with clock("colour"):
            composite_color(rgb, a, (0, 255, 0))
        with clock("webcam_blur"):
            composite(rgb, a, blur_backdrop(rgb, a))
        even = pad_to_even(out)
        with clock("yuv_out"):
            yf = to_yuv420p(even)
        with clock("i420"):
            cv2.cvtColor(even, cv2.COLOR_RGB2YUV_I420)
        yf.pts = pts
        if encoded[0]:  # x264 in steady state: each call encodes one frame
            with clock("encode"):
                encoded[0] += len(enc.encode(yf))
        else:  # still filling its lookahead: cheap calls, not counted
            encoded[0] += len(enc.encode(yf))

    plan = backend.patch_plan  # the refiner's patch net alone: the host gathers from the uint8 frame

    def patch_net(img: np.ndarray, base: np.ndarray) -> np.ndarray:
        with clock("patch_net"):
            return backend.run_patch_net(img, base)

    def matte(vf) -> None:
        nonlocal full_buf
        with clock("yuv_in"):
            rgb = frame_to_array(vf)
        H, W = rgb.shape[:2]
        (Hp, Wp), low_hw = frame_sizes(H, W, long_side)
        refine = needs_refiner((Hp, Wp), low_hw)
        full, low = prepare_timed(rgb, long_side, clock, full_buf, full=refine and plan is None)
        full_buf = full if full is not None else full_buf
        shapes.update(low=tuple(low.shape[-2:]), full=(Hp, Wp))
        with clock("segmenter"):
            mask = backend.run("segmenter", image=low)
        with clock("generator"):
            coarse = backend.run("generator", image=low, mask=mask)
        with clock("refiner"):  # or, for frames near the generator's size, the upsample Matter does instead
            if refine and plan is not None:
                out = refine_alpha(rgb, np.asarray(coarse)[0, 0], (Hp, Wp), *plan, patch_net)[None, None]
            elif refine:
                out = backend.run("refiner", image=full, coarse=coarse)
            else:
                out = cv2.resize(np.asarray(coarse, np.float32)[0, 0], (Wp, Hp), interpolation=cv2.INTER_LINEAR)[None, None]
        if refine and plan is not None and plan[0] > 0:  # the refiner's time outside its patch net
            for series in (clock.wall, clock.cpu, clock.thread):
                series.setdefault("plumbing", []).append(series["refiner"][-1] - series["patch_net"][-1])
        with clock("copy_out"):
            a = np.array(out[0, 0, :H, :W], dtype=np.float32, copy=True)
        with clock("smoother"):
            smoother.apply(a, smoother.weights(rgb, (H, W)), reuse=True)
        with clock("guide"):
            g = guide(rgb, DEFAULT.work_side)
        with clock("push"):
            done = filt.push((rgb, decoded[0]), g, a)
        decoded[0] += 1
        for (rgb_t, pts), a_t in done:
            output(rgb_t, a_t, pts)

    (hp, wp), low_hw0 = frame_sizes(height, width, long_side)
    # The full-resolution float frame is only made for a refiner graph that runs (not for the host
    # refiner, nor for frames small enough to skip the refiner).
    skipped = set() if plan is None and needs_refiner((hp, wp), low_hw0) else {"full_float"}
    if progress:
        progress(f"timing the stages of {need} frames ({warmup} warm-up)")
    try:
        for pkt in packets + [None]:
            if min(clock.count(k) for k, _, _ in STAGES if k not in skipped) >= need:
                break
            if pkt is None:
                vfs = dec.decode(None)  # the decoder's last frames (its flush is not a frame's work)
            else:
                with clock("decode"):
                    vfs = dec.decode(pkt)
            for vf in vfs:
                matte(vf)
        if progress and graph_runs > 0:
            progress(f"profiling the ONNX graphs over {graph_runs} frames")

        def graph_inputs():
            from .api import prepare

            for rgb in source_frames(height, width, graph_runs + 2):
                yield prepare(rgb, long_side)

        graphs = profile_graphs(onnx_dir_for(model, wpath), graph_inputs(), warmup=2) if graph_runs > 0 else {}
    finally:
        backend.close()
    short = [k for k, _, _ in STAGES if k not in skipped and clock.count(k) < need]
    if short:
        log.warning("stages with fewer than %d samples: %s", need, ", ".join(short))

    rows: list[StageTime] = []
    for key, text, kind in STAGES:
        if key in skipped:
            continue
        rows.append(_stats(key, text, kind, clock, warmup, frames))
        if key == "refiner" and clock.count("plumbing") >= need:
            rows.append(_stats("plumbing", "refiner: host plumbing (upsample, cell choice, window gather, paste)",
                               "part", clock, warmup, frames))
        if key in MODELS and key in graphs:
            g = graphs[key]
            for grp in GROUPS:
                if grp in g["groups"]:
                    s = g["groups"][grp]
                    rows.append(StageTime(f"{key}: {group_label(key, grp)}", s["median_ms"], s["p95_ms"], None,
                                          None, "part", g["runs"]))
            o = g["outside_kernels"]
            rows.append(StageTime(f"{key}: onnxruntime outside the kernels", o["median_ms"], o["p95_ms"], None,
                                  None, "part", g["runs"]))
    return StageProfile(label or f"{width}x{height}", height, width, frames, warmup, long_side,
                        shapes.get("low", (0, 0)), shapes.get("full", (0, 0)), rows, graphs, system)


def machine_line(system: dict[str, Any]) -> str:
    """One line for the record: CPU model, cores, load, library versions, date."""
    cores = system.get("cpu_count")
    usable = system.get("cpu_usable")
    load = system.get("load_average")
    return (f"{system.get('cpu')}, {cores} cores" + (f" ({usable} usable)" if usable and usable != cores else "")
            + (f", load average {load[0]:.2f} at start" if load else "")
            + f"; onnxruntime {system.get('onnxruntime')}, OpenCV {system.get('cv2')}, PyAV {system.get('av')}, "
            f"numpy {system.get('numpy')}, Python {system.get('python')}; {system.get('date')}")


def format_stage_table(p: StageProfile | dict[str, Any]) -> str:
    """Markdown: stage | median ms | p95 ms | CPU ms | share of the frame, the frame's sum,
    and the machine line. Op-group rows are indented under their model; alternatives are not
    summed (their share is in parentheses)."""
    if isinstance(p, dict):
        p = StageProfile.from_dict(p)
    total = p.frame_ms or 1.0
    head = (f"Stage profile, {p.width}x{p.height} (padded {p.full_size[1]}x{p.full_size[0]}, generator "
            f"{p.low_size[1]}x{p.low_size[0]}), {p.frames} frames after {p.warmup} warm-up")
    lines = [head, "", "| stage | median ms | p95 ms | CPU ms, all threads | share of the frame |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for s in p.stages:
        name = f"&nbsp;&nbsp;{s.name}" if s.kind == "part" else s.name
        share = f"{100 * s.median_ms / total:.1f}%"
        cpu = "-" if s.cpu_ms is None else f"{s.cpu_ms:.2f}"
        if s.kind == "frame":
            name = f"**{name}**" if s.name in MODELS else name
        else:
            share = f"({share})"
        lines.append(f"| {name} | {s.median_ms:.2f} | {s.p95_ms:.2f} | {cpu} | {share} |")
    lines.append(f"| **sum per frame (path stages)** | **{p.frame_ms:.1f}** | | | 100% |")
    lines += ["", f"The stages in turn: {1000 / total:.1f} frames/s. Machine: {machine_line(p.system)}.",
              "CPU ms: the process's CPU time in the stage, all threads (swscale and OpenCV use several; "
              "below the wall time, the stage waited for a core). Parenthesised shares are not in the sum"
              + (f"; indented rows are onnxruntime's kernel times per op group (its profiler, "
                 f"{next(iter(p.graphs.values()))['runs']} more frames)." if p.graphs else ".")]
    return "\n".join(lines)


def profile_sizes(sizes: str = "720p", frames: int = 60, warmup: int = 10, model: str = "rt",
                  weights: str | Path | None = None, graph_runs: int | None = None,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """profile_stages() at each of `sizes` ('720p,1280x720', as `vmatte bench --sizes`) ->
    {"system", "model", "stage_profiles": [StageProfile.as_dict(), ...]} (JSON-able).
    graph_runs: profiled frames per size (default: frames, at most 20)."""
    from .bench import parse_sizes, system_info
    from .errors import VmatteError
    from .registry import list_models

    if model not in list_models():
        raise VmatteError(f"unknown model {model!r}; valid models: {', '.join(list_models())}")
    out: dict[str, Any] = {"system": system_info(), "model": model, "backend": "onnxruntime", "stage_profiles": []}
    for label, h, w in parse_sizes(sizes):
        if progress:
            progress(f"stages {label}")
        p = profile_stages(h, w, frames=frames, warmup=warmup, model=model, weights=weights,
                           graph_runs=min(20, frames) if graph_runs is None else graph_runs, label=label,
                           progress=progress)
        out["stage_profiles"].append(p.as_dict())
    return out
