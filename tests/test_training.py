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


def test_average_checkpoints_and_release(tmp_path):
    """Weight averaging ("soup") of two checkpoints, and a release from it: floats averaged with
    the given shares, integer buffers from the first, the members recorded in the card."""
    from vmatte.registry import create_model
    from vmatte.training.release import average_states, release
    from vmatte.weights import read_header

    states = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = create_model("rt")
        states.append({"model": m.state_dict(), "model_name": "rt", "stage": "segmenter", "step": 100 * (seed + 1),
                       "opt_seg": {"x": 1}})
    avg = average_states(states, [0.25, 0.75])
    k = "segmenter.head.weight"
    assert torch.allclose(avg["model"][k], 0.25 * states[0]["model"][k] + 0.75 * states[1]["model"][k])
    ints = [n for n, v in states[0]["model"].items() if not v.is_floating_point()]
    assert ints and all(avg["model"][n] is states[0]["model"][n] for n in ints)
    assert "opt_seg" not in avg and [a["weight"] for a in avg["averaged"]] == [0.25, 0.75]
    with pytest.raises(ValueError, match="summing to 1"):
        average_states(states, [0.5, 0.6])
    with pytest.raises(ValueError, match="different models"):
        average_states([states[0], {**states[1], "model_name": "paper"}])
    for i, s in enumerate(states):
        torch.save(s, tmp_path / f"c{i}.pt")
    out = release(tmp_path / "c0.pt", tmp_path / "w", onnx=False, average=[tmp_path / "c1.pt"],
                  save_ckpt=tmp_path / "soup.pt")
    card = json.loads(read_header(out)["card"])
    assert [a["step"] for a in card["averaged"]] == [100, 200] and card["averaged"][1]["weight"] == 0.5
    soup = torch.load(tmp_path / "soup.pt", weights_only=False)
    assert torch.allclose(soup["model"][k], 0.5 * (states[0]["model"][k] + states[1]["model"][k]))


def test_kept_copies_do_not_depend_on_ckpt_every(tmp_path):
    """A keep_every step is a save step even when it is not a multiple of ckpt_every, and the kept
    copy has no optimiser states."""
    from vmatte.training.train import Checkpointer

    cfg = load_config(None, name="k", out=str(tmp_path / "runs"), ckpt_every=500, keep_every=300, ckpt_seconds=3600)
    ck = Checkpointer(cfg)
    assert [s for s in range(1, 1001) if ck.due(s, cfg)] == [300, 500, 600, 900, 1000]
    ck.save({"model": {}, "stage": "segmenter", "step": 300, "opt_seg": {"x": 1}})
    assert "opt_seg" in torch.load(ck.path, weights_only=False)
    assert "opt_seg" not in torch.load(ck.dir / "segmenter300.pt", weights_only=False)
    assert not list(ck.dir.glob("*.partial"))


def test_cosine_schedule_factor_and_config():
    from vmatte.training.train import lr_factor

    cfg = load_config(None, lr_schedule="cosine", lr_min_factor=0.1)
    assert lr_factor(cfg, 0, 100) == pytest.approx(1.0)
    assert lr_factor(cfg, 50, 100) == pytest.approx(0.55)  # halfway: mean of 1 and 0.1
    assert lr_factor(cfg, 100, 100) == pytest.approx(0.1) and lr_factor(cfg, 150, 100) == pytest.approx(0.1)
    assert lr_factor(load_config(None), 50, 100) == 1.0  # constant (the paper's)
    with pytest.raises(ValueError, match="constant or cosine"):
        load_config(None, lr_schedule="step")


def test_cosine_run_ends_at_the_minimum_rate(tmp_path):
    fg, bg = _make_data(tmp_path)
    cfg = load_config(None, name="c", out=str(tmp_path / "runs"), stages=["segmenter"], seg_steps=6, batch=2, seg_crop=64,
                      lr_seg=1e-3, lr_schedule="cosine", lr_min_factor=0.05, log_every=3, ckpt_every=3, seed=0)
    cfg.loss = cfg.loss.replace(perceptual=False)  # no VGG file needed
    cfg.data.fg, cfg.data.backgrounds, cfg.data.real_images, cfg.data.split, cfg.data.workers = [str(fg)], [str(bg)], None, None, 0
    t = Trainer(cfg)
    t.run()
    # the last step ran at step 5 of 6: cos factor 0.05 + 0.95 * 0.5 * (1 + cos(5pi/6))
    want = 1e-3 * (0.05 + 0.95 * 0.5 * (1 + np.cos(5 * np.pi / 6)))
    assert t.opt_seg.param_groups[0]["lr"] == pytest.approx(want)


