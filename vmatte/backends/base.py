"""The one Backend interface every runtime (TensorRT, torch, onnxruntime) implements.

A backend runs the three components of a model by name. Inputs/outputs are float arrays in
NCHW layout; CPU backends take and give numpy arrays, GPU backends also accept and return
device tensors (torch CUDA tensors) so a GPU runner can keep frames on the device."""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

# Component signatures: input names, output name. Shapes: image [B,3,h,w] (low res for segmenter and
# generator, full res padded to 64 for the refiner), mask/coarse [B,1,h,w], alpha [B,1,H,W].
COMPONENT_IO: dict[str, tuple[tuple[str, ...], str]] = {
    "segmenter": (("image",), "mask"),
    "generator": (("image", "mask"), "coarse"),
    "refiner": (("image", "coarse"), "alpha"),
}

# The refiner's patch net alone, exported next to the components (FP32 exports only) as
# <PATCH_NET>.onnx: onnxruntime runs it on windows the host gathers and pastes (vmatte.ops.patches),
# cheaper on a CPU than the refiner graph's whole-frame plumbing. Inputs image [K,3,S,S] and alpha
# [K,1,S,S] (S = 64 + 2 * context), output the refined cells [K,1,64,64]; its metadata records
# the patch budget K (vmatte_patches) and the context (vmatte_context).
PATCH_NET = "refiner_patches"
PATCH_NET_IO: tuple[tuple[str, ...], str] = (("image", "alpha"), "patches")


def patch_plan(metadata: dict[str, str], path: Any) -> tuple[int, int]:
    """(patch budget, context) from a PATCH_NET file's metadata; a one-line VmatteError if absent."""
    from ..errors import VmatteError

    try:
        return int(metadata["vmatte_patches"]), int(metadata["vmatte_context"])
    except (KeyError, ValueError):
        raise VmatteError(f"ONNX file {path} lacks its patch budget and context metadata; "
                          "re-export it with `vmatte export --format onnx --force`") from None


# Paired files (vmatte.models.pairs), exported next to their part (FP32 exports only): two copies of
# a net side by side in the channels, for less time where onnxruntime's blocked convolutions use
# 16-channel blocks (AVX-512) and more elsewhere. The paired patch net takes windows in pairs: its
# metadata vmatte_window_multiple says so, and callers pad K to it (vmatte.ops.patches.in_multiples).
PAIRED = {"generator": "generator_pairs", PATCH_NET: "refiner_patches_pairs"}
PATCH_NET_PAIRS = PAIRED[PATCH_NET]


def avx512() -> bool:
    """Whether this CPU has AVX-512 (onnxruntime's NCHWc convolutions then use 16-channel blocks),
    as numpy's runtime dispatch saw it; False where that cannot be read."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy 1.x
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return False
    return bool(features.get("AVX512F") and features.get("AVX512BW"))


def part_file(onnx_dir: Path, part: str, precision: str = "fp32", pairs: bool | None = None) -> Path | None:
    """The file onnxruntime runs for `part` (a component or PATCH_NET) from `onnx_dir`: its paired
    file (PAIRED) when `pairs` (None: on AVX-512 CPUs) and the FP32 export has one, else the plain
    <part>.onnx (int8: <part>.int8.onnx); None when the export lacks it."""
    onnx_dir = Path(onnx_dir)
    if precision == "int8":
        plain = onnx_dir / f"{part}.int8.onnx"
        return plain if plain.is_file() else None
    if part in PAIRED and (avx512() if pairs is None else pairs):
        paired = onnx_dir / f"{PAIRED[part]}.onnx"
        if paired.is_file():
            return paired
    plain = onnx_dir / f"{part}.onnx"
    return plain if plain.is_file() else None


def window_multiple(metadata: dict[str, str]) -> int:
    """How many windows the patch net's batch must be a multiple of (1 for the plain net)."""
    try:
        return max(1, int(metadata.get("vmatte_window_multiple", "1")))
    except ValueError:
        return 1

# Bumped whenever the exported graphs change for the same weights (2: the refiner scores cells on
# samples of the upsampled alpha and runs its decoder on the patch centres). ONNX files record it
# (metadata vmatte_graph_version) and engine keys include it, so exports and engines of an older
# graph are rebuilt rather than run.
GRAPH_VERSION = 2

PRECISIONS = ("fp32", "int8")  # Matter(precision=...): int8 is an opt-in CPU precision of onnxruntime


class ThreadScratch:
    """Float32 arrays reused per thread and key: a fresh multi-MB array per 720p frame costs
    several ms of page faults on a small CPU. An array stays valid until the same thread asks for
    the same key again; the cache is dropped when it grows past `limit` keys (sizes changing)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._local = threading.local()

    def get(self, key: Any, shape: tuple[int, ...]) -> Any:
        import numpy as np

        cache = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = {}
        buf = cache.get(key)
        if buf is None or buf.shape != shape:
            if len(cache) > self.limit:
                cache.clear()
            buf = cache[key] = np.empty(shape, np.float32)
        return buf


@dataclass(frozen=True)
class ModelSource:
    """Where a backend finds a model: the variant name, its weights file and, when exported,
    the folder of its ONNX files."""

    model: str
    weights: Path
    onnx_dir: Path | None = None


class Backend(ABC):
    """Runs segmenter, generator and refiner. Subclasses register with @register_backend."""

    name: ClassVar[str]
    device: ClassVar[str] = "cpu"  # "cpu" or "cuda"
    priority: ClassVar[int] = 0  # `auto` picks the available backend with the highest priority

    @classmethod
    @abstractmethod
    def availability(cls) -> tuple[bool, str]:
        """(True, "") when usable here, else (False, why and how to fix)."""

    @abstractmethod
    def __init__(self, source: ModelSource, **options: Any) -> None: ...

    @abstractmethod
    def run(self, component: str, **inputs: Any) -> Any:
        """Run one component; returns its single output (same array kind as the inputs)."""

    # (patch budget, context) when the backend runs the refiner's patch net alone (run_patch_net),
    # so the host can do the refiner's plumbing straight from the uint8 frame (vmatte.api.run_matte).
    patch_plan: tuple[int, int] | None = None

    def run_patch_net(self, image: Any, alpha: Any) -> Any:
        """The refiner's patch net on windows [K,3,S,S], [K,1,S,S] -> cells [K,1,64,64]; only
        backends with a patch_plan have one."""
        raise NotImplementedError(f"the {self.name} backend runs the refiner as one graph")

    def close(self) -> None:
        """Release sessions, engines and device memory."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
