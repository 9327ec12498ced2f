"""vmatte: real-time portrait matting (segmenter -> alpha generator -> border refiner)."""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Matter", "VmatteError", "create_model", "list_models", "__version__"]

from .errors import VmatteError
from .registry import create_model, list_models


def __getattr__(name: str):
    # Matter imports the backends lazily so `import vmatte` stays light.
    if name == "Matter":
        from .api import Matter

        return Matter
    raise AttributeError(name)
