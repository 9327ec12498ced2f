"""A short training run on synthetic layers: it runs both stages, resumes, and its loss goes down."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vmatte.training.config import load_config  # noqa: E402
from vmatte.training.train import Trainer  # noqa: E402


def _make_data(root):
    """Four RGBA 'subjects' (soft-edged ellipses) and three textured backgrounds."""
    rng = np.random.default_rng(0)
    fg_dir, bg_dir = root / "fg", root / "bg"
    fg_dir.mkdir()
    bg_dir.mkdir()
    yy, xx = np.mgrid[0:160, 0:128]
    for i in range(4):
        d = ((yy - 90) / (55 + 5 * i)) ** 2 + ((xx - 64) / (35 + 3 * i)) ** 2
        alpha = np.clip((1.0 - d) * 6, 0, 1)
        colour = np.zeros((160, 128, 3), np.uint8)
        colour[:] = rng.integers(120, 255, 3)
        rgba = np.dstack([colour, (alpha * 255).astype(np.uint8)])
        cv2.imwrite(str(fg_dir / f"s{i}.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    for i in range(3):
        cv2.imwrite(str(bg_dir / f"b{i}.png"), (rng.random((200, 200, 3)) * 100).astype(np.uint8))
    return fg_dir, bg_dir


def test_short_run_loss_goes_down_and_resumes(tmp_path):
    fg, bg = _make_data(tmp_path)
    cfg = load_config(None, name="t", out=str(tmp_path / "runs"), seg_steps=24, steps=60, batch=4, crop=128, seg_crop=96,
                      low_factor=(2.0, 2.0), train_patches=2, lr_g=2e-3, lr_seg=3e-3, log_every=12, ckpt_every=12, keep_every=24,
                      seed=0)
    cfg.loss = cfg.loss.replace(perceptual=False)  # no VGG file needed
    cfg.data.fg, cfg.data.backgrounds, cfg.data.real_images, cfg.data.split, cfg.data.workers = [str(fg)], [str(bg)], None, None, 0
    hist = Trainer(cfg).run()
    seg = [h["total"] for h in hist if "dice" in h]
    mat = [h["mse"] for h in hist if "mse" in h]
    assert len(seg) == 2 and len(mat) == 5
    assert seg[-1] < seg[0]
    assert mat[-1] < mat[0]
    ckpt = torch.load(tmp_path / "runs" / "t" / "last.pt", weights_only=False)
    assert ckpt["stage"] == "matting" and ckpt["step"] == 60
    kept = sorted(p.name for p in (tmp_path / "runs" / "t").glob("*.pt") if p.name != "last.pt")
    assert kept == ["matting24.pt", "matting48.pt", "segmenter24.pt"]  # keep_every copies, model only
    assert "opt_g" not in torch.load(tmp_path / "runs" / "t" / "matting24.pt", weights_only=False)
    # Resuming a finished run trains no further and keeps the step count.
    cfg.steps = 60
    t2 = Trainer(cfg)
    assert (t2.stage, t2.step) == ("matting", 60)
    lines = (tmp_path / "runs" / "t" / "log.jsonl").read_text().splitlines()
    assert all("step" in json.loads(line) for line in lines)
