"""Turn a training checkpoint into shipped weights (+ FP32 and int8 ONNX exports), with a model card
that carries the dev-set metrics and the int8 files' calibration and parity with FP32:

    python -m vmatte.training.release runs/rt/last.pt --out vmatte/weights \
        --card-json training/card_rt.json --eval .assets/devset --parity-set .assets/ccp_val \
        --calib ../shared/data/people/ccp/unlabelled/images ../shared/data/videos/*.mp4 [--average other.pt ...]

Given a released .safetensors file instead of a checkpoint, only the int8 step runs (files next to
its ONNX folder; card updated unless --keep-card).
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
from vmatte.weights import file_sha256, read_header, save_weights

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
            average: list[str | Path] = (), weights: list[float] | None = None, save_ckpt: str | Path | None = None,
            calib: list[str | Path] | None = None, parity_set: str | Path | None = None, calib_count: int = 100) -> Path:
    """Write <out>/<model>.safetensors (with a model card) and <out>/<model>/{component}.onnx.
    average: further checkpoints whose weights are averaged with ckpt's (`weights`: their shares,
    default equal); save_ckpt: also write the (averaged) checkpoint there, model only; calib:
    photos/videos to calibrate <component>.int8.onnx on (see add_int8; parity on devset and parity_set)."""
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
        if calib:
            add_int8(path, calib, [s for s in (devset, parity_set) if s is not None], calib_count)
    log.info("released %s", path)
    return path


def add_int8(weights: str | Path, calib: list[str | Path], eval_sets: list[str | Path] = (), count: int = 100,
             update_card: bool = True, limit: int | None = None) -> dict:
    """int8 files for a released weights file (its ONNX folder <dir>/<model>/), calibrated on `calib`,
    with parity on `eval_sets`; the entry goes into the card as card["int8"] unless update_card is
    False. The card is rewritten in the header only (tensors untouched), and the ONNX files are
    restamped with the weights file's new sha256."""
    from vmatte.export.quantize import restamp
    from vmatte.training.int8 import make_int8

    weights = Path(weights)
    meta = read_header(weights)
    onnx_dir = weights.parent / meta["model"]
    entry = make_int8(onnx_dir, int(json.loads(meta["config"])["gen_long_side"]), calib, count, eval_sets, limit)
    if update_card:
        rewrite_card(weights, {**json.loads(meta.get("card", "{}")), "int8": entry})
        restamp(onnx_dir, file_sha256(weights))
    return entry


def rewrite_card(path: str | Path, card: dict) -> Path:
    """Replace the model card in a weights file's header; the tensors are written back unchanged."""
    from safetensors.torch import load_file, save_file

    path = Path(path)
    meta = {**read_header(path), "card": json.dumps(card)}
    tmp = path.with_name(path.name + ".partial")
    save_file(load_file(str(path)), str(tmp), metadata=meta)
    tmp.chmod(0o644)
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vmatte.training.release", description=__doc__.splitlines()[0])
    p.add_argument("ckpt")
    p.add_argument("--out", default="vmatte/weights")
    p.add_argument("--card-json", help="JSON file merged into the model card (data, teacher, runs)")
    p.add_argument("--eval", metavar="DIR", help="image/alpha dev set whose metrics go into the card")
    p.add_argument("--no-onnx", action="store_true")
    p.add_argument("--calib", nargs="+", metavar="PATH",
                   help="int8 calibration: folders of training photos, photos or videos of people (never a validation set)")
    p.add_argument("--calib-count", type=int, default=100, help="calibration frames, shared by the --calib sources (default: 100)")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 files")
    p.add_argument("--parity-set", metavar="DIR", help="a validation set (image/ + alpha/ or mask/) for int8 vs FP32 parity, "
                                                     "besides --eval")
    p.add_argument("--keep-card", action="store_true", help="with a .safetensors file: leave its card as it is (print the entry)")
    p.add_argument("--json", metavar="OUT", help="also write the int8 card entry (calibration, parity) to this JSON file")
    p.add_argument("--average", nargs="+", default=[], metavar="CKPT",
                   help="average the weights of these checkpoints (same model, same start) with ckpt's")
    p.add_argument("--weights", default=None, help="comma-separated shares for ckpt and --average (default: equal)")
    p.add_argument("--save-ckpt", default=None, help="also write the released checkpoint (model only) here")
    a = p.parse_args(argv)
    int8 = not (a.no_int8 or a.no_onnx)
    if int8 and not a.calib:
        p.error("give --calib PHOTOS_OR_VIDEOS for the int8 files, or --no-int8")
    if a.ckpt.endswith(".safetensors") and not int8:
        p.error("a released .safetensors file takes the int8 step only; drop --no-int8/--no-onnx")
    logging.basicConfig(level=logging.INFO)
    if a.ckpt.endswith(".safetensors"):  # a released file: the int8 step only
        entry = add_int8(a.ckpt, a.calib, [s for s in (a.eval, a.parity_set) if s], a.calib_count, update_card=not a.keep_card)
        print(json.dumps(entry, indent=1))
        if a.json:
            Path(a.json).write_text(json.dumps(entry, indent=1))
        return 0
    card = json.loads(Path(a.card_json).read_text()) if a.card_json else None
    weights = [float(x) for x in a.weights.split(",")] if a.weights else None
    path = release(a.ckpt, a.out, card, onnx=not a.no_onnx, devset=a.eval, average=a.average, weights=weights,
                   save_ckpt=a.save_ckpt, calib=a.calib if int8 else None, parity_set=a.parity_set, calib_count=a.calib_count)
    if a.json and int8:
        Path(a.json).write_text(json.dumps(json.loads(read_header(path)["card"])["int8"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
