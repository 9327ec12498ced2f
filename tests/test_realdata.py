"""Real photos for the segmenter: label kinds and weights, webcam framing, mixed batches, the
weighted segmenter loss and the [[data.real_sources]] config."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training import realdata as R  # noqa: E402


def _person(h=300, w=200):
    """A standing 'person': head disc + body box, 0/1 float [H,W]; head top at y=30, feet at y=270."""
    m = np.zeros((h, w), np.float32)
    cv2.circle(m, (100, 55), 25, 1.0, -1)
    m[80:270, 60:140] = 1
    return m


def test_webcam_window_frames_the_upper_body():
    m = _person()
    for seed in range(40):
        y, x, h, w = R.webcam_window(m, np.random.default_rng(seed), aspect=1.0)
        assert 0 <= y and 0 <= x and y + h <= 300 and x + w <= 200 and h == w  # inside, square
        assert y <= 30  # the head is in the window
        assert y + h < 270  # the bottom cuts the body: never the full figure (at most 70 % of it)
        part = m[y:y + h, x:x + w]
        assert part[0].sum() == 0 or y == 0  # head room above the head unless the photo ends there
    assert R.webcam_window(np.zeros((50, 50), np.float32), np.random.default_rng(0)) is None


def test_label_weight():
    soft = np.array([[0.0, 0.5, 1.0, 0.75]], np.float32)
    np.testing.assert_allclose(R.label_weight(soft, "teacher", 0.5), [[0.5, 0.25, 0.5, 0.375]])
    np.testing.assert_allclose(R.label_weight(soft, "human", 1.0), np.ones((1, 4)))


def _write_source(root: Path, stems, mask_fn):
    (root / "im").mkdir(parents=True)
    (root / "gt").mkdir()
    for s in stems:
        cv2.imwrite(str(root / "im" / f"{s}.jpg"), np.full((300, 200, 3), 90, np.uint8))
        cv2.imwrite(str(root / "gt" / f"{s}.png"), mask_fn())


def test_dataset_kinds_soft_and_weights(tmp_path):
    _write_source(tmp_path / "h", ["a"], lambda: (_person() * 255).astype(np.uint8))
    _write_source(tmp_path / "t", ["b"], lambda: (_person() * 153).astype(np.uint8))  # teacher says 0.6
    human = R.real_mask_samples(tmp_path / "h" / "im", tmp_path / "h" / "gt", prefix="h_")
    teach = R.real_mask_samples(tmp_path / "t" / "im", tmp_path / "t" / "gt", prefix="t_", kind="teacher", weight=0.5)
    assert human[0]["kind"] == "human" and teach[0] == {**teach[0], "name": "t_b", "kind": "teacher", "weight": 0.5}
    ds = R.RealMaskDataset(human + teach, crop=64, p_webcam=1.0)
    h, t = ds[0], ds[1]
    assert h["image"].shape == (3, 64, 64) and h["mask"].shape == h["weight"].shape == (1, 64, 64)
    assert not h["soft"] and set(torch.unique(h["mask"]).tolist()) <= {0.0, 1.0} and float(h["weight"].min()) == 1.0
    assert t["soft"] and float(t["mask"].max()) == pytest.approx(0.6, abs=0.01)  # kept soft
    assert float(t["weight"].max()) <= 0.5 + 1e-6 and float(t["weight"].min()) >= 0.25 - 1e-6
    with pytest.raises(ValueError, match="label kind"):
        R.real_mask_samples(tmp_path / "h" / "im", tmp_path / "h" / "gt", kind="robot")
    with pytest.raises(ValueError, match="p_webcam"):
        R.RealMaskDataset(human, p_webcam=2)


def test_seg_batch_mixes_streams_and_supervises_composites_by_alpha():
    from training.train import seg_batch

    comp = {"image": torch.rand(3, 3, 8, 8), "alpha": torch.full((3, 1, 8, 8), 0.3), "mask": torch.ones(3, 1, 8, 8)}
    real = {"image": torch.rand(2, 3, 8, 8), "mask": torch.ones(2, 1, 8, 8), "weight": torch.full((2, 1, 8, 8), 0.5),
            "soft": torch.tensor([False, True])}
    img, target, weight, soft = seg_batch(comp, real)
    assert img.shape == (5, 3, 8, 8) and soft.tolist() == [True, True, True, False, True]
    assert float(target[:3].max()) == pytest.approx(0.3)  # the alpha, not the morphed generator mask
    assert weight[:3].eq(1).all() and weight[3:].eq(0.5).all()
    img, target, weight, soft = seg_batch(comp, None)
    assert img.shape[0] == 3 and weight.eq(1).all()


def test_seg_loss_weights():
    from training.train import seg_loss

    logits = torch.tensor([[[[4.0, -4.0]]]])
    mask = torch.tensor([[[[1.0, 1.0]]]])  # the second pixel is wrong
    w_off = torch.tensor([[[[1.0, 0.0]]]])
    assert float(seg_loss(logits, mask, w_off)["bce"]) < 0.05  # a zero-weight pixel costs nothing
    assert float(seg_loss(logits, mask)["bce"]) > 1.0
    half = seg_loss(logits, mask, torch.full_like(mask, 0.5))["bce"]
    assert float(half) == pytest.approx(float(seg_loss(logits, mask)["bce"]))  # uniform weights: same mean


def test_real_sources_config(tmp_path):
    from vmatte.training.config import load_config

    good = tmp_path / "c.toml"
    good.write_text('[data]\np_webcam_crop = 0.5\n[[data.real_sources]]\nimages = "a"\nmasks = "b"\nkind = "teacher"\nweight = 0.5\n')
    cfg = load_config(good)
    assert cfg.data.real_sources == [{"images": "a", "masks": "b", "kind": "teacher", "weight": 0.5}]
    for bad, msg in (('[[data.real_sources]]\nimages = "a"\n', "needs images and masks"),
                     ('[[data.real_sources]]\nimages = "a"\nmasks = "b"\nkind = "robot"\n', "kind human or teacher"),
                     ('[[data.real_sources]]\nimages = "a"\nmasks = "b"\ncolour = 1\n', "colour"),
                     ("[data]\np_webcam_crop = 1.5\n", "p_webcam_crop")):
        good.write_text(bad)
        with pytest.raises(ValueError, match=msg):
            load_config(good)


def test_segmenter_trains_on_mixed_sources(tmp_path):
    """A few segmenter steps on composites + human + teacher photos run and log."""
    from test_training import _make_data
    from vmatte.training.config import load_config
    from vmatte.training.train import Trainer

    fg, bg = _make_data(tmp_path)
    _write_source(tmp_path / "h", ["a", "b"], lambda: (_person() * 255).astype(np.uint8))
    _write_source(tmp_path / "t", ["c"], lambda: (_person() * 200).astype(np.uint8))
    cfg = load_config(None, name="m", out=str(tmp_path / "runs"), stages=["segmenter"], seg_steps=4, batch=4,
                      seg_crop=64, log_every=2, ckpt_every=4, seed=0)
    cfg.loss = cfg.loss.replace(perceptual=False)  # no VGG file needed
    cfg.data.fg, cfg.data.backgrounds, cfg.data.split, cfg.data.workers = [str(fg)], [str(bg)], None, 0
    cfg.data.real_images, cfg.data.real_masks = str(tmp_path / "h" / "im"), str(tmp_path / "h" / "gt")
    cfg.data.real_sources = [{"images": str(tmp_path / "t" / "im"), "masks": str(tmp_path / "t" / "gt"), "kind": "teacher", "weight": 0.5}]
    cfg.data.p_webcam_crop = 0.5
    hist = Trainer(cfg).run()
    assert len(hist) == 2 and all(np.isfinite(h["total"]) for h in hist)
