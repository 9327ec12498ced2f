"""Shared fixtures: random-weight models and shipped-data discovery."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _default_allocator(monkeypatch):
    """The CLI's process/webcam commands tune glibc's allocator for the whole process
    (vmatte/memory.py); tests that call the CLI in-process must not change it for the rest of the
    suite. tests/test_memory.py checks the setting in subprocesses."""
    monkeypatch.setenv("VMATTE_DEFAULT_MALLOC", "1")


def shared_data() -> Path | None:
    """../shared/data next to the checkout (or $VMATTE_DATA), if present."""
    p = Path(os.environ.get("VMATTE_DATA") or ROOT.parent / "shared" / "data")
    return p if p.is_dir() else None


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory) -> Path:
    """An `rt` weights file with random (seeded) parameters."""
    import torch

    from vmatte.registry import create_model
    from vmatte.weights import save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "rt_random.safetensors"
    save_weights(create_model("rt"), path, {"note": "random test weights"})
    return path


@pytest.fixture
def blob_frame() -> np.ndarray:
    """A 200x300 RGB frame: a bright ellipse 'subject' on a textured background."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:200, 0:300]
    bg = (rng.random((200, 300, 3)) * 80 + 40).astype(np.uint8)
    inside = ((yy - 110) / 70.0) ** 2 + ((xx - 150) / 50.0) ** 2 < 1
    bg[inside] = (220, 180, 150)
    return bg
