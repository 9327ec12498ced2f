"""Backend registry: pick a runtime by name, or `auto` for the best one available."""
from __future__ import annotations

import importlib
import logging
from typing import Any

from ..errors import VmatteError
from .base import COMPONENT_IO, PRECISIONS, Backend, ModelSource

log = logging.getLogger(__name__)

# name -> module that defines it (imported lazily: tensorrt/torch are heavy and optional).
_BACKEND_MODULES = {
    "tensorrt": "vmatte.backends.tensorrt",
    "torch-cuda": "vmatte.backends.torch",
    "onnxruntime": "vmatte.backends.onnxruntime",
    "torch": "vmatte.backends.torch",
}
AUTO_ORDER = ("tensorrt", "torch-cuda", "onnxruntime", "torch")

__all__ = ["Backend", "ModelSource", "COMPONENT_IO", "backend_names", "get_backend_class", "create_backend", "resolve_backend",
           "PRECISIONS", "backend_for_precision"]


def backend_names() -> list[str]:
    return ["auto", *_BACKEND_MODULES]


def get_backend_class(name: str) -> type[Backend]:
    if name not in _BACKEND_MODULES:
        raise VmatteError(f"unknown backend {name!r}; valid backends: {', '.join(backend_names())}")
    try:
        mod = importlib.import_module(_BACKEND_MODULES[name])
    except ImportError as e:
        raise VmatteError(f"backend {name!r} cannot be imported ({e}); install its extra, e.g. pip install 'vmatte[torch]'") from None
    return mod.BACKENDS[name]


def resolve_backend(name: str = "auto") -> str:
    """Concrete backend name for `name`; `auto` picks the first available of AUTO_ORDER."""
    if name != "auto":
        cls = get_backend_class(name)
        ok, why = cls.availability()
        if not ok:
            raise VmatteError(f"backend {name!r} is not available: {why}")
        return name
    reasons = []
    for cand in AUTO_ORDER:
        try:
            ok, why = get_backend_class(cand).availability()
        except VmatteError as e:
            ok, why = False, str(e)
        if ok:
            log.info("backend auto -> %s", cand)
            return cand
        reasons.append(f"{cand}: {why}")
    raise VmatteError("no backend is available (" + "; ".join(reasons) + "); pip install onnxruntime")


def backend_for_precision(backend: str, precision: str) -> str:
    """The backend to ask for at `precision`: int8 runs only on onnxruntime (QDQ files made at
    release time), so `auto` becomes onnxruntime and any other backend is refused."""
    if precision not in PRECISIONS:
        raise VmatteError(f"precision {precision!r} is not known; use {' or '.join(PRECISIONS)}")
    if precision == "int8" and backend == "auto":
        return "onnxruntime"
    if precision == "int8" and backend != "onnxruntime":
        raise VmatteError(f"precision int8 runs on the onnxruntime backend only, not {backend!r}; "
                          "pass --backend onnxruntime, or --precision fp32")
    return backend


def create_backend(name: str, source: ModelSource, **options: Any) -> Backend:
    """Instantiate backend `name` (or the best available for `auto`) on a model source."""
    return get_backend_class(resolve_backend(name))(source, **options)
