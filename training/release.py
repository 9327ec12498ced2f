"""Turn a training checkpoint into shipped weights (+ ONNX exports), with a model card that carries
the dev-set metrics:

    python -m vmatte.training.release runs/rt/last.pt --out vmatte/weights \
        --card-json training/card_rt.json --eval .assets/devset
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import torch

from vmatte.registry import create_model
from vmatte.weights import file_sha256, save_weights

log = logging.getLogger(__name__)


def _load(ckpt: str | Path):
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    model = create_model(state["model_name"])
    model.load_state_dict(state["model"])
    return model.eval(), state


def evaluate_weights(weights: Path, devset: str | Path) -> dict[str, float]:
    """Mean metrics of `weights` on an image/alpha folder pair (torch backend, CPU)."""
    from vmatte.api import Matter
    from vmatte.evaluate import evaluate_dir

    from vmatte.weights import read_header

    m = Matter(read_header(weights)["model"], backend="torch", weights=weights)
    res = evaluate_dir(devset, m.matte)
    return {k: round(float(v), 5) for k, v in res.mean.items()} | {"images": res.count}


def release(ckpt: str | Path, out_dir: str | Path, card: dict | None = None, onnx: bool = True, devset: str | Path | None = None) -> Path:
    """Write <out>/<model>.safetensors (with a model card) and <out>/<model>/{component}.onnx."""
    model, state = _load(ckpt)
    name = state["model_name"]
    card = {"model": name, "stage": state["stage"], "steps": state["step"], "train_config": state.get("config", {}), **(card or {})}
    if devset is not None:
        with tempfile.TemporaryDirectory() as tmp:
            card["metrics"] = {"devset": str(devset), **evaluate_weights(save_weights(model, Path(tmp) / f"{name}.safetensors", card), devset)}
        log.info("dev-set metrics: %s", card["metrics"])
    out_dir = Path(out_dir)
    path = save_weights(model, out_dir / f"{name}.safetensors", card)
    if onnx:
        from vmatte.export.onnx import export_onnx

        export_onnx(model, out_dir / name, metadata={"weights_sha256": file_sha256(path)})
    log.info("released %s", path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vmatte.training.release", description=__doc__.splitlines()[0])
    p.add_argument("ckpt")
    p.add_argument("--out", default="vmatte/weights")
    p.add_argument("--card-json", help="JSON file merged into the model card (data, teacher, runs)")
    p.add_argument("--eval", metavar="DIR", help="image/alpha dev set whose metrics go into the card")
    p.add_argument("--no-onnx", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    card = json.loads(Path(a.card_json).read_text()) if a.card_json else None
    release(a.ckpt, a.out, card, onnx=not a.no_onnx, devset=a.eval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
