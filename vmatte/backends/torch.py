"""torch backends: `torch` (CPU, float32) and `torch-cuda` (NVIDIA GPU, FP16, channels-last,
CUDA graphs), for machines without TensorRT and for parity checks.

Besides the per-component `run(component, ...)` of every backend, both offer `run_all(full, low)`:
the whole segmenter -> generator -> refiner chain in one call on device tensors. On CUDA it is
captured once per input shape into a CUDA graph and replayed, which removes the per-kernel launch
cost that dominates a model this small (hundreds of tiny kernels per frame)."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import numpy as np

from .base import COMPONENT_IO, Backend, ModelSource

log = logging.getLogger(__name__)


def load_model(source: ModelSource):
    """Build the registered variant and load its weights (CPU, eval mode)."""
    from ..registry import create_model
    from ..weights import load_weights

    model = create_model(source.model)
    load_weights(model, source.weights)
    return model.eval()


def fold_batchnorm(model):
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d (inside an nn.Sequential)
    into the conv's weight and bias, replacing the BN with Identity: one kernel less per conv at
    inference, same outputs up to rounding. Modifies and returns `model` (call on a copy)."""
    import torch
    from torch import nn

    for mod in model.modules():
        if not isinstance(mod, nn.Sequential):
            continue
        names = list(mod._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = mod._modules[a], mod._modules[b]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)) or bn.training:
                continue
            with torch.no_grad():
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # [C]
                w = conv.weight * scale.view(-1, 1, 1, 1)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                b_new = (bias - bn.running_mean) * scale + bn.bias
                conv.weight = nn.Parameter(w)
                conv.bias = nn.Parameter(b_new)
            mod._modules[b] = nn.Identity()
    return model


class GraphCache:
    """CUDA graphs of a function `fn(*tensors) -> tensor`, one per input signature (shapes, dtypes).

    call(*inputs) copies the inputs into the graph's static buffers, replays the graph on the
    current stream and returns its static output: valid until the next call with the same shapes
    on this cache (consume or clone it in stream order before that). `max_graphs` bounds memory;
    the least recently used graph is dropped."""

    def __init__(self, fn: Callable, warmup: int = 3, max_graphs: int = 8):
        import torch

        self.torch = torch
        self.fn = fn
        self.warmup = warmup
        self.max_graphs = max_graphs
        self.graphs: dict[tuple, tuple[Any, list, Any]] = {}
        self.pool = torch.cuda.graph_pool_handle()

    @staticmethod
    def key(inputs) -> tuple:
        return tuple((tuple(t.shape), t.dtype, t.is_contiguous()) for t in inputs)

    def _capture(self, inputs) -> tuple[Any, list, Any]:
        torch = self.torch
        t0 = time.perf_counter()
        static = [t.detach().clone(memory_format=torch.preserve_format) for t in inputs]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(self.warmup):  # cudnn autotuning and lazy init stay out of the graph
                self.fn(*static)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.current_stream().synchronize()  # (once per shape) so the log splits warm-up from capture
        t1 = time.perf_counter()
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            out = self.fn(*static)
        log.info("captured a CUDA graph for %s: %d warm-up passes %.2f s, capture %.2f s",
                 [tuple(t.shape) for t in inputs], self.warmup, t1 - t0, time.perf_counter() - t1)
        return graph, static, out

    def __call__(self, *inputs):
        k = self.key(inputs)
        entry = self.graphs.pop(k, None)
        if entry is None:
            if len(self.graphs) >= self.max_graphs:
                self.graphs.pop(next(iter(self.graphs)))
            entry = self._capture(inputs)
        self.graphs[k] = entry  # most recently used last
        graph, static, out = entry
        for s, t in zip(static, inputs):
            if s.data_ptr() != t.data_ptr():
                s.copy_(t, non_blocking=True)
        graph.replay()
        return out

    def static_inputs(self, *inputs) -> list:
        """The static input buffers of the graph for these shapes (capturing it if needed), so a
        caller can write its inputs there directly and skip the copy in __call__."""
        k = self.key(inputs)
        if k not in self.graphs:
            self.graphs[k] = self._capture(inputs)
        return self.graphs[k][1]

    def clear(self) -> None:
        self.graphs.clear()


