"""The training-data packer keeps layers, alphas and masks intact (up to JPEG colour error)."""
from __future__ import annotations

import cv2
import numpy as np

from vmatte.training.data import ForegroundDataset, read_rgba
from vmatte.training.pack import pack


def test_pack_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    fg = tmp_path / "fg"
    fg.mkdir()
    yy, xx = np.mgrid[0:64, 0:48]
    alpha = np.clip(255 * (1.2 - ((yy - 32) / 28.0) ** 2 - ((xx - 24) / 20.0) ** 2), 0, 255).astype(np.uint8)
    colour = np.zeros((64, 48, 3), np.uint8)
    colour[:] = (200, 120, 40)  # RGB
    cv2.imwrite(str(fg / "s0.png"), cv2.cvtColor(np.dstack([colour, alpha]), cv2.COLOR_RGBA2BGRA))
    bg = tmp_path / "bg"
    bg.mkdir()
    cv2.imwrite(str(bg / "b.png"), (rng.random((40, 40, 3)) * 255).astype(np.uint8))
    imgs, masks = tmp_path / "im", tmp_path / "gt"
    imgs.mkdir()
    masks.mkdir()
    cv2.imwrite(str(imgs / "1.jpg"), (rng.random((30, 20, 3)) * 255).astype(np.uint8))
    cv2.imwrite(str(masks / "1.png"), (alpha[:30, :20] > 128).astype(np.uint8) * 255)
    out = tmp_path / "pack"
    pack(fg, [bg], out, imgs, masks, "hs_")
    f0, a0 = read_rgba(fg / "s0.png")
    a1 = cv2.imread(str(out / "fg" / "alpha" / "s0.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(a0, a1)  # alpha is lossless
    f1 = cv2.cvtColor(cv2.imread(str(out / "fg" / "fg" / "s0.jpg")), cv2.COLOR_BGR2RGB)
    assert np.abs(f1.astype(int) - f0).mean() < 3  # colour within JPEG error, channels not swapped
    layers = ForegroundDataset(out / "fg")
    fl, al = layers.load(0)
    assert al.max() <= 1.0 and abs(float(al.mean()) - a0.mean() / 255) < 1e-3
    assert (out / "bg" / "b.jpg").is_file() and (out / "real" / "masks" / "1.png").is_file()
