"""Speed benchmarks: per-stage latency (p50/p95/p99) and fps, model-only and end-to-end, over a
resolution sweep, per backend; with the device, driver and library versions.

GPU work is timed with CUDA events (host clocks would time the launch, not the work); every run
is warmed up first and fed random (never zero) frames."""
from __future__ import annotations

import logging
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import VmatteError

log = logging.getLogger(__name__)

SIZES = {"360p": (360, 640), "480p": (480, 854), "720p": (720, 1280), "1080p": (1080, 1920),
         "1440p": (1440, 2560), "4k": (2160, 3840)}
STAGES = ("preprocess", "segmenter", "generator", "refiner", "total")


def parse_sizes(spec: str) -> list[tuple[str, int, int]]:
    """'480p,1080p,1280x720' -> [(label, H, W)]."""
    out = []
    for tok in (t.strip().lower() for t in spec.split(",") if t.strip()):
        if tok in SIZES:
            out.append((tok, *SIZES[tok]))
        elif "x" in tok and all(p.isdigit() for p in tok.split("x", 1)):
            w, h = (int(p) for p in tok.split("x", 1))
            out.append((tok, h, w))
        else:
            raise VmatteError(f"unknown size {tok!r}; use {', '.join(SIZES)} or WxH such as 1280x720")
    if not out:
        raise VmatteError(f"no sizes in {spec!r}; pass e.g. --sizes 480p,1080p")
    return out


