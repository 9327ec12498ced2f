"""Where a model's dev-set error comes from: the segmenter's mask, or what follows it.

Runs the model on an image/alpha set with its own segmenter, then again with the segmenter's mask
replaced by the true alpha (an *oracle* mask), so the generator and refiner are scored on their own:

  hard    true alpha > 0.5 at the generator's resolution;
  soft    true alpha, area-resized to that resolution;
  coarse  true alpha > 0.5 after passing through the segmenter's output grid (its input scale,
          stride 4) and back: the best mask a segmenter of this resolution could give.

If the oracle rows are far better than the model, the segmenter is what to improve. Together with
control sets of *training* subjects or backgrounds (`python -m vmatte.training.devset --control`)
this tells under-fitting (training subjects score as badly as held-out ones) from over-fitting.

    python -m vmatte.training.diagnose .assets/devset [--weights W] [--oracle hard,soft,coarse]
"""
from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vmatte.ops.sizes import padded_size

log = logging.getLogger(__name__)

ORACLES = ("hard", "soft", "coarse")
SEG_STRIDE_OUT = 4  # the DeepLabV3+ decoder predicts at 1/4 of the segmenter's input


def oracle_mask(alpha, low_size: tuple[int, int], mode: str, input_scale: float = 1.0):
    """The segmenter's ideal output for a frame whose true alpha is `alpha` (float [H,W] in 0..1):
    the alpha replicate-padded as the frame is (to whole refiner cells), resized to the generator's
    input `low_size` (h, w). Returns float32 torch [1,1,h,w]."""
    import torch
    import torch.nn.functional as F

    if mode not in ORACLES:
        raise ValueError(f"unknown oracle {mode!r}; expected one of {', '.join(ORACLES)}")
    H, W = alpha.shape
    Hp, Wp = padded_size(H, W)
    a = torch.from_numpy(np.ascontiguousarray(alpha, np.float32))[None, None]  # [1,1,H,W]
    if (Hp, Wp) != (H, W):
        a = F.pad(a, (0, Wp - W, 0, Hp - H), mode="replicate")
    a = F.interpolate(a, size=low_size, mode="area")  # [1,1,h,w]
    if mode == "soft":
        return a
    if mode == "coarse":
        grid = (max(1, round(low_size[0] * input_scale / SEG_STRIDE_OUT)), max(1, round(low_size[1] * input_scale / SEG_STRIDE_OUT)))
        a = F.interpolate(F.interpolate(a, size=grid, mode="area"), size=low_size, mode="bilinear", align_corners=False)
    return (a > 0.5).float()


@contextlib.contextmanager
def oracle_segmenter(model, mode: str) -> Iterator[dict]:
    """Within the block, `model.segmenter` returns the oracle mask of `state["alpha"]` (set it
    before each frame) instead of its prediction."""
    seg = model.segmenter
    state: dict = {"alpha": None}
    scale = seg.cfg.input_scale

    def forward(x):  # x: [B,3,h,w] low-resolution frame
        if state["alpha"] is None:
            raise RuntimeError("oracle_segmenter: set state['alpha'] before each frame")
        m = oracle_mask(state["alpha"], tuple(x.shape[2:]), mode, scale)
        return m.to(x.device, x.dtype).expand(x.shape[0], -1, -1, -1)

    seg.forward = forward
    try:
        yield state
    finally:
        del seg.forward  # back to the class's forward


def diagnose(devset: str | Path, weights: str | Path | None = None, oracles=ORACLES, limit: int | None = None) -> dict:
    """{"model": EvalResult, "mask": EvalResult, "oracle <mode>": EvalResult, ...} on `devset`
    (torch backend on the CPU, the only one whose segmenter can be swapped)."""
    from vmatte.api import Matter
    from vmatte.evaluate import evaluate_dir, find_pairs, read_alpha

    matter = Matter(backend="torch", weights=weights)
    out = {"model": evaluate_dir(devset, matter.matte, limit), "mask": evaluate_dir(devset, matter.segment, limit)}
    truths = [p for _, _, p in find_pairs(devset, limit)]
    for mode in oracles:
        it = iter(truths)
        with oracle_segmenter(matter.backend.model, mode) as state:
            def predict(rgb):
                state["alpha"] = read_alpha(next(it))  # evaluate_dir walks find_pairs' order
                return matter.matte(rgb)
            out[f"oracle {mode}"] = evaluate_dir(devset, predict, limit)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vmatte.training.diagnose", description=__doc__.splitlines()[0])
    ap.add_argument("devset", help="image/alpha folder pair (vmatte eval's layout)")
    ap.add_argument("--weights", help="a .safetensors file (default: the shipped rt)")
    ap.add_argument("--oracle", default=",".join(ORACLES), help=f"comma-separated, of {', '.join(ORACLES)}")
    ap.add_argument("--limit", type=int)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from vmatte.evaluate import format_table

    oracles = [o for o in args.oracle.split(",") if o]
    bad = sorted(set(oracles) - set(ORACLES))
    if bad:
        ap.error(f"unknown oracle {bad}; expected {', '.join(ORACLES)}")
    print(format_table(diagnose(args.devset, args.weights, oracles, args.limit)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