def test_backbone_rate_multiplier_and_freezing(tmp_path):
    """lr_seg_backbone scales the backbone's rate through the schedule; 0 freezes it (its weights
    stay as they were) while the rest of the segmenter trains."""
    from vmatte.training.train import set_lr

    fg, bg = _make_data(tmp_path)

    def run(mult, name):
        cfg = load_config(None, name=name, out=str(tmp_path / "runs"), model="rt", stages=["segmenter"], seg_steps=3,
                          batch=2, seg_crop=64, lr_seg=1e-3, lr_seg_backbone=mult, log_every=3, ckpt_every=3, seed=0,
                          backbone_weights="none")
        cfg.loss = cfg.loss.replace(perceptual=False)
        cfg.data.fg, cfg.data.backgrounds, cfg.data.real_images, cfg.data.split, cfg.data.workers = [str(fg)], [str(bg)], None, None, 0
        t = Trainer(cfg)
        before = {k: v.clone() for k, v in t.model.segmenter.state_dict().items()}
        t.run()
        return t, before

    t, _ = run(0.1, "m")
    assert [g["lr_mult"] for g in t.opt_seg.param_groups] == [1.0, 0.1]
    lrs = sorted(g["lr"] for g in t.opt_seg.param_groups)
    assert lrs == pytest.approx([1e-4, 1e-3])
    set_lr(t.opt_seg, 2e-3, 0.5)  # the schedule keeps each group's multiple
    assert sorted(g["lr"] for g in t.opt_seg.param_groups) == pytest.approx([1e-4, 1e-3])

    t, before = run(0.0, "f")
    assert len(t.opt_seg.param_groups) == 1
    after = t.model.segmenter.state_dict()
    bb = [k for k in after if k.startswith("backbone.") and after[k].dtype.is_floating_point and "running" not in k]
    head = [k for k in after if not k.startswith("backbone.") and "running" not in k and after[k].dtype.is_floating_point]
    assert bb and all(torch.equal(before[k], after[k].cpu()) for k in bb)
    assert any(not torch.equal(before[k], after[k].cpu()) for k in head)
    with pytest.raises(ValueError, match="lr_seg_backbone"):
        load_config(None, lr_seg_backbone=-1)


def test_resume_across_backbone_rate_changes(tmp_path, caplog):
    """A run resumed with another lr_seg_backbone: a changed group layout (frozen <-> not) restarts
    Adam with a warning instead of crashing; a changed multiple takes effect (not the saved one)."""
    fg, bg = _make_data(tmp_path)

    def trainer(mult, steps):
        cfg = load_config(None, name="r", out=str(tmp_path / "runs"), model="rt", stages=["segmenter"], seg_steps=steps,
                          batch=2, seg_crop=64, lr_seg=1e-3, lr_seg_backbone=mult, log_every=2, ckpt_every=2, seed=0,
                          backbone_weights="none")
        cfg.loss = cfg.loss.replace(perceptual=False)
        cfg.data.fg, cfg.data.backgrounds, cfg.data.real_images, cfg.data.split, cfg.data.workers = [str(fg)], [str(bg)], None, None, 0
        return Trainer(cfg)

    trainer(0.0, 2).run()  # frozen backbone: one parameter group
    with caplog.at_level("WARNING"):
        t = trainer(0.1, 4)
    assert t.step == 2 and "optimiser state not restored" in caplog.text
    t.run()
    assert sorted(g["lr"] for g in t.opt_seg.param_groups) == pytest.approx([1e-4, 1e-3])
    t = trainer(0.5, 6)  # same layout: Adam's state comes back, the new multiple applies
    assert t.step == 4 and len(t.opt_seg.state) > 0
    t.run()
    assert sorted(g["lr"] for g in t.opt_seg.param_groups) == pytest.approx([5e-4, 1e-3])
