"""TensorRT backend: the fastest path on NVIDIA GPUs.

Engines come from vmatte.engine_cache (built on first use, then reused). Device memory is torch
CUDA tensors: inputs may be torch CUDA tensors (kept on the GPU, output is a torch tensor) or numpy
arrays (copied through pinned host buffers; output is float32 numpy). All work is queued on one
CUDA stream, exposed as `.stream`, so a GPU runner can order its own work with events. Follows the
TensorRT 10.x/11.x name-based API: set_input_shape, set_tensor_address, execute_async_v3."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import VmatteError
from .base import COMPONENT_IO, Backend, ModelSource

log = logging.getLogger(__name__)


class _NullStream:
    """Stand-in for a CUDA stream when tensors live on the CPU (tests with a fake TensorRT)."""

    cuda_stream = 0

    def synchronize(self) -> None:
        pass

    def wait_stream(self, other) -> None:
        pass


class TensorRTBackend(Backend):
    name = "tensorrt"
    device = "cuda"
    priority = 100
    channels_last = False  # for vmatte.gpu_runner.MattingProgram: engines take NCHW

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        from vmatte.engine_cache import gpu_info

        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return False, "TensorRT is not installed; pip install tensorrt (needs an NVIDIA GPU and driver) or use --backend torch-cuda/onnxruntime"
        except OSError as e:
            return False, f"TensorRT cannot load its libraries ({e}); install the NVIDIA driver and CUDA runtime"
        try:
            gpu_info(0)
        except RuntimeError as e:
            return False, f"{e}; TensorRT needs an NVIDIA GPU and driver"
        try:
            import torch
        except ImportError:
            return False, "torch is not installed (vmatte's TensorRT backend uses torch CUDA tensors); pip install 'vmatte[trt]'"
        if not torch.cuda.is_available():
            return False, "torch cannot use the GPU (CPU-only torch build?); install a CUDA build of torch"
        return True, ""

    def __init__(
        self,
        source: ModelSource,
        sizes: Sequence[tuple[int, int]] | str | None = None,
        batch: int = 1,
        precision: str = "fp16",
        long_side: int | None = None,
        workspace_gb: float | None = None,
        engine_dir: str | Path | None = None,
        force: bool = False,
        device: str | int = 0,
        builder=None,
        onnx_dir: str | Path | None = None,
        **_: Any,
    ):
        import torch

        from ..export.tensorrt import DEFAULT_WORKSPACE_GB, ensure_engines, parse_sizes, require_tensorrt, trt_logger

        self.torch = torch
        trt = self.trt = require_tensorrt()
        if precision not in ("fp16", "fp32"):
            raise VmatteError(f"precision {precision!r} is not supported by the TensorRT backend; use 'fp16' or 'fp32'")
        self.dev = torch.device(f"cuda:{device}" if isinstance(device, int) else device)
        on_gpu = self.dev.type == "cuda"
        sizes = parse_sizes(sizes) if sizes is not None else None
        built = ensure_engines(
            source.model,
            source.weights,
            sizes=sizes,
            batch=batch,
            precision=precision,
            long_side=long_side,
            workspace_gb=workspace_gb or DEFAULT_WORKSPACE_GB,
            out_dir=engine_dir,
            force=force,
            device=(self.dev.index or 0) if on_gpu else 0,
            builder=builder,
            onnx_dir=onnx_dir,
        )
        self.engine_paths = {c: p for c, (p, _) in built.items()}
        self.max_batch = int(batch)  # the engines' profiles take up to this many frames a call
        self._logger = trt_logger(trt)  # process-wide: must outlive the runtime and engines
        self.runtime = trt.Runtime(self._logger)
        self.engines: dict[str, Any] = {}
        self.contexts: dict[str, Any] = {}
        self.io: dict[str, dict[str, Any]] = {}  # component -> {tensor name: torch dtype}
        for comp, (path, blob) in built.items():
            engine = self.runtime.deserialize_cuda_engine(blob)
            if engine is None:
                raise VmatteError(f"TensorRT could not load engine {path}; delete it (or pass force=True / `vmatte export --format tensorrt --force`) to rebuild")
            ctx = engine.create_execution_context()
            if ctx is None:
                raise VmatteError(f"TensorRT could not create an execution context for {path} (out of GPU memory?)")
            self.engines[comp], self.contexts[comp] = engine, ctx
            self.io[comp] = self._io_dtypes(engine, comp)
        self.stream = torch.cuda.Stream(self.dev) if on_gpu else _NullStream()
        self._pinned: dict[tuple[str, str], Any] = {}  # (component, tensor) -> pinned host tensor
        self._out: dict[str, Any] = {}  # component -> reused device output (numpy path)
        self._pin = on_gpu

    def _io_dtypes(self, engine, component: str) -> dict[str, Any]:
        """{tensor name: torch dtype} of the engine's I/O tensors; checks the names match COMPONENT_IO."""
        trt, torch = self.trt, self.torch
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        want_in, want_out = COMPONENT_IO[component]
        ins = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if n not in ins]
        if sorted(ins) != sorted(want_in) or outs != [want_out]:
            raise VmatteError(f"engine for {component} has inputs {ins} and outputs {outs}, expected {list(want_in)} -> {want_out}; rebuild it with force=True")
        table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        out = {}
        for n in names:
            dt = engine.get_tensor_dtype(n)
            if dt not in table:
                raise VmatteError(f"engine tensor {n!r} of {component} has dtype {dt}; vmatte handles FP32/FP16 engines only, rebuild with force=True")
            out[n] = table[dt]
        return out

    # -- host/device transfers ------------------------------------------------------------------
    def _input_tensor(self, component: str, name: str, x: Any, dtype):
        """x as a contiguous device tensor of `dtype`, queued on self.stream."""
        torch = self.torch
        if isinstance(x, torch.Tensor):
            if x.device != self.dev:
                raise ValueError(f"input {name!r} of {component} is on {x.device}, expected {self.dev}; move it with .to('{self.dev}') or pass a numpy array")
            t = x.to(dtype).contiguous()
            if self._pin:
                t.record_stream(self.stream)  # keep its memory alive until the engine has read it
            return t
        arr = np.ascontiguousarray(x)
        if arr.ndim != 4:
            raise ValueError(f"input {name!r} of {component} has shape {arr.shape}, expected NCHW [B,C,H,W]")
        key = (component, name)
        host = self._pinned.get(key)
        if host is None or tuple(host.shape) != arr.shape or host.dtype != dtype:
            host = torch.empty(arr.shape, dtype=dtype, pin_memory=self._pin)
            self._pinned[key] = host
        host.copy_(torch.from_numpy(arr))  # casts float32 -> float16 on the CPU when needed
        return host.to(self.dev, non_blocking=True)

    def run(self, component: str, **inputs: Any):
        """Run one engine. torch CUDA inputs -> torch tensor (input dtype) ordered after the caller's
        current stream; numpy inputs -> float32 numpy (synchronises)."""
        torch = self.torch
        if component not in self.contexts:
            raise ValueError(f"unknown component {component!r}; expected one of {', '.join(COMPONENT_IO)}")
        names, out_name = COMPONENT_IO[component]
        missing = [n for n in names if n not in inputs]
        if missing:
            raise TypeError(f"{component} needs inputs {list(names)}, got {sorted(inputs)}; pass {missing[0]}=...")
        ctx, dtypes = self.contexts[component], self.io[component]
        first = inputs[names[0]]
        as_torch = isinstance(first, torch.Tensor)
        caller = torch.cuda.current_stream(self.dev) if self._pin else None
        if as_torch and caller is not None:
            self.stream.wait_stream(caller)  # inputs were produced on the caller's stream
        with torch.cuda.stream(self.stream) if self._pin else _nullcontext():
            keep = []
            for n in names:
                t = self._input_tensor(component, n, inputs[n], dtypes[n])
                keep.append(t)
                if not ctx.set_input_shape(n, tuple(t.shape)):
                    lo, _, hi = self.engines[component].get_tensor_profile_shape(n, 0)
                    raise ValueError(f"{component} input {n!r} has shape {tuple(t.shape)}, outside the engine's profile {tuple(lo)}..{tuple(hi)}; build engines for this size (sizes=[(H, W)] or `vmatte export --format tensorrt --sizes WxH`)")
                ctx.set_tensor_address(n, int(t.data_ptr()))
            shape = tuple(ctx.get_tensor_shape(out_name))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"TensorRT could not infer the output shape of {component} ({shape}) from inputs {[tuple(t.shape) for t in keep]}")
            odt = dtypes[out_name]
            if as_torch:
                out = torch.empty(shape, dtype=odt, device=self.dev)  # fresh: the caller may keep it
            else:
                out = self._out.get(component)
                if out is None or tuple(out.shape) != shape or out.dtype != odt:
                    out = self._out[component] = torch.empty(shape, dtype=odt, device=self.dev)
            ctx.set_tensor_address(out_name, int(out.data_ptr()))
            if not ctx.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"TensorRT failed to run {component}; rerun with -vv for the TensorRT log")
            if as_torch:
                want = first.dtype if first.dtype in (torch.float16, torch.float32) else torch.float32
                res = out if out.dtype == want else out.to(want)
                if caller is not None:
                    res.record_stream(caller)
                    caller.wait_stream(self.stream)
                return res
            key = (component, out_name)
            host = self._pinned.get(key)
            if host is None or tuple(host.shape) != shape or host.dtype != odt:
                host = self._pinned[key] = torch.empty(shape, dtype=odt, pin_memory=self._pin)
            host.copy_(out, non_blocking=self._pin)
        self.stream.synchronize()
        return np.array(host.numpy(), dtype=np.float32, copy=True)

    # -- the whole chain on device tensors (vmatte.gpu_runner.MattingProgram) ----------------------
    @property
    def dtype(self):
        """The engines' input dtype (FP16 for strongly typed FP16 engines): the program's working dtype."""
        return self.io["refiner"]["image"]

    def _device(self) -> str:
        return str(self.dev)

    def _chain(self, full, low):
        """segmenter -> generator -> refiner on device tensors full [B,3,Hp,Wp], low [B,3,h,w]
        (B <= max_batch), ordered on the caller's stream; alpha [B,1,Hp,Wp] stays on the device."""
        from ..ops.sizes import needs_refiner

        mask = self.run("segmenter", image=low)  # [B,1,h,w]
        coarse = self.run("generator", image=low, mask=mask)  # [B,1,h,w]
        if not needs_refiner(full.shape, low.shape):  # as Matter.matte: the coarse alpha upsampled
            F = self.torch.nn.functional
            return F.interpolate(coarse, size=tuple(full.shape[2:]), mode="bilinear", align_corners=False).clamp(0.0, 1.0)
        return self.run("refiner", image=full, coarse=coarse)  # [B,1,Hp,Wp]

    def close(self) -> None:
        try:
            self.stream.synchronize()
        except Exception:  # closing must not raise on a broken device
            pass
        self.contexts.clear()
        self.engines.clear()
        self._pinned.clear()
        self._out.clear()


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


BACKENDS = {"tensorrt": TensorRTBackend}
