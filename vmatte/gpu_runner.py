"""Frame-pipelined GPU execution: several frames in flight on separate CUDA streams.

    decode thread ─▶ submit thread ──────────────────────────────────────────▶ caller thread
    (host frames)    pinned host_in[s] ─H2D (upload stream)─▶ dev_in[s]            waits ev_down[s],
                     ─▶ program on the compute stream (uint8 -> float, resize, pad, sink(frame), then
                        segmenter -> generator -> refiner, composite, colour) ─▶    frees slot s
                        dev_out[s] ─D2H (download stream)─▶ pinned host_out[s]

A ring of N slots bounds memory and the frames in flight; a frame waits for a free slot
(back-pressure up to the decoder, whose queue is bounded too). Streams are ordered by events per
slot, so the upload of frame i+1 and the download of frame i-1 overlap the compute of frame i.
Frames come out in order (one submitter, FIFO hand-off), none is lost, and the first error in any
thread stops the others and is re-raised in the caller.

The stream/event layer is pluggable: CudaLayer for the GPU, HostLayer (no-op streams, CPU
tensors) so the ordering/back-pressure logic runs in CPU tests. The GPU program's maths
(colour conversion, resizing, blur, compositing) are pure torch functions that run on any device.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .ops.sizes import frame_sizes
from .ops.yuv import KR_KB, MATRIX_NUMBER
from .runner import StopAware, _Stopped

log = logging.getLogger(__name__)

_END = object()


# ---------------------------------------------------------------------------------------------
# Stream / event layers
# ---------------------------------------------------------------------------------------------
class HostLayer:
    """No-op streams and events over CPU torch tensors: the same pipeline, run synchronously.
    Used by tests and by CPU runs; events carry a host timestamp so stage timings still work."""

    device = "cpu"

    class _Event:
        def __init__(self) -> None:
            self.t = 0.0

        def elapsed_ms(self, later: "HostLayer._Event") -> float:
            return (later.t - self.t) * 1e3

    def new_stream(self):
        return None

    def new_event(self):
        return self._Event()

    def stream(self, s):
        return nullcontext()

    def record(self, ev, s) -> None:
        ev.t = time.perf_counter()

    def wait(self, s, ev) -> None:
        pass

    def sync(self, ev) -> None:
        pass

    def empty_host(self, shape, dtype):
        import torch

        return torch.empty(shape, dtype=dtype)

    def empty_device(self, shape, dtype):
        import torch

        return torch.empty(shape, dtype=dtype)


class CudaLayer:
    """Real CUDA streams and timing events; host buffers are pinned so copies are asynchronous."""

    device = "cuda"

    def __init__(self, device: str = "cuda") -> None:
        import torch

        self.torch = torch
        self.dev = torch.device(device)

    def new_stream(self):
        return self.torch.cuda.Stream(self.dev)

    def new_event(self):
        ev = self.torch.cuda.Event(enable_timing=True)
        ev.elapsed_ms = lambda later, _e=ev: _e.elapsed_time(later)  # type: ignore[attr-defined]
        return ev

    def stream(self, s):
        return self.torch.cuda.stream(s)

    def record(self, ev, s) -> None:
        ev.record(s)

    def wait(self, s, ev) -> None:
        s.wait_event(ev)

    def sync(self, ev) -> None:
        ev.synchronize()

    def empty_host(self, shape, dtype):
        return self.torch.empty(shape, dtype=dtype, pin_memory=True)

    def empty_device(self, shape, dtype):
        return self.torch.empty(shape, dtype=dtype, device=self.dev)


def default_layer(device: str | None = None):
    """CudaLayer when torch sees a GPU (or device says cuda), else HostLayer."""
    import torch

    if device == "cpu" or (device is None and not torch.cuda.is_available()):
        return HostLayer()
    return CudaLayer(device or "cuda")


# ---------------------------------------------------------------------------------------------
# Pure torch frame maths (any device)
# ---------------------------------------------------------------------------------------------
# Limited-range YUV <-> RGB with the matrix players assume: BT.709 for HD, BT.601 for SD (the
# CPU path's rule, vmatte.io.sources.guess_matrix), so GPU and CPU outputs have the same colours.
_KR_KB = {name: KR_KB[n] for name, n in MATRIX_NUMBER.items()}


def yuv_matrix(width: int, height: int) -> str:
    """"bt709" for HD frames, "bt601" for SD (how untagged video is decoded and tagged)."""
    from .io.sources import BT709, guess_matrix

    return "bt709" if guess_matrix(width, height) == BT709 else "bt601"


def yuv420_to_rgb(planes, height: int, width: int, nv12: bool = False, dtype=None, matrix: str = "bt601"):
    """uint8 [N,H*3/2,W] or [H*3/2,W] (I420 planes, or NV12 when nv12) -> float RGB [N,3,H,W] in [0,1]."""
    import torch
    import torch.nn.functional as F

    kr, kb = _KR_KB[matrix]
    kg = 1.0 - kr - kb
    dtype = dtype or torch.float32
    H, W = height, width
    if planes.dim() == 2:
        planes = planes[None]
    N = planes.shape[0]
    y = planes[:, :H].to(dtype)  # [N,H,W]
    if nv12:
        uv = planes[:, H:].reshape(N, H // 2, W // 2, 2).permute(0, 3, 1, 2).to(dtype)  # [N,2,H/2,W/2]
    else:
        uv = planes[:, H:].reshape(N, 2, H // 2, W // 2).to(dtype)
    uv = F.interpolate(uv, size=(H, W), mode="nearest")  # [N,2,H,W]
    yy = (y - 16.0) * (1.0 / 219.0)
    u = (uv[:, 0] - 128.0) * (1.0 / 224.0)
    v = (uv[:, 1] - 128.0) * (1.0 / 224.0)
    r = yy + 2 * (1 - kr) * v
    g = yy - (2 * kb * (1 - kb) / kg) * u - (2 * kr * (1 - kr) / kg) * v
    b = yy + 2 * (1 - kb) * u
    return torch.stack([r, g, b], 1).clamp_(0.0, 1.0)


def rgb_to_yuv420(rgb, matrix: str = "bt601"):
    """float RGB [N,3,H,W] in [0,1] (H, W even) -> uint8 I420 planes [N,H*3/2,W]."""
    import torch
    import torch.nn.functional as F

    kr, kb = _KR_KB[matrix]
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]  # [N,H,W]
    N, H, W = r.shape
    luma = kr * r + (1.0 - kr - kb) * g + kb * b
    y = 16.0 + 219.0 * luma
    u = 128.0 + 224.0 * (b - luma) / (2 * (1 - kb))
    v = 128.0 + 224.0 * (r - luma) / (2 * (1 - kr))
    uv = F.avg_pool2d(torch.stack([u, v], 1), 2)  # [N,2,H/2,W/2]
    out = torch.cat([y.reshape(N, -1), uv.reshape(N, -1)], 1).add_(0.5).clamp_(0, 255).to(torch.uint8)
    return out.reshape(N, H * 3 // 2, W)


def hwc_to_nchw(img, dtype=None):
    """uint8 [N,H,W,C] or [H,W,C] -> float [N,C,H,W] in [0,1]."""
    import torch

    if img.dim() == 3:
        img = img[None]
    return img.permute(0, 3, 1, 2).to(dtype or torch.float32).mul_(1.0 / 255.0)


def nchw_to_hwc_uint8(x):
    """float [N,C,H,W] in [0,1] -> uint8 [N,H,W,C] (rounded, clipped), contiguous."""
    import torch

    return x.mul(255.0).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def prepare_torch(x, long_side: int):
    """Device pre-processing of frames x [N,3,H,W]: (full [N,3,Hp,Wp] edge-padded to whole
    refiner cells, low [N,3,h,w] area-downscaled), as vmatte.api.prepare does on the host."""
    import torch.nn.functional as F

    H, W = x.shape[-2:]
    (Hp, Wp), (h, w) = frame_sizes(H, W, long_side)
    full = F.pad(x, (0, Wp - W, 0, Hp - H), mode="replicate") if (Hp, Wp) != (H, W) else x
    low = full
    while low.shape[-1] >= 2 * w and low.shape[-2] >= 2 * h and low.shape[-1] % 2 == 0 and low.shape[-2] % 2 == 0:
        low = F.avg_pool2d(low, 2)  # exact 2x2 means, as vmatte.ops.resize.area_shrink
    if tuple(low.shape[-2:]) != (h, w):
        low = F.interpolate(low, size=(h, w), mode="area")  # of the padded frame
    return full, low


def gaussian_blur_torch(x, sigma: float):
    """Separable Gaussian blur of x [B,C,h,w] (depthwise, reflect padding)."""
    import torch
    import torch.nn.functional as F

    r = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-r, r + 1, device=x.device, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    C = x.shape[1]
    r = min(r, x.shape[-1] - 1, x.shape[-2] - 1)
    k = k[k.numel() // 2 - r: k.numel() // 2 + r + 1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def blur_background_torch(x, alpha, sigma: float = 16.0):
    """Blur the background behind the person: x [N,3,H,W], alpha [N,1,H,W] -> [N,3,H,W].
    Background-weighted blur at reduced resolution: the recipe of vmatte.ops.compose.blur_background
    (blur(I*(1-a)) / blur(1-a)), in float on the device (the host version shrinks by an integer
    factor and upsamples in uint8, so the two differ by a few levels)."""
    import torch
    import torch.nn.functional as F

    if sigma <= 0:
        return x
    H, W = x.shape[-2:]
    s = min(1.0, 3.0 / sigma)
    sh, sw = max(1, round(H * s)), max(1, round(W * s))
    wb = 1.0 - alpha
    small = F.interpolate(torch.cat([x * wb, wb, x], 1), size=(sh, sw), mode="area")  # [N,7,sh,sw]
    small = gaussian_blur_torch(small, sigma * s)
    num, den, plain = small[:, :3], small[:, 3:4], small[:, 4:]
    blurred = torch.where(den > 1e-2, num / den.clamp_min(1e-6), plain)
    blurred = F.interpolate(blurred, size=(H, W), mode="bilinear", align_corners=False)
    return alpha * x + (1.0 - alpha) * blurred


# ---------------------------------------------------------------------------------------------
# The GPU program: one frame in, one composited frame out, all on the device
# ---------------------------------------------------------------------------------------------
IN_FORMATS = ("rgb24", "yuv420p", "nv12")
OUT_FORMATS = ("rgb24", "rgba", "yuv420p", "alpha")


class MattingProgram:
    """uint8 frames on the device -> uint8 composited frames on the device.

    backend: a torch backend (TorchBackend / TorchCudaBackend; uses its `_chain` and dtype).
    background: "blur", an (r, g, b) colour, an RGB uint8 image (cover-resized to each frame size),
    or None (keep the frame: useful with out_format "rgba" or "alpha").
    in_format: rgb24 [H,W,3] | yuv420p / nv12 [H*3/2,W]; out_format: rgb24 | rgba | yuv420p | alpha.
    alpha_in: each frame brings its own matte and the model is skipped (the GPU route's second pass
    after the host's temporal filter): rgb24 frames are then [H,W,4] (matte last), planar ones
    [H*5/2,W] (the matte's rows after the planes), the matte uint8.
    A call takes one frame, or a batch with a leading dimension [N,...] (one graph per batch size:
    batching amortises the fixed per-call cost of hundreds of small kernels).
    With a CUDA backend that has graphs, the whole program (conversion, model, compositing) is one
    CUDA graph per frame size."""

    def __init__(self, backend, long_side: int = 224, background: Any = "blur", in_format: str = "rgb24",
                 out_format: str = "rgb24", blur_sigma: float = 16.0, graphs: bool | None = None,
                 compile: bool = False, alpha_in: bool = False):
        if in_format not in IN_FORMATS:
            raise ValueError(f"in_format {in_format!r} is not supported; use one of {IN_FORMATS}")
        if out_format not in OUT_FORMATS:
            raise ValueError(f"out_format {out_format!r} is not supported; use one of {OUT_FORMATS}")
        import torch

        self.torch = torch
        self.backend = backend
        self.long_side = int(long_side)
        self.in_format, self.out_format = in_format, out_format
        self.alpha_in = bool(alpha_in)
        self.blur_sigma = blur_sigma
        self.dtype = backend.dtype
        self.device = torch.device(backend._device())
        self.channels_last = bool(getattr(backend, "channels_last", False))
        self._bg_image = background if isinstance(background, np.ndarray) else None
        self.background = "image" if self._bg_image is not None else background
        self._bg_cache: dict[tuple[int, int], Any] = {}
        self.color = None
        if isinstance(background, (tuple, list)):
            if len(background) != 3:
                raise ValueError(f"background colour {background!r} should be (r, g, b) in 0..255")
            self.background = "color"
            self.color = torch.tensor(background, dtype=self.dtype, device=self.device).view(1, 3, 1, 1) / 255.0
        elif self.background not in ("blur", "image", None):
            raise ValueError(f"background {background!r} is not supported here; use 'blur', (r,g,b), an image or None")
        use_graphs = getattr(backend, "graphs", None) is not None if graphs is None else graphs
        self._fn = torch.compile(self._forward, dynamic=False) if compile else self._forward
        if use_graphs and self.device.type == "cuda":
            from .backends.torch import GraphCache

            self._graphs = GraphCache(self._fn)
        else:
            self._graphs = None

    @property
    def frame_ndim(self) -> int:
        """Dimensions of one input frame (rgb24: 3, planar YUV: 2); one more is a batch."""
        return 3 if self.in_format == "rgb24" else 2

    def frame_shape(self, in_shape: Sequence[int]) -> tuple[int, int]:
        """(H, W) of a frame from the shape of its input buffer (one frame or a batch)."""
        if self.in_format == "rgb24":
            return int(in_shape[-3]), int(in_shape[-2])
        return int(in_shape[-2]) * 2 // (5 if self.alpha_in else 3), int(in_shape[-1])

    def out_shape(self, in_shape: Sequence[int]) -> tuple[int, ...]:
        """Output shape for an input shape (a batch keeps its leading dimension)."""
        H, W = self.frame_shape(in_shape)
        batch = tuple(int(d) for d in in_shape[:len(in_shape) - self.frame_ndim])
        return batch + {"rgb24": (H, W, 3), "rgba": (H, W, 4), "yuv420p": (H * 3 // 2, W), "alpha": (H, W)}[self.out_format]

    def _bg(self, H: int, W: int):
        if (H, W) not in self._bg_cache:
            from .ops.compose import cover_resize

            img = cover_resize(self._bg_image, H, W)
            self._bg_cache[(H, W)] = hwc_to_nchw(self.torch.from_numpy(np.ascontiguousarray(img)).to(self.device),
                                                 self.dtype)
        return self._bg_cache[(H, W)]

    def _forward(self, frames):
        """The whole program on a uint8 batch `frames` [N,...]; returns uint8 [N, *out_shape]."""
        torch = self.torch
        H, W = self.frame_shape(frames.shape)
        if self.alpha_in:  # the matte rides along: [N,H,W,4] or [N,H*5/2,W]
            a8 = frames[..., 3] if self.in_format == "rgb24" else frames[:, H * 3 // 2:]  # [N,H,W]
            frames = frames[..., :3] if self.in_format == "rgb24" else frames[:, :H * 3 // 2]
        if self.in_format == "rgb24":
            x = hwc_to_nchw(frames, self.dtype)  # [N,3,H,W]
        else:
            x = yuv420_to_rgb(frames, H, W, nv12=self.in_format == "nv12", dtype=self.dtype, matrix=yuv_matrix(W, H))
        if self.alpha_in:
            alpha = a8[:, None].to(x.dtype).mul_(1.0 / 255.0)  # [N,1,H,W]
        else:
            full, low = prepare_torch(x, self.long_side)
            if self.channels_last:
                full = full.contiguous(memory_format=torch.channels_last)
                low = low.contiguous(memory_format=torch.channels_last)
            alpha = self.backend._chain(full, low)[:, :, :H, :W]  # [N,1,H,W]
        if self.out_format == "alpha":
            return alpha[:, 0].mul(255.0).add_(0.5).clamp_(0, 255).to(torch.uint8)
        if self.background == "blur":
            y = blur_background_torch(x, alpha, self.blur_sigma)
        elif self.background == "color":
            y = alpha * x + (1.0 - alpha) * self.color
        elif self.background == "image":
            y = alpha * x + (1.0 - alpha) * self._bg(H, W)
        else:
            y = x
        if self.out_format == "rgba":
            return nchw_to_hwc_uint8(torch.cat([y, alpha], 1))
        if self.out_format == "yuv420p":
            return rgb_to_yuv420(y.float(), matrix=yuv_matrix(W, H))
        return nchw_to_hwc_uint8(y)

    def __call__(self, frame):
        """Run on the current stream on one frame or a batch [N,...]. With graphs the result is
        a static buffer: copy it out (in stream order) before the next call of the same shape."""
        single = frame.dim() == self.frame_ndim
        batch = frame[None] if single else frame
        if self._graphs is not None:
            if self.background == "image":
                self._bg(*self.frame_shape(frame.shape))  # build outside the capture
            out = self._graphs(batch)
        else:
            with self.torch.inference_mode():
                out = self._fn(batch)
        return out[0] if single else out


# ---------------------------------------------------------------------------------------------
# The pipelined runner
# ---------------------------------------------------------------------------------------------
@dataclass
class RunStats:
    """What a run did: frames, batches, wall time, the most slots in flight at once, per-batch
    stage times (ms)."""

    frames: int = 0
    batches: int = 0
    seconds: float = 0.0
    max_in_flight: int = 0
    stage_ms: dict[str, list[float]] = field(default_factory=lambda: {"upload": [], "compute": [], "download": []})

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class _Slot:
    """One batch in flight: pinned host and device buffers [batch, ...] for input and output."""

    def __init__(self, layer, idx: int) -> None:
        self.idx = idx
        self.shape: tuple | None = None
        self.host_in = self.dev_in = self.dev_out = self.host_out = None
        self.ev_start, self.ev_up, self.ev_comp, self.ev_down = (layer.new_event() for _ in range(4))
        self.metas: list[tuple[int, Any]] = []

    def ensure(self, layer, in_shape: tuple, out_shape: tuple) -> None:
        """(Re)allocate the slot's four buffers when the frame size changes."""
        import torch

        if self.shape == (in_shape, out_shape):
            return
        self.host_in = layer.empty_host(in_shape, torch.uint8)
        self.dev_in = layer.empty_device(in_shape, torch.uint8)
        self.dev_out = layer.empty_device(out_shape, torch.uint8)
        self.host_out = layer.empty_host(out_shape, torch.uint8)
        self.shape = (in_shape, out_shape)


def _frame_array(item: Any) -> tuple[np.ndarray, Any]:
    """(uint8 array, metadata) of a source item: an array, a vmatte.io Frame, or (array, meta)."""
    if isinstance(item, np.ndarray):
        return item, None
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], np.ndarray):
        return item
    rgb = getattr(item, "rgb", None)
    if isinstance(rgb, np.ndarray):
        return rgb, item
    raise TypeError(f"GPU runner got a source item of type {type(item).__name__}; expected a uint8 numpy "
                    "array, a vmatte.io Frame or an (array, meta) tuple")


