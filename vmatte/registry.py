"""Model registry: variants are picked by name, timm style."""
from __future__ import annotations

from typing import Any, Callable

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_model(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Register a model factory under its function name."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = fn
    return fn


def list_models() -> list[str]:
    """Names of the registered model variants, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_model_factory(name: str) -> Callable[..., Any]:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, **kwargs: Any):
    """Build a fresh (untrained) model variant by name; see vmatte.weights to load weights."""
    return get_model_factory(name)(**kwargs)


def _ensure_loaded() -> None:
    # Importing the package registers its variants.
    import vmatte.models.matting  # noqa: F401
