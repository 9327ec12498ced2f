"""Turn a training checkpoint into shipped weights (+ ONNX exports):
python -m vmatte.training.release runs/rt/last.pt --out vmatte/weights [--card-json extra.json]"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from vmatte.registry import create_model
from vmatte.weights import file_sha256, save_weights

log = logging.getLogger(__name__)


def release(ckpt: str | Path, out_dir: str | Path, card: dict | None = None, onnx: bool = True) -> Path:
    """Write <out>/<model>.safetensors (with a model card) and <out>/<model>/{component}.onnx."""
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    model = create_model(state["model_name"])
    model.load_state_dict(state["model"])
    model.eval()
    cfg = state.get("config", {})
    card = {
        "model": state["model_name"],
        "stage": state["stage"],
        "step": state["step"],
        "train_config": cfg,
        **(card or {}),
    }
    out_dir = Path(out_dir)
    path = save_weights(model, out_dir / f"{state['model_name']}.safetensors", card)
    if onnx:
        from vmatte.export.onnx import export_onnx

        export_onnx(model, out_dir / state["model_name"], metadata={"weights_sha256": file_sha256(path)})
    log.info("released %s", path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vmatte.training.release", description=__doc__.splitlines()[0])
    p.add_argument("ckpt")
    p.add_argument("--out", default="vmatte/weights")
    p.add_argument("--card-json", help="JSON file merged into the model card")
    p.add_argument("--no-onnx", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    card = json.loads(Path(a.card_json).read_text()) if a.card_json else None
    release(a.ckpt, a.out, card, onnx=not a.no_onnx)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