class GpuRunner(StopAware):
    """Run `program` (uint8 device batch [n, *frame] -> uint8 device batch [n, *out]) over a
    source, `batch` frames per program call and `slots` calls in flight, delivering results in
    order to `sink(index, out: np.ndarray, meta)`, one frame at a time, in the caller's thread.
    `out` is a view of a pinned buffer that is reused once sink returns: copy it to keep it
    (`copy_out=True` does). out_shape(frame_shape) gives one output frame's shape (default: the
    program's `out_shape`, else the input's). A batch is cut short at the end of the source or
    when the frame size changes; batch=1 keeps latency lowest (live video), larger batches raise
    throughput (files). With pad_batches (default) a short batch still goes through the program
    at full size (the spare rows hold stale frames, their outputs are dropped): one input shape
    means one CUDA graph and no cuDNN autotuning mid-run for the tail of a file."""

    poll = 0.05  # seconds between checks of the stop flag while blocked

    def __init__(self, program: Callable, slots: int = 4, layer=None, decode_queue: int = 4,
                 out_shape: Callable[[tuple], tuple] | None = None, copy_out: bool = False, timing: bool = True,
                 batch: int = 1, pad_batches: bool = True):
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self.program = program
        self.layer = layer if layer is not None else default_layer()
        self.n_slots = slots
        self.batch = int(batch)
        self.pad_batches = pad_batches
        self.decode_queue = max(1, decode_queue, self.batch)
        self.out_shape = out_shape or getattr(program, "out_shape", None) or (lambda s: tuple(s))
        self.copy_out = copy_out
        self.timing = timing
        L = self.layer
        self.s_up, self.s_comp, self.s_down = L.new_stream(), L.new_stream(), L.new_stream()
        self.slots = [_Slot(L, i) for i in range(slots)]
        self.stats = RunStats()

    # -- threads -------------------------------------------------------------------------------
    def _decode(self, source: Iterable, q_in: queue.Queue) -> None:
        try:
            for i, item in enumerate(source):
                self._put(q_in, (i, _frame_array(item)))
            self._put(q_in, _END)
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001 - forwarded to the caller
            self._fail(e)

    def _next_batch(self, q_in: queue.Queue, carry: list, ended: bool) -> tuple[list, bool]:
        """Up to `batch` decoded frames of one shape: (frames, source ended). A frame of another
        size is kept in `carry` for the next batch."""
        items: list = []
        if carry:
            items.append(carry.pop())
        while len(items) < self.batch and not ended:
            msg = self._get(q_in)
            if msg is _END:
                return items, True
            i, (arr, meta) = msg
            if arr.dtype != np.uint8:
                raise TypeError(f"GPU runner frame {i} has dtype {arr.dtype}; expected uint8")
            if items and arr.shape != items[0][1][0].shape:
                carry.append(msg)
                break
            items.append(msg)
        return items, ended

    def _submit(self, q_in: queue.Queue, free: queue.Queue, done: queue.Queue) -> None:
        import torch

        L = self.layer
        carry: list = []
        try:
            ended = False
            while not ended or carry:
                items, ended = self._next_batch(q_in, carry, ended)
                if not items:
                    break
                n, shape = len(items), tuple(items[0][1][0].shape)
                m = self.batch if self.pad_batches else n  # rows through the program
                slot = self.slots[self._get(free)]  # back-pressure: wait for a free slot
                with self._lock:
                    self._in_flight += 1
                    self.stats.max_in_flight = max(self.stats.max_in_flight, self._in_flight)
                out_frame = tuple(self.out_shape(shape))
                slot.ensure(L, (self.batch, *shape), (self.batch, *out_frame))
                slot.metas = [(i, meta) for i, (_, meta) in items]
                for k, (_, (arr, _)) in enumerate(items):
                    np.copyto(slot.host_in[k].numpy(), arr)  # into pinned memory
                with L.stream(self.s_up):
                    L.record(slot.ev_start, self.s_up)
                    slot.dev_in[:m].copy_(slot.host_in[:m], non_blocking=True)
                    L.record(slot.ev_up, self.s_up)
                with L.stream(self.s_comp):
                    L.wait(self.s_comp, slot.ev_up)
                    with torch.inference_mode():
                        out = self.program(slot.dev_in[:m])
                        if tuple(out.shape) != (m, *out_frame):
                            raise ValueError(f"GPU program returned shape {tuple(out.shape)} for input "
                                             f"{(m, *shape)}; out_shape said {(m, *out_frame)}")
                        slot.dev_out[:n].copy_(out[:n])  # the program's output may be a reused (graph) buffer
                    L.record(slot.ev_comp, self.s_comp)
                with L.stream(self.s_down):
                    L.wait(self.s_down, slot.ev_comp)
                    slot.host_out[:n].copy_(slot.dev_out[:n], non_blocking=True)
                    L.record(slot.ev_down, self.s_down)
                done.put(slot.idx)  # FIFO: batches reach the caller in submission order
            done.put(_END)
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001
            self._fail(e)

    def run(self, source: Iterable, sink: Callable[[int, np.ndarray, Any], None]) -> RunStats:
        """Process every item of `source`; returns RunStats. Re-raises the first error."""
        self._init_stop()
        self._in_flight = 0
        self.stats = RunStats()
        q_in: queue.Queue = queue.Queue(self.decode_queue)
        free: queue.Queue = queue.Queue()
        for s in self.slots:
            free.put(s.idx)
        done: queue.Queue = queue.Queue()
        threads = [threading.Thread(target=self._decode, args=(source, q_in), name="gpu-decode", daemon=True),
                   threading.Thread(target=self._submit, args=(q_in, free, done), name="gpu-submit", daemon=True)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        want = 0
        try:
            while True:
                idx = self._get(done)
                if idx is _END:
                    break
                slot = self.slots[idx]
                self.layer.sync(slot.ev_down)
                if self.timing:
                    st = self.stats.stage_ms
                    st["upload"].append(slot.ev_start.elapsed_ms(slot.ev_up))
                    st["compute"].append(slot.ev_up.elapsed_ms(slot.ev_comp))
                    st["download"].append(slot.ev_comp.elapsed_ms(slot.ev_down))
                for k, (i, meta) in enumerate(slot.metas):
                    if i != want:  # pragma: no cover - would be a bug in the FIFO hand-off
                        raise RuntimeError(f"GPU runner delivered frame {i} when {want} was due; this is a bug")
                    out = slot.host_out[k].numpy()
                    sink(i, out.copy() if self.copy_out else out, meta)
                    want += 1
                self.stats.batches += 1
                with self._lock:
                    self._in_flight -= 1
                free.put(idx)
        except _Stopped:
            pass
        except BaseException as e:  # sink error or Ctrl-C: stop the others and re-raise
            self._fail(e)
        finally:
            self._stop.set()
            for t in threads:
                t.join(timeout=5)
        self.stats.frames = want
        self.stats.seconds = time.perf_counter() - t0
        if self._error is not None:
            raise self._error
        return self.stats


# ---------------------------------------------------------------------------------------------
# Video input for the GPU path (PyAV): planar YUV frames, so colour conversion stays on the GPU
# (output: vmatte.io.sinks.VideoSink.write_i420)
# ---------------------------------------------------------------------------------------------
def open_video_reader(path: str, hwaccel: bool = True):
    """av container for `path`, decoding on NVDEC (PyAV hwaccel 'cuda') when it is there and
    falling back to software otherwise. Returns (container, stream, used_hw: bool)."""
    import av

    c = None
    if hwaccel:
        try:
            from av.codec.hwaccel import HWAccel, hwdevices_available

            if "cuda" in hwdevices_available():
                c = av.open(str(path), hwaccel=HWAccel("cuda", allow_software_fallback=True))
        except Exception as e:  # noqa: BLE001 - no driver, no libnvcuvid: software decode
            log.info("NVDEC decode unavailable (%s); decoding on the CPU", e)
            c = None
    used_hw = c is not None
    if c is None:
        c = av.open(str(path))
    vs = c.streams.video[0]
    vs.thread_type = "AUTO"
    return c, vs, used_hw


def iter_yuv_frames(path: str, hwaccel: bool = True, fmt: str = "yuv420p", info: dict | None = None):
    """Yield (planes uint8 [H*3/2, W], (pts, time_base)) of a video: the decoder's own planes when
    they are already `fmt` (no colour conversion on the CPU). `info` gets 'hw' and 'format'."""
    c, vs, used_hw = open_video_reader(path, hwaccel)
    try:
        for k, f in enumerate(c.decode(vs)):
            if info is not None and k == 0:
                info.update(hw=used_hw and f.format.name in ("cuda", "nv12"), format=f.format.name)
            yield f.to_ndarray(format=fmt), (f.pts, f.time_base)
    finally:
        c.close()
