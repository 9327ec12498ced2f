"""onnxruntime backend: the CPU path (no torch needed at run time)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VmatteError
from .base import COMPONENT_IO, PRECISIONS, Backend, ModelSource, ThreadScratch

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

    def __init__(self, source: ModelSource, threads: int | None = None, providers: list[str] | None = None,
                 precision: str = "fp32", **_: Any):
        """precision "int8" loads <component>.int8.onnx (made at release time by vmatte.export.quantize)
        instead of <component>.onnx: opt-in, as it is hardly faster on the CPUs measured (docs/benchmarks.md)."""
        import onnxruntime as ort

        if precision not in PRECISIONS:
            raise VmatteError(f"precision {precision!r} is not supported by the onnxruntime backend; use 'fp32' or 'int8'")
        self.precision = precision

        if source.onnx_dir is None:
            raise VmatteError(f"model {source.model!r} has no ONNX export; run `vmatte export --model {source.model} --format onnx` first")
        self.sessions: dict[str, Any] = {}
        self.files: dict[str, Path] = {}  # the model file each session runs
        self._outputs = ThreadScratch(limit=12)  # output arrays, per thread, component and shape
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One thread per session by default: on small CPUs two intra-op threads were slower (thread
        # hand-off costs more than these small convolutions gain); run frames in parallel instead.
        opts.intra_op_num_threads = threads or 1
        opts.log_severity_level = 3
        providers = providers or ["CPUExecutionProvider"]
        for comp in COMPONENT_IO:
            path = Path(source.onnx_dir) / (f"{comp}.int8.onnx" if precision == "int8" else f"{comp}.onnx")
            if not path.is_file() and precision == "int8":
                raise VmatteError(f"int8 file {path} is missing; make it with `python -m vmatte.export.quantize "
                                  f"{source.onnx_dir} --calib PHOTOS_OR_VIDEOS` (needs vmatte[torch]), or use --precision fp32")
            if not path.is_file():
                raise VmatteError(f"ONNX file {path} is missing; run `vmatte export --model {source.model} --format onnx`")
            try:
                self.sessions[comp] = ort.InferenceSession(str(path), opts, providers=providers)
                self.files[comp] = path
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