def summarize(ms: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean latency in ms and the fps the mean gives."""
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    mean = float(a.mean())
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": mean, "fps": 1000.0 / mean if mean > 0 else 0.0}


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")) and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def system_info() -> dict[str, Any]:
    """Device, driver and library versions for the record."""
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cpu": cpu_model(), "date": time.strftime("%Y-%m-%d")}
    import os

    info["cpu_count"] = os.cpu_count()
    if hasattr(os, "sched_getaffinity"):
        info["cpu_usable"] = len(os.sched_getaffinity(0))  # what this process may run on
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]  # others' work on a shared machine
    for mod in ("torch", "onnxruntime", "numpy", "cv2", "av"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "?")
        except Exception:  # noqa: BLE001 - absent is fine
            info[mod] = None
    try:
        import torch

        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            info.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2**30, 1), sm_count=p.multi_processor_count,
                        cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
            try:
                import subprocess

                info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                                capture_output=True, text=True, timeout=10).stdout.strip() or None
            except Exception:  # noqa: BLE001
                info["driver"] = None
    except ImportError:
        pass
    try:
        import onnxruntime as ort

        info["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        pass
    return info


def random_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A random but image-like uint8 RGB frame: smooth colour field, a bright ellipse, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 37.0 + yy / 53.0)], -1) * 200
    cy, cx = h * rng.uniform(0.4, 0.6), w * rng.uniform(0.4, 0.6)
    inside = ((yy - cy) / (0.35 * h)) ** 2 + ((xx - cx) / (0.2 * w)) ** 2 < 1.0
    base[inside] = base[inside] * 0.3 + np.array([220, 180, 150], np.float32) * 0.7
    base += rng.normal(0, 8, base.shape).astype(np.float32)
    return np.clip(base, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# Model and backend set-up
# ------------------------------------------------------------------------------------------------
def resolve_weights(model: str, weights: str | Path | None) -> tuple[Path, str]:
    """(weights path, 'shipped'|'given'|'random'): random weights in a temporary file when the
    model has no shipped weights; speed does not depend on the weights' values."""
    from .weights import shipped_weights

    if weights is not None:
        return Path(weights), "given"
    p = shipped_weights(model)
    if p.is_file():
        return p, "shipped"
    from .registry import create_model
    from .weights import save_weights

    try:
        import torch
    except ImportError:
        raise VmatteError(f"model {model!r} ships no weights, and benchmarking it on random weights needs torch; "
                          'pip install "vmatte[torch]", or bench a model that ships weights (--model rt)') from None
    tmp = Path(tempfile.mkdtemp(prefix="vmatte-bench-")) / f"{model}-random.safetensors"
    torch.manual_seed(0)
    save_weights(create_model(model).eval(), tmp, card={"note": "random weights for benchmarking"})
    log.warning("model %r has no shipped weights; benchmarking random weights (same speed)", model)
    return tmp, "random"


def open_backend(name: str, model: str, weights: Path, **options: Any):
    """A backend instance on `weights`. ONNX backends take the shipped ONNX files when `weights`
    are the shipped ones (so the light install, without torch, can bench them), else an export
    of `weights` in the cache (needs torch)."""
    from .backends import ModelSource, create_backend, resolve_backend

    name = resolve_backend(name)
    onnx_dir = onnx_dir_for(model, weights) if name in ("onnxruntime", "tensorrt") else None
    return create_backend(name, ModelSource(model, weights, onnx_dir), **options)


def onnx_dir_for(model: str, weights: Path) -> Path:
    """The folder of ONNX files for `weights`: the shipped one for the shipped weights, else an
    export in the cache (needs torch)."""
    from .weights import shipped_onnx_dir, shipped_weights

    shipped = shipped_onnx_dir(model)
    if Path(weights).resolve() == shipped_weights(model).resolve() and (shipped / "segmenter.onnx").is_file():
        return shipped
    from .api import Matter

    return Matter._export_onnx_cache(weights)


class _Timer:
    """CUDA events on GPU backends, perf_counter otherwise; `lap()` per stage, `read()` at the end."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.marks: list[Any] = []
        if cuda:
            import torch

            self.torch = torch

    def lap(self) -> None:
        if self.cuda:
            ev = self.torch.cuda.Event(enable_timing=True)
            ev.record()
            self.marks.append(ev)
        else:
            self.marks.append(time.perf_counter())

    def read(self) -> list[float]:
        """Milliseconds between consecutive laps."""
        if self.cuda:
            self.marks[-1].synchronize()
            return [a.elapsed_time(b) for a, b in zip(self.marks, self.marks[1:])]
        return [(b - a) * 1e3 for a, b in zip(self.marks, self.marks[1:])]


def bench_model(backend, long_side: int, h: int, w: int, frames: int = 100, warmup: int = 10,
                batch: int = 1, inputs: int = 4) -> dict[str, Any]:
    """Model-only latency at one size: per stage (eager, component by component) and, when the
    backend has `run_all`, the fused chain (a CUDA graph on torch-cuda). Inputs rotate among
    `inputs` random frames so caches do not flatter the numbers."""
    from .api import prepare

    cuda = getattr(backend, "device", "cpu") == "cuda"
    prepared = []
    for k in range(inputs):
        # prepare's full-resolution array is a per-thread buffer: copy each before the next call.
        fulls, lows = zip(*((f.copy(), lo) for f, lo in (prepare(random_frame(h, w, seed=k * batch + b), long_side)
                                                          for b in range(batch))))
        prepared.append((np.concatenate(fulls), np.concatenate(lows)))
    if cuda:
        import torch

        prepared = [(backend._to_tensor(f), backend._to_tensor(lo)) for f, lo in prepared]
        sync = torch.cuda.synchronize
    else:
        def sync() -> None:
            pass

    stages: dict[str, list[float]] = {s: [] for s in ("segmenter", "generator", "refiner", "total")}
    for i in range(warmup + frames):
        full, low = prepared[i % inputs]
        t = _Timer(cuda)
        t.lap()
        mask = backend.run("segmenter", image=low)
        t.lap()
        coarse = backend.run("generator", image=low, mask=mask)
        t.lap()
        backend.run("refiner", image=full, coarse=coarse)
        t.lap()
        if i >= warmup:
            seg, gen, ref = t.read()
            for name, v in zip(("segmenter", "generator", "refiner"), (seg, gen, ref)):
                stages[name].append(v)
            stages["total"].append(seg + gen + ref)
    result: dict[str, Any] = {"batch": batch, "low_size": list(prepared[0][1].shape[-2:]),
                              "full_size": list(prepared[0][0].shape[-2:]),
                              "eager": {k: summarize(v) for k, v in stages.items()}}
    if hasattr(backend, "run_all"):
        lat: list[float] = []
        for i in range(warmup + frames):
            full, low = prepared[i % inputs]
            t = _Timer(cuda)
            t.lap()
            backend.run_all(full, low)
            t.lap()
            if i >= warmup:
                lat.extend(t.read())
        result["fused"] = summarize(lat)
        result["fused_mode"] = "cuda-graph" if getattr(backend, "graphs", None) is not None else "eager-chain"
        if cuda:  # throughput: back-to-back launches, one sync at the end
            sync()
            t0 = time.perf_counter()
            for i in range(frames):
                full, low = prepared[i % inputs]
                backend.run_all(full, low)
            sync()
            result["fused_throughput_fps"] = frames * batch / (time.perf_counter() - t0)
    for key in ("eager", "fused"):
        block = result.get(key)
        if block is None:
            continue
        s = block.get("total", block)
        if s.get("fps"):
            s["frames_per_s"] = s["fps"] * batch
    return result


# ------------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------------
def make_test_video(path: str | Path, h: int = 1080, w: int = 1920, frames: int = 120, rate: int = 30) -> Path:
    """Write a synthetic H.264 clip (moving ellipse on a textured field) with libx264."""
    import av

    path = Path(path)
    base = random_frame(h, w, seed=1).astype(np.int16)
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=rate, options={"preset": "ultrafast", "crf": "23"})
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.thread_type = "AUTO"
        for i in range(frames):
            cx = w * (0.3 + 0.4 * (i % 60) / 60.0)
            m = ((yy - h * 0.55) / (0.4 * h)) ** 2 + ((xx - cx) / (0.15 * w)) ** 2 < 1.0
            img = base.copy()
            img[m] = (200, 160, 130)
            img = np.clip(img + (i % 7), 0, 255).astype(np.uint8)
            for p in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in st.encode(None):
            c.mux(p)
    return path


def bench_end_to_end_gpu(backend, video: str | Path, long_side: int, out: str | Path | None = None,
                         slots: int = 4, hwaccel: bool = False, encode: bool = True,
                         hw_encode: bool = True, batch: int = 1) -> dict[str, Any]:
    """decode (NVDEC or CPU, planar YUV) -> GpuRunner (YUV->RGB, model, blur, RGB->YUV on the GPU)
    -> encode (VideoSink.write_i420: NVENC when hw_encode and the GPU has it, else libx264
    ultrafast), frames/s over the whole file. encode=False drops the frames after download
    (isolates the encoder's cost); batch frames go through the program per call. hwaccel is off
    by default: on an H100 with 16 cores PyAV's NVDEC path (download + NV12 conversion on the host)
    decoded 1080p H.264 at about a fifth of the speed of FFmpeg's threaded software decoder
    (docs/benchmarks.md)."""
    import contextlib

    import av

    from .gpu_runner import CudaLayer, GpuRunner, MattingProgram, iter_yuv_frames
    from .io.sinks import VideoSink

    with av.open(str(video)) as c:
        vs = c.streams.video[0]
        H, W, rate = vs.codec_context.height, vs.codec_context.width, vs.average_rate or 30
    prog = MattingProgram(backend, long_side, background="blur", in_format="yuv420p", out_format="yuv420p")
    runner = GpuRunner(prog, slots=slots, layer=CudaLayer(), batch=batch)
    info: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        writer = None
        if encode:
            out = out or Path(tempfile.mkdtemp(prefix="vmatte-bench-")) / "out.mp4"
            writer = stack.enter_context(VideoSink(out, rate=rate, overwrite=True, preset="ultrafast", crf=20,
                                                   hw_encode=hw_encode))
        sink: Callable = (lambda i, planes, meta: writer.write_i420(planes)) if writer else (lambda *a: None)
        # Warm-up pass over a few frames so capture and cudnn autotuning stay out of the timing.
        warm = [f for _, f in zip(range(2 * batch + 1), iter_yuv_frames(str(video), hwaccel=False))]
        GpuRunner(prog, slots=2, layer=CudaLayer(), batch=batch).run(warm, lambda *a: None)
        stats = runner.run(iter_yuv_frames(str(video), hwaccel=hwaccel, info=info), sink)
        t0 = time.perf_counter()
    stats.seconds += time.perf_counter() - t0  # the encoder's flush and the file's close
    return {"frames": stats.frames, "seconds": stats.seconds, "fps": stats.fps, "size": [H, W],
            "decode": "nvdec" if info.get("hw") else "cpu", "decoded_format": info.get("format"),
            "encoder": writer.codec if writer else None, "slots": slots, "batch": batch,
            "max_in_flight": stats.max_in_flight,
            "stages": {k: summarize(v) for k, v in stats.stage_ms.items()}}


def bench_end_to_end_cpu(matter_backend, video: str | Path, long_side: int, out: str | Path | None = None) -> dict[str, Any]:
    """decode -> prepare -> backend -> blur composite -> encode on the CPU, pipelined with
    vmatte.runner threads; frames/s over the whole file."""
    from .api import prepare, run_matte
    from .io import VideoSink, VideoSource
    from .ops.compose import blur_background
    from .runner import Stage, run_pipeline

    be = matter_backend
    out = Path(out) if out else Path(tempfile.mkdtemp(prefix="vmatte-bench-")) / "out.mp4"

    def matte(fr):
        H, W = fr.rgb.shape[:2]
        if not hasattr(be, "run_all"):  # the path Matter.matte takes
            return fr, run_matte(be, fr.rgb, long_side)
        full, low = prepare(fr.rgb, long_side)
        alpha = np.asarray(be.run_all(full, low))
        return fr, np.ascontiguousarray(alpha[0, 0, :H, :W], np.float32)

    def compose(item):
        fr, alpha = item
        return fr, blur_background(fr.rgb, alpha)

    t0 = time.perf_counter()
    with VideoSource(video) as src, VideoSink(out, rate=src.rate, time_base=src.time_base, overwrite=True) as sink:
        n = run_pipeline(src, [Stage(matte, 1, "matte"), Stage(compose, 1, "compose")],
                         lambda it: sink.write(it[1], it[0].pts, it[0].time_base))
    dt = time.perf_counter() - t0
    return {"frames": n, "seconds": dt, "fps": n / dt if dt else 0.0, "encoder": "libx264", "decode": "cpu"}


# ------------------------------------------------------------------------------------------------
# The whole benchmark, tables and plots
# ------------------------------------------------------------------------------------------------
def run_bench(backends: Sequence[str] = ("auto",), model: str = "rt", sizes: str = "480p,720p,1080p,4k",
              frames: int = 100, warmup: int = 10, batch: int = 1, weights: str | Path | None = None,
              end_to_end: str | Path | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Benchmark each backend over the sizes; returns a JSON-able dict."""
    from .backends import resolve_backend
    from .registry import list_models

    if model not in list_models():
        raise VmatteError(f"unknown model {model!r}; valid models: {', '.join(list_models())}")
    parse_sizes(sizes)  # a typo fails before any model is built
    wpath, wkind = resolve_weights(model, weights)
    import json

    from .weights import read_header

    long_side = int(json.loads(read_header(wpath)["config"])["gen_long_side"])
    result: dict[str, Any] = {"system": system_info(), "model": model, "weights": wkind, "long_side": long_side,
                              "frames": frames, "warmup": warmup, "batch": batch, "results": []}
    for name in backends:
        bname = resolve_backend(name)
        backend = open_backend(bname, model, wpath)
        try:
            for label, h, w in parse_sizes(sizes):
                if progress:
                    progress(f"{bname} {label}")
                r = bench_model(backend, long_side, h, w, frames=frames, warmup=warmup, batch=batch)
                result["results"].append({"backend": bname, "size": label, "height": h, "width": w, **r})
            if end_to_end:
                if progress:
                    progress(f"{bname} end-to-end")
                video = Path(end_to_end)
                if not video.is_file():
                    raise VmatteError(f"--end-to-end video {video} not found; give an existing video file")
                if getattr(backend, "device", "cpu") == "cuda" and hasattr(backend, "_chain"):
                    from .process import gpu_batch

                    e2e = bench_end_to_end_gpu(backend, video, long_side, batch=gpu_batch(backend))  # as `process` runs
                else:
                    e2e = bench_end_to_end_cpu(backend, video, long_side)
                result.setdefault("end_to_end", []).append({"backend": bname, "video": str(video), **e2e})
        finally:
            backend.close()
    return result


def format_table(result: dict[str, Any]) -> str:
    """Markdown table of a run_bench result."""
    rows = ["| backend | size | batch | seg p50 | gen p50 | ref p50 | eager total p50 / p95 / p99 (ms) | eager fps | fused p50 (ms) | fused fps |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["results"]:
        e = r["eager"]
        f = r.get("fused", {})
        fused_fps = r.get("fused_throughput_fps") or f.get("frames_per_s") or f.get("fps")
        rows.append(f"| {r['backend']} | {r['size']} | {r['batch']} | {e['segmenter']['p50_ms']:.2f} | "
                    f"{e['generator']['p50_ms']:.2f} | {e['refiner']['p50_ms']:.2f} | "
                    f"{e['total']['p50_ms']:.2f} / {e['total']['p95_ms']:.2f} / {e['total']['p99_ms']:.2f} | "
                    f"{e['total'].get('frames_per_s', e['total']['fps']):.0f} | "
                    + (f"{f['p50_ms']:.2f} | {fused_fps:.0f} |" if f else "- | - |"))
    for e in result.get("end_to_end", []):
        rows.append(f"\nend-to-end {e['backend']}: {e['frames']} frames in {e['seconds']:.2f} s = {e['fps']:.1f} fps "
                    f"(decode {e.get('decode')}, encoder {e.get('encoder')})")
    return "\n".join(rows)


def plot(result: dict[str, Any], out: str | Path) -> Path:
    """fps vs resolution per backend (eager and fused) as a PNG: matplotlib when installed, else
    drawn with OpenCV."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    series: dict[str, list[tuple[int, float]]] = {}
    for r in result["results"]:
        px = r["height"] * r["width"]
        series.setdefault(f"{r['backend']} eager", []).append((px, r["eager"]["total"]["fps"] * r["batch"]))
        if "fused" in r:
            fps = r.get("fused_throughput_fps") or r["fused"]["fps"] * r["batch"]
            series.setdefault(f"{r['backend']} {r.get('fused_mode', 'fused')}", []).append((px, fps))
    title = f"vmatte {result['model']} on {result['system'].get('gpu') or result['system'].get('cpu')}"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, pts in series.items():
            pts.sort()
            ax.plot([p[0] / 1e6 for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xlabel("megapixels per frame")
        ax.set_ylabel("frames / s (model only)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out
    except ImportError:
        log.info("matplotlib is not installed; drawing the plot with OpenCV")
    return _plot_cv2(series, title, out)


def _plot_cv2(series: dict[str, list[tuple[int, float]]], title: str, out: Path) -> Path:
    import cv2

    W, H, m = 800, 500, 70
    img = np.full((H, W, 3), 255, np.uint8)
    allp = [p for pts in series.values() for p in pts]
    if not allp:
        raise VmatteError("nothing to plot: the benchmark has no results")
    xmax = max(p[0] for p in allp) / 1e6
    ymax = max(p[1] for p in allp) * 1.1
    cv2.rectangle(img, (m, m // 2), (W - 20, H - m), (0, 0, 0), 1)
    cv2.putText(img, title, (m, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "megapixels", (W // 2 - 40, H - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "fps", (5, m // 2 + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    font, grey = cv2.FONT_HERSHEY_SIMPLEX, (90, 90, 90)
    for i in range(5):  # y ticks: 0 .. ymax
        v = ymax * i / 4
        y = int(H - m - (H - 1.5 * m) * v / ymax)
        cv2.line(img, (m - 4, y), (m, y), (0, 0, 0), 1)
        cv2.putText(img, f"{v:.0f}", (m - 40, y + 4), font, 0.4, grey, 1, cv2.LINE_AA)
    for xv in sorted({p[0] / 1e6 for p in allp}):  # x ticks at the measured sizes
        x = int(m + (W - 20 - m) * xv / xmax)
        cv2.line(img, (x, H - m), (x, H - m + 4), (0, 0, 0), 1)
        cv2.putText(img, f"{xv:.1f}", (x - 12, H - m + 18), font, 0.4, grey, 1, cv2.LINE_AA)
    colors = [(200, 60, 30), (30, 140, 30), (30, 60, 200), (150, 30, 150), (0, 150, 150), (100, 100, 100)]
    for k, (name, pts) in enumerate(series.items()):
        pts = sorted(pts)
        c = colors[k % len(colors)]
        xy = [(int(m + (W - 20 - m) * p[0] / 1e6 / xmax), int(H - m - (H - 1.5 * m) * p[1] / ymax)) for p in pts]
        for a, b in zip(xy, xy[1:]):
            cv2.line(img, a, b, c, 2, cv2.LINE_AA)
        for q in xy:
            cv2.circle(img, q, 4, c, -1)
        cv2.putText(img, name, (W - 260, m + 20 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.5, c, 1, cv2.LINE_AA)
    if not cv2.imwrite(str(out), img[..., ::-1]):
        raise VmatteError(f"could not write the plot to {out}; check the folder exists and is writable")
    return out
