"""Python API: `Matter(model="rt", backend="auto").matte(rgb) -> alpha`."""
from __future__ import annotations

import json
import logging
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from .backends import ModelSource, create_backend, resolve_backend
from .backends.base import ThreadScratch
from .errors import VmatteError
from .ops.patches import refine_alpha
from .ops.resize import area_shrink
from .ops.sizes import SEG_STRIDE, frame_sizes, needs_refiner
from .weights import read_header, shipped_onnx_dir, shipped_weights

log = logging.getLogger(__name__)

# The generator's long side (--size): four segmenter strides at least; at most the largest frame
# side vmatte takes (vmatte.process.MAX_SIDE), beyond which the generator already runs at full size.
MIN_LONG_SIDE, MAX_LONG_SIDE = 4 * SEG_STRIDE, 8192
MAX_REFINE_PATCHES = 4096  # the refiner's cell budget a frame at most (Matter.refine_patches)


def to_nchw(rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 [H,W,3] -> float32 [1,3,H,W] in [0,1], into `out` when given. Reusing `out` avoids
    page faults on a fresh 12 MB array every 720p frame (several ms on a small CPU); splitting the
    planes first (OpenCV) and scaling each contiguously is faster than one strided pass."""
    if out is None:
        out = np.empty((1, 3, *rgb.shape[:2]), np.float32)
    for c, plane in enumerate(cv2.split(np.ascontiguousarray(rgb))):
        np.multiply(plane, np.float32(1.0 / 255.0), out=out[0, c], casting="unsafe")
    return out


_full_buffers = ThreadScratch(limit=4)  # the padded full-resolution input, per thread and shape


def prepare(rgb: np.ndarray, long_side: int, full: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """Host pre-processing of one frame: (full [1,3,Hp,Wp] edge-padded to whole refiner cells,
    low [1,3,h,w], the padded frame area-downscaled, for segmenter and generator). `full` is a
    per-thread buffer, valid until the same thread prepares its next frame; None when full=False
    (no refiner pass, so no full-resolution float copy)."""
    H, W = rgb.shape[:2]
    (Hp, Wp), (h, w) = frame_sizes(H, W, long_side)
    padded = rgb if (Hp, Wp) == (H, W) else cv2.copyMakeBorder(rgb, 0, Hp - H, 0, Wp - W, cv2.BORDER_REPLICATE)
    low = to_nchw(area_shrink(padded, w, h))
    shape = (1, 3, Hp, Wp)
    return (to_nchw(padded, _full_buffers.get(shape, shape)) if full else None), low


def run_matte(backend, rgb: np.ndarray, long_side: int) -> np.ndarray:
    """The alpha of one uint8 RGB frame through `backend`'s three components: H x W float32, the
    caller's own array. The refiner runs only when the frame is enough larger than the generator's
    input (vmatte.ops.sizes.needs_refiner); otherwise the coarse alpha is upsampled as it would."""
    H, W = rgb.shape[:2]
    (Hp, Wp), low_hw = frame_sizes(H, W, long_side)
    refine = needs_refiner((Hp, Wp), low_hw)
    plan = backend.patch_plan if refine else None  # the host gathers windows from the uint8 frame
    full, low = prepare(rgb, long_side, full=refine and plan is None)
    mask = backend.run("segmenter", image=low)
    coarse = backend.run("generator", image=low, mask=mask)
    if not refine:  # bilinear with half-pixel centres, as the refiner upsamples
        up = cv2.resize(np.asarray(coarse, np.float32)[0, 0], (Wp, Hp), interpolation=cv2.INTER_LINEAR)
        return np.clip(up[:H, :W], 0.0, 1.0)
    if plan is not None:
        up = refine_alpha(rgb, np.asarray(coarse)[0, 0], (Hp, Wp), *plan, backend.run_patch_net)
        return up if (Hp, Wp) == (H, W) else np.ascontiguousarray(up[:H, :W])
    alpha = np.asarray(backend.run("refiner", image=full, coarse=coarse))
    # Always a copy: backends may return a buffer they reuse on the next call.
    return np.array(alpha[0, 0, :H, :W], dtype=np.float32, copy=True)


def check_frame(rgb: Any) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise TypeError(f"expected an H x W x 3 uint8 numpy array, got {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}; convert with np.asarray(img, np.uint8)[..., :3]")
    if min(rgb.shape[:2]) < 8:
        raise ValueError(f"frame of {rgb.shape[1]}x{rgb.shape[0]} is too small; vmatte needs at least 8x8 pixels")
    return rgb


class Matter:
    """Load a model by name and matte RGB frames.

    model: registered variant (list_models(); those in list_models(shipped=True) need no weights); backend: "auto", "onnxruntime", "torch",
    "torch-cuda" or "tensorrt"; size: generator long side in pixels (default: the model's);
    weights: a .safetensors file (default: the shipped one); precision: "fp32" or "int8" (onnxruntime's
    <component>.int8.onnx files: opt-in, hardly faster on the CPUs measured); refine_patches: the
    refiner's cell budget a frame (onnxruntime only; default the model's; see the property)."""

    def __init__(self, model: str = "rt", backend: str = "auto", size: int | None = None, weights: str | Path | None = None,
                 precision: str = "fp32", refine_patches: int | None = None, **backend_options: Any):
        from .backends import backend_for_precision
        from .registry import list_models

        backend = backend_for_precision(backend, precision)  # int8: onnxruntime only
        if precision == "int8":
            backend_options["precision"] = precision

        if model not in list_models():
            raise VmatteError(f"unknown model {model!r}; valid models: {', '.join(list_models())}")
        self.model = model
        wpath = Path(weights) if weights is not None else shipped_weights(model)
        if weights is None and not wpath.is_file():
            have = ", ".join(list_models(shipped=True)) or "none"
            raise VmatteError(f"model {model!r} ships no weights (models that do: {have}); pick one of those, or train it "
                              "(python -m vmatte.training.train) and pass its .safetensors file as weights=PATH "
                              "(--weights in vmatte webcam, bench and export)")
        meta = read_header(wpath, model)
        self.card = json.loads(meta.get("card", "{}"))
        self.config = json.loads(meta["config"])
        if size is not None and not (MIN_LONG_SIDE <= size <= MAX_LONG_SIDE):
            raise VmatteError(f"--size {size} is out of range; use {MIN_LONG_SIDE} to {MAX_LONG_SIDE} "
                              f"(the model's default is {self.config['gen_long_side']})")
        onnx_dir = shipped_onnx_dir(model) if weights is None else None
        if onnx_dir is not None and not (onnx_dir / "segmenter.onnx").is_file():
            onnx_dir = None
        self.source = ModelSource(model, wpath, onnx_dir)
        name = resolve_backend(backend)
        if name == "onnxruntime" and onnx_dir is None:
            onnx_dir = self._export_onnx_cache(wpath)
            self.source = ModelSource(model, wpath, onnx_dir)
        self.long_side = int(size or self.config["gen_long_side"])
        backend_options.setdefault("long_side", self.long_side)  # engines' shape profiles follow it
        self.backend = create_backend(name, self.source, **backend_options)
        # GPU backends share one execution context, stream and staging buffers: one frame at a time.
        self._serial = threading.Lock() if getattr(self.backend, "device", "cpu") == "cuda" else nullcontext()
        if refine_patches is not None:
            self.refine_patches = refine_patches
        log.info("Matter(model=%s, backend=%s, size=%d)", model, self.backend.name, self.long_side)

    @staticmethod
    def _export_onnx_cache(weights: Path) -> Path:
        """ONNX export of user weights for onnxruntime, cached by the weights' hash and the graph
        version (a newer vmatte's graphs are exported afresh)."""
        from .backends.base import GRAPH_VERSION, PATCH_NET
        from .engine_cache import cache_dir
        from .weights import file_sha256

        out = cache_dir() / "onnx" / f"{file_sha256(weights)[:16]}-g{GRAPH_VERSION}"
        if not (out / "refiner.onnx").is_file() or not (out / f"{PATCH_NET}.onnx").is_file():
            try:
                from .export.onnx import export_onnx
                from .registry import create_model
                from .weights import load_weights
            except ImportError as e:
                if (out / "refiner.onnx").is_file():  # an older cache: it runs, the refiner as one graph
                    log.info("ONNX cache %s predates the refiner's patch net; without torch it runs as it is", out)
                    return out
                raise VmatteError(f"running your own weights with onnxruntime exports them to ONNX once, which needs torch ({e}); "
                                  "pip install 'vmatte[torch]', or export elsewhere with `vmatte export --format onnx`") from None

            meta = read_header(weights)
            m = create_model(meta["model"])
            load_weights(m, weights)
            export_onnx(m.eval(), out)
        return out

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def refine_patches(self) -> int | None:
        """The refiner's budget of 64x64 cells per frame, or None where the backend runs the refiner
        as one graph (its budget fixed at export: the GPU backends, exports without the patch net)."""
        plan = self.backend.patch_plan
        return None if plan is None else plan[0]

    @refine_patches.setter
    def refine_patches(self, k: int) -> None:
        """Change the budget on the fly (onnxruntime: the host picks the cells): fewer cells cost
        less CPU and refine less of the border; 0 leaves the bilinear upsample of the coarse alpha."""
        plan = self.backend.patch_plan
        if plan is None:
            raise VmatteError(f"the {self.backend.name} backend runs the refiner as one graph, whose patch budget is fixed; "
                              "a budget (refine_patches, --refine-patches) needs the onnxruntime backend (--backend onnxruntime)")
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_REFINE_PATCHES:
            raise VmatteError(f"refine_patches {k!r} (--refine-patches) is out of range; use 0 to {MAX_REFINE_PATCHES} cells a frame (the model's default is "
                              f"{self.config['refiner']['patches']})")
        self.backend.patch_plan = (k, plan[1])  # one assignment: threads matting now see the old or the new plan

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        """The segmenter's coarse person mask, upsampled to H x W float32."""
        rgb = check_frame(rgb)
        H, W = rgb.shape[:2]
        (Hp, Wp), _ = frame_sizes(H, W, self.long_side)
        _, low = prepare(rgb, self.long_side, full=False)
        with self._serial:
            mask = np.array(np.asarray(self.backend.run("segmenter", image=low))[0, 0], copy=True)
        # The mask covers the padded frame: upsample to that, then crop the frame.
        return cv2.resize(mask, (Wp, Hp), interpolation=cv2.INTER_LINEAR)[:H, :W].copy()

    def matte(self, rgb: np.ndarray) -> np.ndarray:
        """Alpha matte of one H x W x 3 uint8 RGB frame: H x W float32 in [0, 1]."""
        rgb = check_frame(rgb)
        with self._serial:
            return run_matte(self.backend, rgb, self.long_side)

    def matte_batch(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Alpha mattes of several frames (each may have its own size)."""
        return [self.matte(f) for f in frames]

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Matter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
