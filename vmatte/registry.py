"""Model registry: variants are picked by name, timm style."""
from __future__ import annotations

from typing import Any, Callable

_REGISTRY: dict[str, Callable[..., Any]] = {}
# Variants defined in vmatte.models.matting, known by name without importing torch (the CPU path
# runs ONNX files and must not need torch); tests check this list against the registry.
BUILTIN_MODELS = ("paper", "rt", "rt_plus", "rt_mv3")


def register_model(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Register a model factory under its function name."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = fn
    return fn


def list_models(shipped: bool = False) -> list[str]:
    """Names of the model variants, sorted (no torch import needed); with shipped=True only those
    whose trained weights come with the package (the others need weights you train)."""
    names = sorted(set(BUILTIN_MODELS) | set(_REGISTRY))
    if shipped:
        from .weights import shipped_weights

        names = [n for n in names if shipped_weights(n).is_file()]
    return names


def get_model_factory(name: str) -> Callable[..., Any]:
    if name not in list_models():
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    _ensure_loaded()
    return _REGISTRY[name]


def create_model(name: str, **kwargs: Any):
    """Build a fresh (untrained) model variant by name; see vmatte.weights to load weights."""
    return get_model_factory(name)(**kwargs)


def _ensure_loaded() -> None:
    # Importing the package registers its variants.
    import vmatte.models.matting  # noqa: F401
