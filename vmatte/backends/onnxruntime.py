"""onnxruntime backend: the CPU path (no torch needed at run time)."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VmatteError
from .base import COMPONENT_IO, Backend, ModelSource

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
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or max(1, min(4, os.cpu_count() or 1))
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
        names, _ = COMPONENT_IO[component]
        feed = {n: np.ascontiguousarray(inputs[n], dtype=np.float32) for n in names}
        return self.sessions[component].run(None, feed)[0]

    def close(self) -> None:
        self.sessions.clear()


BACKENDS = {"onnxruntime": OnnxRuntimeBackend}
