"""Library API for the main job: a video, image or image folder in, the background replaced out."""
from __future__ import annotations

import logging
import os
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from .backgrounds import Background, parse_background
from .errors import VmatteError
from .io import sinks as _sinks
from .io.sources import open_source, source_kind
from .ops import compose
from .ops.temporal import DEFAULT as TEMPORAL, TemporalFilter, TemporalParams, guide, guide_i420, smooth_stream
from .runner import Pipeline, Stage, ordered_map

log = logging.getLogger(__name__)

OUTPUT_KINDS = ("composite", "alpha", "foreground", "rgba")
MIN_SIDE, MAX_SIDE = 8, 8192


class MatterLike(Protocol):
    def matte(self, rgb: np.ndarray) -> np.ndarray: ...  # uint8 [H,W,3] -> float32 [H,W]


@dataclass
class ProcessResult:
    frames: int
    seconds: float
    fps: float
    output: Path | None = None


def _check_kinds(inp: Path, out: Path, output_kind: str, bg: Background) -> tuple[str, bool]:
    """Validate input/output pairing; return (input kind, whether the output carries alpha)."""
    if output_kind not in OUTPUT_KINDS:
        raise VmatteError(f"unknown output kind {output_kind!r}; use one of {', '.join(OUTPUT_KINDS)}")
    ikind, okind = source_kind(inp), _sinks.sink_kind(out)
    if ikind == "folder" and okind != "folder":
        raise VmatteError(f"input {inp} is a folder of images, so the output must be a folder (no extension), got {out}")
    if ikind == "image" and okind == "video":
        raise VmatteError(f"input {inp} is an image; write an image (.png/.jpg) or a folder, not {out.suffix}")
    if ikind == "video" and okind == "image":
        raise VmatteError(f"input {inp} is a video; write a video (.mp4/.mov/.webm) or a folder, not {out.suffix}")
    alpha = output_kind == "rgba" or (output_kind == "composite" and bg.alpha)
    if alpha and not _sinks.supports_alpha(out):
        what, other = (("--output-kind rgba", "another --output-kind") if output_kind == "rgba"
                       else ("--background transparent", "a colour background"))
        raise VmatteError(f"{what} needs an output with an alpha channel, and {out.suffix or out} has none; "
                          f"write .mov, .webm, .png or a folder, or pick {other}")
    return ikind, alpha


def make_renderer(output_kind: str, bg: Background) -> Callable[[np.ndarray, np.ndarray, int], np.ndarray]:
    """(rgb, alpha, index) -> the output image for the chosen kind."""
    if output_kind == "composite":
        return bg.render
    if output_kind == "alpha":
        return lambda rgb, a, i: compose.alpha_to_uint8(a)
    if output_kind == "foreground":  # premultiplied: the output has no alpha to hide F where alpha is 0
        return lambda rgb, a, i: compose.premultiply(compose.estimate_foreground(rgb, a), a)
    return lambda rgb, a, i: compose.pack_rgba(compose.estimate_foreground(rgb, a), a)