class TorchBackend(Backend):
    name = "torch"
    device = "cpu"
    priority = 5

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import torch  # noqa: F401
        except ImportError:
            return False, "torch is not installed; pip install 'vmatte[torch]'"
        return True, ""

    def __init__(self, source: ModelSource | None, model=None, half: bool = False, **_: Any):
        import torch

        if model is None and source is None:
            raise TypeError("TorchBackend needs a ModelSource or a model; got neither")
        self.torch = torch
        self.model = model if model is not None else load_model(source)
        self.dtype = torch.float16 if half else torch.float32
        self.model = self.model.to(self._device(), self.dtype).eval()
        self.components = {c: getattr(self.model, c) for c in COMPONENT_IO}

    def _device(self) -> str:
        return "cpu"

    def _to_tensor(self, x):
        t = x if isinstance(x, self.torch.Tensor) else self.torch.from_numpy(np.ascontiguousarray(x))
        return t.to(self._device(), self.dtype, non_blocking=True)

    def run(self, component: str, **inputs: Any):
        names, _ = COMPONENT_IO[component]
        as_numpy = not isinstance(inputs[names[0]], self.torch.Tensor)
        with self.torch.inference_mode():
            out = self.components[component](*(self._to_tensor(inputs[n]) for n in names))
        if as_numpy:
            return out.float().cpu().numpy()
        return out

    def _chain(self, full, low):
        """segmenter -> generator -> refiner on device tensors: full [B,3,Hp,Wp], low [B,3,h,w]; the
        refiner only where the frame is enough larger than low (vmatte.ops.sizes.needs_refiner)."""
        from ..ops.sizes import needs_refiner

        m = self.model
        mask = m.segmenter(low)  # [B,1,h,w]
        coarse = m.generator(low, mask)  # [B,1,h,w]
        if not needs_refiner(full.shape, low.shape):  # upsampled as the refiner would (shape-fixed: graph-safe)
            F = self.torch.nn.functional
            return F.interpolate(coarse, size=full.shape[2:], mode="bilinear", align_corners=False).clamp(0.0, 1.0)
        return m.refiner(full, coarse)  # [B,1,Hp,Wp]

    def run_all(self, full, low):
        """Alpha [B,1,Hp,Wp] of the whole chain. numpy in -> float32 numpy out; tensors in ->
        a tensor of this backend's dtype on its device."""
        as_numpy = not isinstance(full, self.torch.Tensor)
        with self.torch.inference_mode():
            out = self._chain(self._to_tensor(full), self._to_tensor(low))
        return out.float().cpu().numpy() if as_numpy else out


class TorchCudaBackend(TorchBackend):
    """FP16 on an NVIDIA GPU, channels-last memory format, and CUDA graphs for `run_all`.

    Options: half (default True), channels_last (True), cuda_graphs (True), fold_bn (True: fold
    BatchNorm into the convs; the model is copied first), compile (False: torch.compile the chain
    with inductor before graph capture; slow to start)."""

    name = "torch-cuda"
    device = "cuda"
    priority = 50

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import torch
        except ImportError:
            return False, "torch is not installed; pip install 'vmatte[torch]'"
        if not torch.cuda.is_available():
            return False, "no CUDA GPU is visible to torch (install an NVIDIA driver and a CUDA build of torch)"
        return True, ""

    def __init__(self, source: ModelSource | None, model=None, half: bool = True, channels_last: bool = True,
                 cuda_graphs: bool = True, fold_bn: bool = True, compile: bool = False, **kw: Any):
        if fold_bn:
            import copy

            model = fold_batchnorm(copy.deepcopy(model).eval() if model is not None else load_model(source))
        super().__init__(source, model=model, half=half, **kw)
        import torch

        torch.backends.cudnn.benchmark = True
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._fn = self._chain
        if compile:
            self._fn = torch.compile(self._chain, dynamic=False)
        self.graphs = GraphCache(self._fn) if cuda_graphs else None

    def _device(self) -> str:
        return "cuda"

    def _to_tensor(self, x):
        t = super()._to_tensor(x)
        if self.channels_last and t.dim() == 4:
            t = t.contiguous(memory_format=self.torch.channels_last)
        return t

    def run_all(self, full, low):
        """As TorchBackend.run_all; with CUDA graphs a tensor result is the graph's static output,
        valid until the next run_all of the same shapes (clone it to keep it)."""
        as_numpy = not isinstance(full, self.torch.Tensor)
        full_t, low_t = self._to_tensor(full), self._to_tensor(low)
        if self.graphs is None:
            with self.torch.inference_mode():
                out = self._fn(full_t, low_t)
        else:
            out = self.graphs(full_t, low_t)
        return out.float().cpu().numpy() if as_numpy else out

    def close(self) -> None:
        if self.graphs is not None:
            self.graphs.clear()


BACKENDS = {"torch": TorchBackend, "torch-cuda": TorchCudaBackend}
