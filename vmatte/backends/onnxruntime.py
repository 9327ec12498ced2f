"""onnxruntime backend: the CPU path (no torch needed at run time)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VmatteError
from .base import COMPONENT_IO, Backend, ModelSource, ThreadScratch

log = logging.getLogger(__name__)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    device = "cpu"
    priority = 10

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False, "onnxruntime is not installed; pip install onnxruntime"
        return True, ""

    def __init__(self, source: ModelSource, threads: int | None = None, providers: list[str] | None = None, **_: Any):
        import onnxruntime as ort

        if source.onnx_dir is None:
            raise VmatteError(f"model {source.model!r} has no ONNX export; run `vmatte export --model {source.model} --format onnx` first")
        self.sessions: dict[str, Any] = {}
        self._outputs = ThreadScratch(limit=12)  # output arrays, per thread, component and shape
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One thread per session by default: on small CPUs two intra-op threads were slower (thread
        # hand-off costs more than these small convolutions gain); run frames in parallel instead.
        opts.intra_op_num_threads = threads or 1
        opts.log_severity_level = 3
        providers = providers or ["CPUExecutionProvider"]
        for comp in COMPONENT_IO:
            path = Path(source.onnx_dir) / f"{comp}.onnx"
            if not path.is_file():
                raise VmatteError(f"ONNX file {path} is missing; run `vmatte export --model {source.model} --format onnx`")
            try:
                self.sessions[comp] = ort.InferenceSession(str(path), opts, providers=providers)
            except Exception as e:
                raise VmatteError(f"ONNX file {path} is damaged ({str(e).splitlines()[0]}); re-export it with `vmatte export`") from None

    def run(self, component: str, **inputs: np.ndarray) -> np.ndarray:
        """Run one component. The result is a per-thread buffer reused by the next call of the same
        component and shape on this thread: copy it to keep it."""
        names, out_name = COMPONENT_IO[component]
        feed = {n: np.ascontiguousarray(inputs[n], dtype=np.float32) for n in names}
        img = feed["image"]
        shape = (img.shape[0], 1, img.shape[2], img.shape[3])
        out = self._outputs.get((component, shape), shape)
        binding = self.sessions[component].io_binding()
        for n, arr in feed.items():
            binding.bind_cpu_input(n, arr)
        binding.bind_output(out_name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        self.sessions[component].run_with_iobinding(binding)
        return out

    def close(self) -> None:
        self.sessions.clear()


BACKENDS = {"onnxruntime": OnnxRuntimeBackend}