def _check_alpha_out(a, rgb: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.shape != rgb.shape[:2]:
        raise VmatteError(f"the matter returned alpha of shape {a.shape} for a frame of {rgb.shape[:2]}; "
                          "this is a bug in the model wrapper")
    return a.astype(np.float32, copy=False)


def _check_complete(inp: Path, src, n: int) -> None:
    """Fail (so the sink drops its file) when a video ends well short of its indexed frame count:
    a truncated download would otherwise give a short output that looks finished."""
    want = src.frames if getattr(src, "frames_indexed", False) else 0
    if want and n < want - max(2, want // 50):
        raise VmatteError(f"{inp} ended after {n} of its {want} frames: the file is truncated or damaged; "
                          "download or export it again")


GPU_BATCH = 4  # frames per device-program call on the GPU route (throughput; files, not live)


def gpu_batch(backend) -> int:
    """Frames per device-program call for this backend: GPU_BATCH, or fewer when its engines'
    profiles take fewer (TensorRT's max_batch)."""
    return max(1, min(GPU_BATCH, int(getattr(backend, "max_batch", GPU_BATCH))))


def gpu_program(matter, output_kind: str, bg: Background, in_format: str = "rgb24", out_format: str = "rgb24",
                alpha_in: bool = False):
    """The whole-frame device program (vmatte.gpu_runner.MattingProgram: model, compositing and
    conversions on the GPU, CUDA graphs) for this job, or None when the job takes the host path:
    a matter whose backend does not run on the GPU with a device-tensor chain (onnxruntime, CPU torch), an
    output kind other than composite/alpha, or a background the program does not draw (a video,
    transparent). in_format / out_format: rgb24, or yuv420p for I420 planes (composite only).
    alpha_in: the frames bring their matte (MattingProgram's second pass, composite only)."""
    from .backgrounds import BlurBackground, ColorBackground, ImageBackground

    be = getattr(matter, "backend", None)
    if be is None or getattr(be, "device", "cpu") != "cuda" or not hasattr(be, "_chain"):
        return None
    kw: dict = {}
    if output_kind == "alpha":
        kw = dict(background=None, out_format="alpha")
    elif output_kind == "composite" and isinstance(bg, BlurBackground):
        kw = dict(background="blur", blur_sigma=bg.sigma)
    elif output_kind == "composite" and isinstance(bg, ColorBackground):
        kw = dict(background=bg.color)
    elif output_kind == "composite" and isinstance(bg, ImageBackground):
        kw = dict(background=bg.image)
    else:
        return None
    from .gpu_runner import MattingProgram

    kw.setdefault("out_format", out_format)
    return MattingProgram(be, matter.long_side, in_format=in_format, alpha_in=alpha_in, **kw)


def _host_i420(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 [H,W,3] (even size) -> I420 planes [H*3/2, W] in the matrix the GPU program
    assumes for that size: for the rare frames a decoder gives in another form (rotated, tagged
    with another matrix, another pixel format) on the planar route."""
    import torch

    from .gpu_runner import hwc_to_nchw, rgb_to_yuv420, yuv_matrix

    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        raise VmatteError(f"a frame of {w}x{h} (odd) in a video of even size: the size changed mid-video; "
                          "write to a folder instead")
    return rgb_to_yuv420(hwc_to_nchw(torch.from_numpy(np.ascontiguousarray(rgb))), yuv_matrix(w, h))[0].numpy()


def _gpu_frames(src, in_fmt: str):
    """The source's frames for the GPU route: Frames (rgb24), or (I420 planes, Frame) pairs with
    the decoder's own planes where it gives them and a host conversion otherwise (yuv420p)."""
    for fr in (src.frames_of(planar=True) if in_fmt == "yuv420p" else src):
        if in_fmt == "rgb24":
            _check_size(*fr.rgb.shape[:2])
            yield fr
            continue
        planes = _host_i420(fr.rgb) if fr.yuv is None else fr.yuv
        _check_size(planes.shape[0] * 2 // 3, planes.shape[1])
        yield planes, fr


def _check_size(h: int, w: int) -> None:
    if min(h, w) < MIN_SIDE or max(h, w) > MAX_SIDE:
        raise VmatteError(f"frame size {w}x{h} is outside {MIN_SIDE}..{MAX_SIDE} pixels a side; "
                          "resize the input first")


def temporal_params(temporal: bool | TemporalParams) -> TemporalParams | None:
    """process()'s `temporal` argument -> the filter's parameters, or None for off."""
    if isinstance(temporal, TemporalParams):
        return temporal
    if isinstance(temporal, bool):
        return TEMPORAL if temporal else None
    raise VmatteError(f"temporal={temporal!r} is not understood; use True, False or a TemporalParams")


def _gpu_temporal(first, second, frames, write, params: TemporalParams, batch: int) -> None:
    """The GPU route with the temporal filter. `first` (a MattingProgram, out_format alpha) mattes
    batches on the device; its sink, in frame order, feeds the host's TemporalFilter; each frame
    it completes goes through `second` (the same job with alpha_in: compositing and conversions on
    the device, one frame a call) to write((frame, image)), or is written as the matte itself
    when `second` is None (--output-kind alpha). frames: _gpu_frames()'s items."""
    import torch

    from .gpu_runner import GpuRunner, default_layer, yuv_matrix

    filt = TemporalFilter(params)

    def with_guides():  # runs in the runner's decode thread, beside the decoder
        for item in frames:
            arr, fr = item if isinstance(item, tuple) else (item.rgb, item)
            if arr.ndim == 3:
                g = guide(arr, params.work_side)
            else:
                h, w = arr.shape[0] * 2 // 3, arr.shape[1]
                g = guide_i420(arr, params.work_side, yuv_matrix(w, h))
            yield arr, (arr, fr, g)  # the runner hands this `meta` to the sink

    def finish(done) -> None:
        for (arr, fr), a in done:
            a8 = compose.alpha_to_uint8(a)  # [H,W]
            if second is None:
                write((fr, a8))
                continue
            packed = np.dstack([arr, a8]) if arr.ndim == 3 else np.concatenate([arr, a8])  # [H,W,4] / [H*5/2,W]
            with torch.inference_mode():
                out = second(torch.from_numpy(packed).to(second.device))
            write((fr, out.cpu().numpy()))

    def on_alpha(i: int, a8: np.ndarray, meta) -> None:  # a8: uint8 [H,W], a buffer the runner reuses
        arr, fr, g = meta
        finish(filt.push((arr, fr), g, a8.astype(np.float32) * np.float32(1 / 255)))

    GpuRunner(first, slots=4, batch=batch, decode_queue=2 * batch, layer=default_layer(first.device.type)).run(
        with_guides(), on_alpha)
    finish(filt.flush())


def matte_workers() -> int:
    """Frames matted in parallel: the CPU backends run one intra-op thread per call, so one
    worker per core (at most 4) keeps the cores busy while decode/encode run in their threads."""
    return max(1, min(4, os.cpu_count() or 1))


def process(input: str | Path, output: str | Path, *, matter: MatterLike | Callable[[], MatterLike] | None = None,
            background: str | Background | None = "blur", output_kind: str = "composite",
            overwrite: bool = False, progress: Callable[[int, int | None], None] | None = None,
            queue_size: int = 4, threads: int | None = None,
            temporal: bool | TemporalParams = True) -> ProcessResult:
    """Matte every frame of `input` and write `output` (format from its extension).

    input: a video file, an image, or a folder of images (then output is a folder).
    matter: a Matter, or a zero-argument factory called only once the input, output and
    background are known to be valid (so a typo fails at once, not after a model load).
    output_kind: composite (over `background`), alpha (grey matte), foreground (estimated F
    premultiplied by alpha, i.e. over black), rgba (straight F + alpha; needs .mov/.webm/.png/folder).
    progress(done, total_or_None) is called per frame.
    threads: frames matted at once on the host route (default matte_workers(); a batch running
    several files side by side gives each a share of the cores).
    temporal: steady the matte of a video over neighbouring frames (vmatte.ops.temporal; True =
    its defaults, or a TemporalParams; False = each frame on its own), whatever the output kind;
    images and folders of images are always matted one by one.
    Nothing is written unless the whole job succeeds; the input is never modified.
    """
    inp, out = Path(input), Path(output)
    if not inp.exists():
        raise VmatteError(f"input not found: {inp}; check the path")
    _sinks.check_output(out, overwrite, input=inp)
    tparams = temporal_params(temporal)  # before the background: a bad value must not leave a video open
    bg = parse_background(background)
    try:
        ikind, alpha = _check_kinds(inp, out, output_kind, bg)
        render = make_renderer(output_kind, bg)
        if matter is None:
            from .api import Matter

            matter = Matter()
        elif not hasattr(matter, "matte"):
            matter = matter()
        t0 = time.perf_counter()
        with open_source(inp) as src:
            total = src.frames or None
            if ikind != "video":
                tparams = None
            sink = _sinks.open_sink(out, alpha=alpha, rate=src.rate, time_base=src.time_base,
                                    audio_from=inp if (ikind == "video" and src.has_audio) else None,
                                    overwrite=overwrite)
            done = [0]

            def matte(fr):
                _check_size(*fr.rgb.shape[:2])
                return fr, _check_alpha_out(matter.matte(fr.rgb), fr.rgb)

            def composite(item):
                fr, a = item
                return fr, render(fr.rgb, a, fr.index)

            emit = sink.write

            def write(item):
                fr, img = item
                try:
                    emit(img, fr.pts, fr.time_base, **({"name": fr.name} if ikind != "video" else {}))
                except OSError as e:  # disk full, folder gone, ...: the sink then drops its partial file
                    raise _sinks.write_error(out, e) from None
                done[0] += 1
                if done[0] == 1:  # set-up cost of this call (benchmarks/gpu_process.py splits it from the rate)
                    log.debug("first frame written %.2f s after opening the input", time.perf_counter() - t0)
                if progress is not None:
                    progress(done[0], total)

            # GPU route: I420 planes in and out where decoder and encoder take them, so the host
            # only decodes and encodes; RGB otherwise.
            even = ikind == "video" and src.width % 2 == 0 and src.height % 2 == 0
            in_fmt = "yuv420p" if even and hasattr(src, "frames_of") else "rgb24"
            out_fmt = ("yuv420p" if output_kind == "composite" and even and hasattr(sink, "takes_i420")
                       and sink.takes_i420(src.width, src.height) else "rgb24")
            program = gpu_program(matter, output_kind, bg, in_fmt, out_fmt)
            second = None
            if program is not None and tparams is not None:  # matte on the device, filter here, then composite there
                if output_kind == "composite":
                    second = gpu_program(matter, output_kind, bg, in_fmt, out_fmt, alpha_in=True)
                program = gpu_program(matter, "alpha", bg, in_fmt, "alpha")
            if (second or program) is not None and (second or program).out_format == "yuv420p":
                emit = sink.write_i420
            if program is not None and hasattr(sink, "hw_encode"):
                sink.hw_encode = True  # the GPU's own encoder (NVENC) when it has one; libx264 otherwise
            with sink:
                if program is not None and tparams is not None:
                    batch = gpu_batch(program.backend)
                    log.info("GPU route with the temporal filter: mattes on the device (%d frames a call), "
                             "filtered here, %s there (%s in, %s out)", batch,
                             "composited" if second is not None else "written", in_fmt,
                             (second or program).out_format)
                    _gpu_temporal(program, second, _gpu_frames(src, in_fmt), write, tparams, batch)
                elif program is not None:  # decode thread -> GPU (batches, streams) -> encode here
                    from .gpu_runner import GpuRunner, default_layer

                    batch = gpu_batch(program.backend)
                    log.info("GPU route: model, compositing and conversions on the device, %d frames a call "
                             "(%s in, %s out)", batch, in_fmt, program.out_format)
                    GpuRunner(program, slots=4, batch=batch, decode_queue=2 * batch,
                              layer=default_layer(program.device.type)).run(
                        _gpu_frames(src, in_fmt), lambda i, img, fr: write((fr, img)))
                elif tparams is not None:  # mattes in order -> temporal filter -> composite -> encode
                    side, workers = tparams.work_side, threads or matte_workers()

                    def matte_guide(fr):
                        fr, a = matte(fr)
                        return fr, guide(fr.rgb, side), a

                    mattes = ordered_map(matte_guide, iter(src), workers, workers + queue_size)
                    steady = smooth_stream(mattes, tparams)
                    try:
                        Pipeline(steady, [Stage(composite, 1, "composite")], write, queue_size=queue_size).run()
                    finally:
                        for gen in (steady, mattes):
                            with suppress(ValueError):  # still running in a source thread that did not stop
                                gen.close()
                else:
                    Pipeline(iter(src), [Stage(matte, threads or matte_workers(), "matte"), Stage(composite, 1, "composite")],
                             write, queue_size=queue_size).run()
                _check_complete(inp, src, done[0])
                if done[0] == 0:
                    raise VmatteError(f"{inp} has no decodable video frames; check the file")
                t_last = time.perf_counter()
            log.debug("last frame written %.2f s after opening the input; closing the output took %.2f s",
                      t_last - t0, time.perf_counter() - t_last)
            if getattr(src, "skipped", 0):
                log.warning("%d corrupt packets were skipped in %s", src.skipped, inp.name)
        secs = time.perf_counter() - t0
    finally:
        bg.close()
    n = done[0]
    return ProcessResult(frames=n, seconds=secs, fps=n / secs if secs > 0 else 0.0, output=out)
