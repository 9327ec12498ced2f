"""onnxruntime backend: the CPU path (no torch needed at run time)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VmatteError
from ..ops.patches import PATCH
from .base import (COMPONENT_IO, PATCH_NET, PATCH_NET_IO, PRECISIONS, Backend, ModelSource, ThreadScratch, part_file,
                   patch_plan, window_multiple)

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
                 precision: str = "fp32", pairs: bool | None = None, **_: Any):
        """precision "int8" loads <component>.int8.onnx (made at release time by vmatte.export.quantize)
        instead of <component>.onnx: opt-in, as it is hardly faster on the CPUs measured (docs/benchmarks.md).
        pairs: run the paired files where the export has them (None: on AVX-512 CPUs with the CPU
        provider alone, where they are faster; vmatte.models.pairs)."""
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
        if pairs is None and any(p != "CPUExecutionProvider" for p in providers):
            pairs = False  # the paired graphs are for onnxruntime's CPU kernels only
        for comp in COMPONENT_IO:
            path = part_file(Path(source.onnx_dir), comp, precision, pairs)
            if path is None:
                missing = Path(source.onnx_dir) / (f"{comp}.int8.onnx" if precision == "int8" else f"{comp}.onnx")
                if precision == "int8":
                    raise VmatteError(f"int8 file {missing} is missing; make it with `python -m vmatte.export.quantize "
                                      f"{source.onnx_dir} --calib PHOTOS_OR_VIDEOS` (needs vmatte[torch]), or use --precision fp32")
                raise VmatteError(f"ONNX file {missing} is missing; run `vmatte export --model {source.model} --format onnx`")
            self._load(ort, comp, path, opts, providers)
        # The refiner's patch net alone, when the export has it (older exports run the whole refiner
        # graph): the host then does the refiner's plumbing (vmatte.ops.patches), for less time.
        self.patch_plan: tuple[int, int] | None = None  # (patch budget, context) of the host refiner
        self._patch_net = self._run_patch_net  # for any number of windows (the paired net pads to its multiple)
        patch_file = part_file(Path(source.onnx_dir), PATCH_NET, precision, pairs)
        if patch_file is not None:
            from ..ops.patches import in_multiples

            meta = self._load(ort, PATCH_NET, patch_file, opts, providers).get_modelmeta().custom_metadata_map
            self.patch_plan = patch_plan(meta, patch_file)
            self._patch_net = in_multiples(self._run_patch_net, window_multiple(meta))
        else:
            log.info("no %s.onnx in %s: the refiner runs as one graph (re-export for the faster CPU path)", PATCH_NET, source.onnx_dir)

    def _load(self, ort, comp: str, path: Path, opts, providers) -> Any:
        try:
            self.sessions[comp] = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:
            raise VmatteError(f"ONNX file {path} is damaged ({str(e).splitlines()[0]}); re-export it with `vmatte export`") from None
        self.files[comp] = path
        return self.sessions[comp]

    def run(self, component: str, **inputs: np.ndarray) -> np.ndarray:
        """Run one component. The result is a per-thread buffer reused by the next call of the same
        component and shape on this thread: copy it to keep it."""
        names, out_name = COMPONENT_IO[component]
        feed = {n: np.ascontiguousarray(inputs[n], dtype=np.float32) for n in names}
        img = feed["image"]
        shape = (img.shape[0], 1, img.shape[2], img.shape[3])
        out = self._outputs.get((component, shape), shape)
        if component == "refiner" and self.patch_plan is not None:
            from ..ops.patches import refine_alpha

            for b in range(img.shape[0]):
                alpha = refine_alpha(img[b].transpose(1, 2, 0), feed["coarse"][b, 0], img.shape[2:], *self.patch_plan,
                                     self.run_patch_net, out=out[b, 0])
                if not np.shares_memory(alpha, out):  # OpenCV wrote elsewhere: copy it in
                    out[b, 0] = alpha
            return out
        return self._run(component, feed, out_name, out)

    def _run(self, component: str, feed: dict[str, np.ndarray], out_name: str, out: np.ndarray) -> np.ndarray:
        binding = self.sessions[component].io_binding()
        for n, arr in feed.items():
            binding.bind_cpu_input(n, arr)
        binding.bind_output(out_name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        self.sessions[component].run_with_iobinding(binding)
        return out

    def run_patch_net(self, image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """The refiner's patch net on gathered windows [K,3,S,S], [K,1,S,S] -> cells [K,1,64,64]
        (a per-thread buffer, as run's), for any K (the paired net's batch is padded to its multiple)."""
        return self._patch_net(image, alpha)

    def _run_patch_net(self, image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        (img_name, alpha_name), out_name = PATCH_NET_IO
        shape = (image.shape[0], 1, PATCH, PATCH)
        out = self._outputs.get((PATCH_NET, shape), shape)
        return self._run(PATCH_NET, {img_name: image, alpha_name: alpha}, out_name, out)

    def close(self) -> None:
        self.sessions.clear()


BACKENDS = {"onnxruntime": OnnxRuntimeBackend}
