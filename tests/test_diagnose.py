"""training/diagnose.py (oracle masks) and the devset's control splits."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from training import devset as S
from training import diagnose as D


def test_oracle_mask_modes():
    alpha = np.zeros((100, 120), np.float32)
    alpha[20:80, 30:90] = 1.0
    alpha[20:80, 29] = 0.4  # one soft column
    hard = D.oracle_mask(alpha, (64, 64), "hard")
    soft = D.oracle_mask(alpha, (64, 64), "soft")
    coarse = D.oracle_mask(alpha, (64, 64), "coarse", input_scale=0.75)
    assert hard.shape == soft.shape == coarse.shape == (1, 1, 64, 64)
    assert set(hard.unique().tolist()) <= {0.0, 1.0} and set(coarse.unique().tolist()) <= {0.0, 1.0}
    assert ((soft > 0) & (soft < 1)).any()  # the soft column and the box edges stay fractional
    # the frame is padded to 128x128 (whole refiner cells): the box lands at rows 10..40 of 64
    assert hard[0, 0, 25, 30] == 1 and hard[0, 0, 5, 30] == 0 and hard[0, 0, 50, 30] == 0
    assert (coarse != hard).float().mean() < 0.1  # a big box survives the coarse grid
    with pytest.raises(ValueError, match="hard, soft, coarse"):
        D.oracle_mask(alpha, (64, 64), "perfect")


def test_oracle_mask_replicates_the_padding_like_the_frame():
    alpha = np.zeros((100, 120), np.float32)
    alpha[60:, 40:80] = 1.0  # a subject cut by the bottom edge
    hard = D.oracle_mask(alpha, (64, 64), "hard")
    assert hard[0, 0, 60, 30] == 1  # the padding below the frame continues the subject


def test_oracle_segmenter_feeds_the_generator_and_restores():
    from vmatte.registry import create_model

    torch.manual_seed(0)
    model = create_model("rt").eval()
    image = torch.rand(1, 3, 128, 128)
    image_lr = torch.rand(1, 3, 64, 64)
    alpha = np.zeros((128, 128), np.float32)
    alpha[32:96, 40:88] = 1.0
    with torch.no_grad():
        own = model.forward_all(image, image_lr)["mask"]
        with D.oracle_segmenter(model, "hard") as state:
            with pytest.raises(RuntimeError, match="set state"):
                model.forward_all(image, image_lr)
            state["alpha"] = alpha
            out = model.forward_all(image, image_lr)
        again = model.forward_all(image, image_lr)["mask"]
    assert torch.equal(out["mask"], D.oracle_mask(alpha, (64, 64), "hard"))
    assert torch.equal(again, own) and "forward" not in vars(model.segmenter)


def test_diagnose_scores_each_oracle(tmp_path: Path):
    for i in range(2):
        img = np.full((96, 128, 3), 40 + 60 * i, np.uint8)
        a = np.zeros((96, 128), np.uint8)
        a[20:90, 40:90] = 255
        img[a > 0] = (200, 150, 120)
        (tmp_path / "image").mkdir(exist_ok=True), (tmp_path / "alpha").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / "image" / f"p{i}.png"), img)
        cv2.imwrite(str(tmp_path / "alpha" / f"p{i}.png"), a)
    res = D.diagnose(tmp_path, oracles=("hard", "coarse"))
    assert list(res) == ["model", "mask", "oracle hard", "oracle coarse"]
    assert all(r.count == 2 for r in res.values())
    # The shipped generator given the true mask of a flat box keeps the box.
    assert res["oracle hard"].mean["mse"] < 0.02


def test_control_split_swaps_in_training_names():
    split = {"heldout_subjects": ["a", "b"], "heldout_backgrounds": ["x.jpg"]}
    subjects = ["a", "b", "c", "d", "e"]
    bgs = [Path("bg/x.jpg"), Path("bg/y.jpg"), Path("bg/z.png")]
    both = S.control_split(split, subjects, bgs, "both")
    assert len(both["heldout_subjects"]) == 2 and set(both["heldout_subjects"]) <= {"c", "d", "e"}
    assert len(both["heldout_backgrounds"]) == 1 and both["heldout_backgrounds"][0] in ("y.jpg", "z.png")
    subj = S.control_split(split, subjects, bgs, "subjects")
    assert subj["heldout_backgrounds"] == ["x.jpg"] and subj["control"] == {"of": "subjects", "seed": 1}
    assert split["heldout_subjects"] == ["a", "b"]  # the original split is untouched
    with pytest.raises(ValueError, match="subjects, backgrounds or both"):
        S.control_split(split, subjects, bgs, "people")
