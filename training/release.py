"""Turn a training checkpoint into shipped weights (+ ONNX exports), with a model card that carries
the dev-set metrics:

    python -m vmatte.training.release runs/rt/last.pt --out vmatte/weights \
        --card-json training/card_rt.json --eval .assets/devset [--average other.pt ...]
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import torch

from vmatte.registry import create_model
from vmatte.training.train import without_optimisers
from vmatte.weights import file_sha256, save_weights

log = logging.getLogger(__name__)


def average_states(states: list[dict], weights: list[float] | None = None) -> dict:
    """Weight average ("model soup") of checkpoints of one model fine-tuned from a common start:
    floating tensors (weights, BatchNorm statistics) are averaged, integer ones (BatchNorm's
    batch counters) come from the first. The first checkpoint's other fields are kept, plus
    `averaged`: the members and their weights."""
    if not states:
        raise ValueError("no checkpoints to average")
    w = [1.0 / len(states)] * len(states) if weights is None else [float(x) for x in weights]
    if len(w) != len(states) or abs(sum(w) - 1.0) > 1e-6 or min(w) < 0:
        raise ValueError(f"need one non-negative weight per checkpoint, summing to 1; got {w}")
    names = {s.get("model_name") for s in states}
    keys = [set(s["model"]) for s in states]
    if len(names) != 1 or any(k != keys[0] for k in keys):
        raise ValueError(f"checkpoints of different models ({sorted(map(str, names))}) cannot be averaged")
    first = states[0]["model"]
    avg = {k: (sum(wi * s["model"][k].float() for wi, s in zip(w, states)).to(v.dtype) if v.is_floating_point() else v)
           for k, v in first.items()}
    return {**without_optimisers(states[0]), "model": avg,
            "averaged": [{"step": s.get("step"), "stage": s.get("stage"), "weight": wi} for s, wi in zip(states, w)]}


def _load(ckpt: str | Path, average: list[str | Path] = (), weights: list[float] | None = None):
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    if average:
        state = average_states([state] + [torch.load(p, map_location="cpu", weights_only=False) for p in average], weights)
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


def release(ckpt: str | Path, out_dir: str | Path, card: dict | None = None, onnx: bool = True, devset: str | Path | None = None,
            average: list[str | Path] = (), weights: list[float] | None = None, save_ckpt: str | Path | None = None) -> Path:
    """Write <out>/<model>.safetensors (with a model card) and <out>/<model>/{component}.onnx.
    average: further checkpoints whose weights are averaged with ckpt's (`weights`: their shares,
    default equal); save_ckpt: also write the (averaged) checkpoint there, model only."""
    model, state = _load(ckpt, average, weights)
    name = state["model_name"]
    card = {"model": name, "stage": state["stage"], "steps": state["step"], "train_config": state.get("config", {}), **(card or {})}
    if average:
        card["averaged"] = [{"checkpoint": str(p), **m} for p, m in zip([ckpt, *average], state["averaged"])]
    if save_ckpt is not None:
        Path(save_ckpt).parent.mkdir(parents=True, exist_ok=True)
        torch.save(without_optimisers(state), save_ckpt)
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
    p.add_argument("--average", nargs="+", default=[], metavar="CKPT",
                   help="average the weights of these checkpoints (same model, same start) with ckpt's")
    p.add_argument("--weights", default=None, help="comma-separated shares for ckpt and --average (default: equal)")
    p.add_argument("--save-ckpt", default=None, help="also write the released checkpoint (model only) here")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    card = json.loads(Path(a.card_json).read_text()) if a.card_json else None
    weights = [float(x) for x in a.weights.split(",")] if a.weights else None
    release(a.ckpt, a.out, card, onnx=not a.no_onnx, devset=a.eval, average=a.average, weights=weights,
            save_ckpt=a.save_ckpt)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
