"""Model weights: safetensors files with the model name, config and model card in the header.

A damaged or mismatched file is an error, never a silently random model."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from .errors import VmatteError

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def shipped_weights(model: str) -> Path:
    """Path of the weights shipped in the package for `model`."""
    return WEIGHTS_DIR / f"{model}.safetensors"


def shipped_onnx_dir(model: str) -> Path:
    """Folder of the shipped ONNX exports (segmenter/generator/refiner.onnx) for `model`."""
    return WEIGHTS_DIR / model


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def save_weights(model, path: str | Path, card: dict[str, Any] | None = None) -> Path:
    """Write `model`'s state dict with its name, config and card to a safetensors file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {
        "format": "vmatte-weights/1",
        "model": model.cfg.name,
        "config": json.dumps(model.cfg.to_dict()),
        "card": json.dumps(card or {}),
    }
    tmp = path.with_name(path.name + ".partial")
    save_file(state, str(tmp), metadata=meta)
    tmp.chmod(0o644)  # safetensors writes 0600: shipped weights must be readable by every user
    tmp.replace(path)
    return path


def read_header(path: str | Path, model: str | None = None) -> dict[str, str]:
    """The metadata header of a weights file (model, config, card); with `model`, also check that
    the file was saved from that variant."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise VmatteError(f"weights file {path} not found; pass --weights PATH to a vmatte .safetensors file or omit it for the shipped default")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises several types for bad headers
        raise VmatteError(f"weights file {path} is damaged or not a safetensors file ({e}); re-download it or reinstall vmatte") from None
    if meta.get("format") != "vmatte-weights/1":
        raise VmatteError(f"weights file {path} is not a vmatte weights file (no vmatte header); pass weights saved by vmatte's trainer")
    if model is not None and meta.get("model") != model:
        raise VmatteError(f"weights file {path} is for model {meta.get('model')!r}, not {model!r}; pass --model {meta.get('model')} or other weights")
    return meta


def load_weights(model, path: str | Path | None = None, strict: bool = True):
    """Load weights into `model` (shipped default when path is None); returns the card dict."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else shipped_weights(model.cfg.name)
    meta = read_header(path, model.cfg.name)
    try:
        state = load_file(str(path))
    except Exception as e:
        raise VmatteError(f"weights file {path} is damaged ({e}); re-download it or reinstall vmatte") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if strict and (missing or unexpected or bad):
        detail = (missing[:2] and f"missing {missing[:2]}") or (unexpected[:2] and f"unexpected {unexpected[:2]}") or f"shape mismatch at {bad[:2]}"
        raise VmatteError(f"weights file {path} does not match model {model.cfg.name!r} ({detail}); it was saved from another configuration")
    model.load_state_dict(state, strict=strict)
    return json.loads(meta.get("card", "{}"))
