"""The refiner's host plumbing (vmatte.ops.patches): cell choice, edge-replicated windows, paste.
Parity with the exported refiner graph is in test_export.py (it needs torch to export)."""
from __future__ import annotations

import cv2
import numpy as np

from vmatte.ops.patches import PATCH, cell_scores, gather_windows, refine_alpha, select_cells


def test_select_cells_prefers_high_scores_and_lower_index_on_ties():
    scores = np.array([0.1, 0.5, 0.5, 0.0, 0.9], np.float32)
    assert select_cells(scores, 3).tolist() == [4, 1, 2]
    assert select_cells(scores, 9).tolist() == [4, 1, 2, 0, 3]  # fewer cells than the budget: each once


def test_cell_scores_peak_on_the_border():
    yy, xx = np.mgrid[0:48, 0:64]
    coarse = np.clip((xx - 32) / 8.0 + 0.5, 0, 1).astype(np.float32)  # a vertical edge at x = 32
    s = cell_scores(coarse, 3, 4).reshape(3, 4)  # 3 x 4 cells over a 192 x 256 frame
    assert (s[:, 1:3] > 0.05).all() and (s[:, [0, 3]] < 1e-6).all()


def test_gather_windows_replicate_the_edge():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (130, 200, 3), dtype=np.uint8)
    y0, x0 = np.array([0, 64, 128]), np.array([0, 128, 192])  # corner, inside, past the bottom-right
    got = gather_windows(img, y0, x0, 72, 4)
    padded = np.pad(img, ((4, 80), (4, 80), (0, 0)), mode="edge")
    for k, (y, x) in enumerate(zip(y0, x0)):
        np.testing.assert_array_equal(got[k], padded[y:y + 72, x:x + 72])


def test_refine_alpha_pastes_only_the_chosen_cells():
    H, W = 256, 384  # 4 x 6 cells
    yy, xx = np.mgrid[0:64, 0:96]
    coarse = np.clip(1.5 - np.hypot(yy - 32, xx - 48) / 16.0, 0, 1).astype(np.float32)  # a soft disc
    frame = np.random.default_rng(1).integers(0, 256, (H - 10, W - 30, 3), dtype=np.uint8)  # unpadded
    seen = {}

    def net(img, base):
        seen.update(img=img, base=base)
        return np.full((img.shape[0], 1, PATCH, PATCH), 0.25, np.float32)

    up = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_LINEAR)
    out = refine_alpha(frame, coarse, (H, W), 3, 4, net)
    assert seen["img"].shape == (3, 3, 72, 72) and seen["img"].dtype == np.float32
    assert seen["base"].shape == (3, 1, 72, 72)
    pasted = (out == 0.25).reshape(4, PATCH, 6, PATCH).all(axis=(1, 3))
    assert pasted.sum() == 3
    padded = np.pad(frame, ((4, 14), (4, 34), (0, 0)), mode="edge")  # edge-padded to whole cells, plus context
    up_p = np.pad(up, 4, mode="edge")
    for k, (r, c) in enumerate(zip(*np.nonzero(pasted))):  # windows in cell order (the disc's scores tie by symmetry)
        y, x = r * PATCH, c * PATCH
        match = [j for j in range(3) if np.array_equal(seen["base"][j, 0], up_p[y:y + 72, x:x + 72])]
        assert match, (r, c)
        want = padded[y:y + 72, x:x + 72].transpose(2, 0, 1) * np.float32(1 / 255)  # as vmatte.api.to_nchw
        assert any(np.array_equal(seen["img"][j], want) for j in match)
    assert np.array_equal(out[~np.kron(pasted, np.ones((PATCH, PATCH), bool))], up[~np.kron(pasted, np.ones((PATCH, PATCH), bool))])
    none = refine_alpha(frame, coarse, (H, W), 0, 4, net)  # no budget: the plain upsample
    np.testing.assert_array_equal(none, up)
