"""Training data pipeline: compositing, folder layouts, augmentation, split, foreground builder."""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from training import data as D
from training import devset as S
from training import foreground as F
from training import realdata as R
from vmatte.errors import VmatteError

DATA = Path(os.environ.get("VMATTE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


# ---------------------------------------------------------------------------------- fixtures


def soft_disc(h: int, w: int, cy: float, cx: float, r: float, soft: float = 3.0) -> np.ndarray:
    """Alpha [h,w] of a disc with a linear soft edge of `soft` px."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    return np.clip((r - d) / soft + 0.5, 0, 1).astype(np.float32)


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_gray(path: Path, g: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), g)


def make_layers(root: Path, n: int = 3, h: int = 60, w: int = 48, touch_bottom: bool = False) -> Path:
    """n RGBA subject layers (textured colour, soft disc/body alpha) in root."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        fg = (rng.uniform(0, 1, (h, w, 3)) * 255).astype(np.uint8)
        a = soft_disc(h, w, h * 0.45, w * 0.5, min(h, w) * 0.3)
        if touch_bottom:  # a "body" that the photo's bottom edge cuts
            a[int(h * 0.6):, w // 4: 3 * w // 4] = 1.0
        F.save_rgba(root / f"s{i}.png", fg.astype(np.float32) / 255, a)
    return root


def make_backgrounds(root: Path, n: int = 3, h: int = 70, w: int = 90) -> Path:
    rng = np.random.default_rng(2)
    for i in range(n):
        write_rgb(root / f"bg{i}.jpg", (rng.uniform(0, 1, (h, w, 3)) * 255).astype(np.uint8))
    return root


NO_NOISE = D.AugmentConfig(p_noise=0.0)


# ---------------------------------------------------------------------------------- compositing


def test_composite_exact_and_limits():
    rng = np.random.default_rng(0)
    fg, bg = rng.random((5, 7, 3), np.float32), rng.random((5, 7, 3), np.float32)
    a = rng.random((5, 7), np.float32)
    out = D.composite(fg, bg, a)
    assert out.dtype == np.float32 and out.shape == (5, 7, 3)
    np.testing.assert_allclose(out, fg * a[..., None] + bg * (1 - a[..., None]), atol=1e-7)
    np.testing.assert_allclose(D.composite(fg, bg, np.ones((5, 7), np.float32)), fg)
    np.testing.assert_allclose(D.composite(fg, bg, np.zeros((5, 7, 1), np.float32)), bg)
    with pytest.raises(ValueError, match="share H,W"):
        D.composite(fg, bg[:4], a)


def test_crop_pad_borders():
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = D.crop_pad(img, -1, 2, 3, 4)
    assert out.shape == (3, 4)
    assert out[0].sum() == 0 and out[1, 0] == img[0, 2] and out[1, 2:].sum() == 0
    rep = D.crop_pad(img, 10, 10, 2, 2, border="replicate")
    assert (rep == img[-1, -1]).all()


# ---------------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("dirs", [("image", "alpha"), ("images", "alphas"), ("im", "gt")])
def test_image_alpha_layouts(tmp_path, dirs):
    rng = np.random.default_rng(0)
    for stem in ("a", "b"):
        write_rgb(tmp_path / dirs[0] / f"{stem}.jpg", (rng.random((20, 30, 3)) * 255).astype(np.uint8))
        write_gray(tmp_path / dirs[1] / f"{stem}.png", (soft_disc(10, 15, 5, 7, 4) * 255).astype(np.uint8))
    write_rgb(tmp_path / dirs[0] / "unmatched.png", np.zeros((20, 30, 3), np.uint8))
    ds = D.ImageAlphaDataset(tmp_path)
    assert len(ds) == 2 and ds.names() == ["a", "b"]
    s = ds[1]
    assert s["image"].shape == (3, 20, 30) and s["alpha"].shape == (1, 20, 30)  # alpha resized to image
    assert s["image"].dtype == torch.float32 and 0 <= s["alpha"].min() and s["alpha"].max() <= 1
    assert D.ImageAlphaDataset(tmp_path, long_side=15)[0]["image"].shape == (3, 10, 15)


def test_image_alpha_missing_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="layouts"):
        D.ImageAlphaDataset(tmp_path)


def test_foreground_layouts(tmp_path):
    rgba = make_layers(tmp_path / "rgba", n=3)
    ds = D.ForegroundDataset(rgba, exclude=["s1"])
    assert ds.names() == ["s0", "s2"]
    s = ds[0]
    assert s["fg"].shape == (3, 60, 48) and s["alpha"].shape == (1, 60, 48)
    # Adobe / Distinctions style fg/ + alpha/ (and FG/ + GT/)
    for fgn, an in (("fg", "alpha"), ("FG", "GT")):
        root = tmp_path / fgn
        fg_arr, a_arr = ds.load_uint8(0)
        write_rgb(root / fgn / "x.png", fg_arr)
        write_gray(root / an / "x.png", a_arr)
        d2 = D.ForegroundDataset(root)
        f2, a2 = d2.load_uint8(0)
        assert d2.names() == ["x"] and np.array_equal(f2, fg_arr) and np.array_equal(a2, a_arr)
    with pytest.raises(FileNotFoundError):
        D.ForegroundDataset(tmp_path / "nowhere")


def test_foreground_photo_layout_estimates_fg(tmp_path):
    """PPM-100 style image/ + matte/: F is estimated so F*a + B*(1-a) stays close to the photo."""
    h, w = 40, 40
    a = soft_disc(h, w, 20, 20, 12, soft=4)
    fg_true, bg_true = np.array([0.9, 0.2, 0.1], np.float32), np.array([0.1, 0.3, 0.9], np.float32)
    img = a[..., None] * fg_true + (1 - a[..., None]) * bg_true
    write_rgb(tmp_path / "image" / "p.png", (img * 255 + 0.5).astype(np.uint8))
    write_gray(tmp_path / "matte" / "p.png", (a * 255 + 0.5).astype(np.uint8))
    f, al = D.ForegroundDataset(tmp_path).load(0)
    inside = al > 0.3
    assert np.abs(f[inside] - fg_true).max() < 0.25


# ---------------------------------------------------------------------------------- augmentation


@pytest.fixture()
def comp_ds(tmp_path):
    fgs = D.ForegroundDataset(make_layers(tmp_path / "fg", n=3))
    return D.CompositeDataset(fgs, make_backgrounds(tmp_path / "bg"), crop=(32, 40), length=24, seed=3,
                              augment=NO_NOISE)


def test_composite_dataset_shapes_ranges_consistency(comp_ds):
    for i in range(len(comp_ds)):
        s = comp_ds[i]
        assert set(s) == {"image", "alpha", "fg", "bg", "mask"}
        for k, c in (("image", 3), ("fg", 3), ("bg", 3), ("alpha", 1), ("mask", 1)):
            assert s[k].shape == (c, 32, 40) and s[k].dtype == torch.float32, k
            assert float(s[k].min()) >= 0 and float(s[k].max()) <= 1, k
        assert torch.allclose(s["image"], s["fg"] * s["alpha"] + s["bg"] * (1 - s["alpha"]), atol=1e-6)
        assert set(torch.unique(s["mask"]).tolist()) <= {0.0, 1.0}
        assert float(s["alpha"].max()) > 0.5  # the subject is kept in the crop


def test_composite_dataset_mask_matches_alpha_without_morph(tmp_path):
    fgs = D.ForegroundDataset(make_layers(tmp_path / "fg", n=2))
    ds = D.CompositeDataset(fgs, make_backgrounds(tmp_path / "bg"), crop=32, length=8,
                            augment=D.AugmentConfig(p_noise=0, p_mask_morph=0))
    for i in range(8):
        s = ds[i]
        assert torch.equal(s["mask"], (s["alpha"] > 0.5).float())


def test_composite_dataset_deterministic_and_seeded(comp_ds, tmp_path):
    a, b = comp_ds.sample(5), comp_ds.sample(5)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    comp_ds.set_epoch(1)
    c = comp_ds.sample(5)
    assert not np.array_equal(a["image"], c["image"])
    with pytest.raises(IndexError):
        comp_ds.sample(len(comp_ds))


def test_composite_dataset_same_in_workers(comp_ds):
    """Samples are seeded per index, so a 2-worker DataLoader yields what the main process builds."""
    loader = torch.utils.data.DataLoader(comp_ds, batch_size=4, num_workers=2,
                                         worker_init_fn=D.worker_init_fn, multiprocessing_context=D.LOADER_CONTEXT)
    batches = list(loader)
    assert len(batches) == 6 and batches[0]["image"].shape == (4, 3, 32, 40)
    for j in (0, 5):
        assert torch.equal(batches[j // 4]["image"][j % 4], comp_ds[j]["image"])


def test_paste_distractors_only_changes_the_background_inside_objects():
    rng = np.random.default_rng(0)
    bg = np.zeros((48, 64, 3), np.float32)
    out = D.paste_distractors(bg, [np.ones((48, 64, 3), np.float32)], rng, 3)
    assert out.shape == bg.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    changed = (out > 0).any(-1).mean()
    assert 0.01 < changed < 0.9  # objects cover part of the frame, not all of it
    assert np.array_equal(D.paste_distractors(bg, [np.ones_like(bg)], rng, 0), bg)
    assert not bg.any()  # the input is not modified in place


def test_shade_object_lights_and_outlines_only_inside_the_silhouette():
    rng = np.random.default_rng(3)
    patch = np.full((40, 60, 3), 0.5, np.float32)
    m = np.zeros((40, 60), np.float32)
    m[8:32, 10:50] = 1
    out = D.shade_object(patch, m, rng)
    assert out.shape == patch.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    inner, edge = out[14:26, 18:42], out[8, 10:50]
    assert inner.std() > 0.005  # light falls off across the object (a flat patch is no longer flat)
    assert np.abs(edge - 0.5).mean() > np.abs(out[20, 30] - 0.5).mean()  # the rim stands out more than the middle
    # pasted with p_shaded=1 the objects still only change the background inside their silhouettes
    bg = np.zeros((48, 64, 3), np.float32)
    shaded = D.paste_distractors(bg, [np.full((48, 64, 3), 0.5, np.float32)], np.random.default_rng(0), 3, p_shaded=1.0)
    flat = D.paste_distractors(bg, [np.full((48, 64, 3), 0.5, np.float32)], np.random.default_rng(0), 3, p_shaded=0.0)
    assert 0.01 < (shaded > 0).any(-1).mean() < 0.9
    assert flat[(flat > 0.45).all(-1)].std() < 0.02  # flat cut-outs: one tone inside (soft edges aside)
    assert shaded[(shaded > 0.2).all(-1)].std() > 0.05  # shaded ones: light and rim


def test_recolor_regions_changes_colours_in_parts_only(tmp_path):
    rng = np.random.default_rng(0)
    img = np.tile(np.linspace(0.2, 0.8, 64, dtype=np.float32)[None, :, None], (48, 1, 3))
    img[..., 0] *= 0.5  # a coloured ramp, so hue turns show
    out = D.recolor_regions(img, rng)
    assert out.shape == img.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    diff = np.abs(out - img).max(-1)
    assert 0.02 < (diff > 0.02).mean() < 0.98  # some regions recoloured, not the whole frame
    # in the composites it recolours the subject only: the labels stay as they were
    fgs = D.ForegroundDataset(make_layers(tmp_path / "fg", n=2))
    kw = dict(crop=32, length=4, seed=1)
    plain = D.CompositeDataset(fgs, make_backgrounds(tmp_path / "bg"), augment=D.AugmentConfig(p_noise=0), **kw)
    recol = D.CompositeDataset(fgs, make_backgrounds(tmp_path / "bg"), augment=D.AugmentConfig(p_noise=0, p_fg_recolor=1), **kw)
    changed = 0
    for i in range(4):
        a, b = plain.sample(i), recol.sample(i)
        assert np.array_equal(a["alpha"], b["alpha"])
        inside = a["alpha"] > 0.5
        changed += np.abs(a["fg"][inside] - b["fg"][inside]).max() > 0.02  # the subject's colours moved
    assert changed >= 3


def test_augment_table_of_the_config(tmp_path):
    from vmatte.training.config import load_config

    cfg_file = tmp_path / "a.toml"
    cfg_file.write_text("[augment]\np_shaded_distractor = 0.6\nscale_range = [0.5, 1.2]\n")
    cfg = load_config(cfg_file)
    assert cfg.augment.p_shaded_distractor == 0.6 and cfg.augment.scale_range == (0.5, 1.2)
    assert load_config(None).augment == type(cfg.augment)()  # no table: the defaults
    cfg_file.write_text("[augment]\np_shady = 1\n")
    with pytest.raises(ValueError, match="p_shaded_distractor"):  # unknown keys list the valid ones
        load_config(cfg_file)
    for bad in ("p_fg_recolor = 1.5", "max_distractors = 0"):
        cfg_file.write_text(f"[augment]\n{bad}\n")
        with pytest.raises(ValueError, match=r"\[augment\]"):
            load_config(cfg_file)
    with pytest.raises(ValueError, match="max_distractors"):  # checked by the dataclass, not only the TOML reader
        D.AugmentConfig(max_distractors=0)


def test_distractors_leave_the_subject_and_labels_alone(tmp_path):
    fgs = D.ForegroundDataset(make_layers(tmp_path / "fg", n=2))
    kw = dict(crop=32, length=6, seed=1)
    plain = D.CompositeDataset(fgs, make_backgrounds(tmp_path / "bg"), augment=D.AugmentConfig(p_noise=0, p_distractor=0), **kw)
    busy = D.CompositeDataset(fgs, make_backgrounds(tmp_path / "bg"), augment=D.AugmentConfig(p_noise=0, p_distractor=1), **kw)
    differs = 0
    for i in range(6):
        a, b = plain.sample(i), busy.sample(i)
        assert np.array_equal(a["alpha"], b["alpha"]) and np.array_equal(a["fg"], b["fg"])
        assert np.allclose(b["image"], b["fg"] * b["alpha"][..., None] + b["bg"] * (1 - b["alpha"][..., None]), atol=1e-6)
        differs += not np.array_equal(a["bg"], b["bg"])
    assert differs >= 3


def test_composite_dataset_noise_small(tmp_path):
    fgs = D.ForegroundDataset(make_layers(tmp_path / "fg", n=2))
    ds = D.CompositeDataset(fgs, make_backgrounds(tmp_path / "bg"), crop=32, length=6,
                            augment=D.AugmentConfig(p_noise=1.0, noise_std=(0.01, 0.02)))
    for i in range(6):
        s = ds.sample(i)
        err = np.abs(s["image"] - D.composite(s["fg"], s["bg"], s["alpha"]))
        assert 0 < err.mean() < 0.05 and s["image"].min() >= 0 and s["image"].max() <= 1


def test_subject_cut_by_photo_edge_stays_cut(tmp_path):
    """A person cut by the photo's bottom edge must reach the crop's bottom edge (no floating bust)."""
    fgs = D.ForegroundDataset(make_layers(tmp_path / "fg", n=2, touch_bottom=True))
    assert D.touched_edges(fgs.load(0)[1]) == (False, True, False, False)
    ds = D.CompositeDataset(fgs, make_backgrounds(tmp_path / "bg"), crop=(40, 40), length=20, augment=NO_NOISE)
    for i in range(20):
        alpha = ds.sample(i)["alpha"]
        assert alpha[-1].max() > 0.5, i


def test_small_layers_are_not_blown_up(tmp_path):
    fgs = D.ForegroundDataset(make_layers(tmp_path / "fg", n=1, h=20, w=16))
    y0, x0, y1, x1 = D.alpha_bbox(fgs.load(0)[1], 0.5)
    ds = D.CompositeDataset(fgs, make_backgrounds(tmp_path / "bg"), crop=64, length=10,
                            augment=D.AugmentConfig(p_noise=0, max_upscale=1.5))
    for i in range(10):
        b = D.alpha_bbox(ds.sample(i)["alpha"], 0.5)
        assert b is not None and b[2] - b[0] <= 1.5 * (y1 - y0) + 2 and b[3] - b[1] <= 1.5 * (x1 - x0) + 2


def test_synthetic_backgrounds_and_jitter_ranges():
    for seed in range(15):
        rng = np.random.default_rng(seed)
        bg = D.synthetic_background(24, 36, rng)
        assert bg.shape == (24, 36, 3) and bg.dtype == np.float32 and bg.min() >= 0 and bg.max() <= 1
        j = D.color_jitter(bg, rng)
        assert j.shape == bg.shape and j.min() >= 0 and j.max() <= 1


def test_real_mask_dataset_synthetic(tmp_path):
    rng = np.random.default_rng(0)
    for stem in ("1", "2", "3"):
        write_rgb(tmp_path / "im" / f"{stem}.jpg", (rng.random((50, 40, 3)) * 255).astype(np.uint8))
        write_gray(tmp_path / "gt" / f"{stem}.png", (soft_disc(25, 20, 12, 10, 6) > 0.5).astype(np.uint8) * 255)
    samples = R.real_mask_samples(tmp_path / "im", tmp_path / "gt", prefix="hs290_", exclude=["hs290_2"])
    assert [s["name"] for s in samples] == ["hs290_1", "hs290_3"]
    ds = R.RealMaskDataset(samples, crop=32)
    s = ds[0]
    assert s["image"].shape == (3, 32, 32) and s["mask"].shape == (1, 32, 32)
    assert set(torch.unique(s["mask"]).tolist()) <= {0.0, 1.0}


# ---------------------------------------------------------------------------------- split / devset


def test_split_disjoint_and_deterministic():
    subjects = [f"hs290_{i}" for i in range(100)]
    bgs = [f"bg{i}.jpg" for i in range(20)]
    split = S.make_split(subjects, bgs, 0.1, 6, seed=0)
    assert split == S.make_split(list(reversed(subjects)), bgs, 0.1, 6, seed=0)
    assert len(split["heldout_subjects"]) == 10 and len(split["heldout_backgrounds"]) == 6
    train = S.training_subjects(subjects, split)
    assert not set(train) & set(split["heldout_subjects"])
    assert set(train) | set(split["heldout_subjects"]) == set(subjects)
    train_bg = S.training_backgrounds([Path("/x") / b for b in bgs], split)
    assert len(train_bg) == 14 and not {p.name for p in train_bg} & set(split["heldout_backgrounds"])
    assert S.make_split(subjects, bgs, 0.1, 6, seed=1) != split


def test_repo_split_file_is_valid():
    if not S.SPLIT_FILE.is_file():
        pytest.skip(f"{S.SPLIT_FILE} not created yet (python -m training.devset creates it)")
    split = S.load_split()
    held = split["heldout_subjects"]
    assert held and len(held) == len(set(held)) and split["heldout_backgrounds"]


def test_build_devset(tmp_path):
    fg_dir = make_layers(tmp_path / "fg", n=4)
    bg_dir = make_backgrounds(tmp_path / "bg", n=4)
    split = S.make_split([f"s{i}" for i in range(4)], [f"bg{i}.jpg" for i in range(4)], 0.5, 2, seed=0)
    entries = S.build_devset(fg_dir, bg_dir, tmp_path / "dev", split, per_subject=2, long_side=64)
    assert len(entries) == 4
    assert {e["background"] for e in entries} <= set(split["heldout_backgrounds"])
    assert {e["subject"] for e in entries} == set(split["heldout_subjects"])
    dev = D.ImageAlphaDataset(tmp_path / "dev")
    assert len(dev) == 4 and max(dev[0]["image"].shape[1:]) == 64
    # same inputs, same files
    S.build_devset(fg_dir, bg_dir, tmp_path / "dev2", split, per_subject=2, long_side=64)
    a = cv2.imread(str(tmp_path / "dev" / "image" / f"{entries[0]['name']}.png"))
    b = cv2.imread(str(tmp_path / "dev2" / "image" / f"{entries[0]['name']}.png"))
    assert np.array_equal(a, b)


def test_build_real_set_takes_only_heldout_photos(tmp_path):
    """The real-photo check set: held-out subjects' own photos (colours kept) and binary masks."""
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        photo = rng.integers(40, 200, (60, 90, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / "img" / f"{i}.jpg"), photo)
        m = np.zeros((30, 45), np.uint8)
        m[5:25, 15:30] = 255
        cv2.imwrite(str(tmp_path / "msk" / f"{i}.png"), m)  # half size: resized to the photo
    split = {"heldout_subjects": ["hs290_1", "hs290_3", "other_2"]}
    names = S.build_real_set(tmp_path / "img", tmp_path / "msk", tmp_path / "real", split, long_side=60)
    assert sorted(names) == ["hs290_1", "hs290_3"]
    img = cv2.imread(str(tmp_path / "real" / "image" / "hs290_1.png"))
    alpha = cv2.imread(str(tmp_path / "real" / "alpha" / "hs290_1.png"), cv2.IMREAD_GRAYSCALE)
    src = cv2.imread(str(tmp_path / "img" / "1.jpg"))
    assert img.shape == (40, 60, 3) and alpha.shape == (40, 60) and set(np.unique(alpha)) <= {0, 255}
    assert abs(float(img.mean()) - float(src.mean())) < 3  # the photo, not a washed-out copy
    assert 0.1 < (alpha > 0).mean() < 0.3
    with pytest.raises(ValueError, match="no held-out subject"):
        S.build_real_set(tmp_path / "img", tmp_path / "msk", tmp_path / "r2", {"heldout_subjects": ["x"]})


# ---------------------------------------------------------------------------------- foreground builder


def synthetic_photo(h: int = 64, w: int = 64):
    """Image of a smooth red-ish subject with a soft edge over a smooth blue-ish background."""
    a = soft_disc(h, w, h / 2, w / 2, h * 0.3, soft=5.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / h
    fg = np.stack([0.85 + 0.1 * yy, 0.25 + 0.1 * xx, 0.15 + 0 * xx], -1)
    bg = np.stack([0.1 + 0 * xx, 0.35 + 0.2 * yy, 0.8 + 0.1 * xx], -1)
    img = a[..., None] * fg + (1 - a[..., None]) * bg
    return img.astype(np.float32), a, fg.astype(np.float32)


def test_trimap_and_closed_form_recover_alpha():
    pytest.importorskip("pymatting", reason="pymatting (train/test extras) not installed")
    img, a_true, fg_true = synthetic_photo()
    tri = F.make_trimap((a_true > 0.5).astype(np.float32), None)
    unknown = tri == 0.5
    assert unknown.any() and (tri[a_true > 0.999][~unknown[a_true > 0.999]] == 1).all()
    assert (np.abs(a_true[~unknown] - tri[~unknown]) < 1e-6).all()  # known pixels are right
    alpha = F.matte_from_trimap(img.astype(np.float64), tri)
    assert np.abs(alpha - a_true)[unknown].mean() < 0.05
    fg = F.estimate_fg(img, alpha)
    sel = a_true > 0.2
    assert np.abs(fg - fg_true)[sel].mean() < 0.05


def test_blend_with_teacher():
    cf = np.array([0.5, 0.5, 0.5, 0.5], np.float32)
    t = np.array([0.55, 0.4, 0.9, 0.725], np.float32)
    out = F.blend_with_teacher(cf, t, 0.15, 0.3)
    np.testing.assert_allclose(out[:3], [0.5, 0.5, 0.9], atol=1e-6)  # agree -> CF, far apart -> teacher
    assert 0.5 < out[3] < 0.725


def test_trimap_drops_mask_parts_far_from_teacher():
    h, w = 80, 80
    teacher = soft_disc(h, w, 40, 30, 15, soft=2)
    mask = (teacher > 0.5).astype(np.float32)
    mask[5:15, 65:78] = 1  # an object in the mask that the teacher does not call person
    tri = F.make_trimap(mask, teacher)
    assert (tri[8:12, 68:75] == 0).all() and tri[40, 30] == 1


def test_build_layers_without_pymatting_fails_at_once(tmp_path, monkeypatch):
    """Without pymatting every photo would fail and be skipped: one clear error instead."""
    monkeypatch.setitem(sys.modules, "pymatting", None)
    with pytest.raises(VmatteError, match="pip install"):
        F.build_layers([], tmp_path / "out", teacher=None, workers=1)
    assert not (tmp_path / "out").exists()


def test_build_layers_end_to_end_skips_bad(tmp_path, caplog):
    pytest.importorskip("pymatting", reason="pymatting (train/test extras) not installed")
    img, a, _ = synthetic_photo(96, 96)
    write_rgb(tmp_path / "im" / "good.jpg", (img * 255 + 0.5).astype(np.uint8))
    write_gray(tmp_path / "gt" / "good.png", ((a > 0.5) * 255).astype(np.uint8))
    (tmp_path / "im" / "bad.jpg").write_bytes(b"not an image")
    write_gray(tmp_path / "gt" / "bad.png", ((a > 0.5) * 255).astype(np.uint8))
    jobs = F.find_pairs(tmp_path / "im", tmp_path / "gt", prefix="t_")
    assert [j["name"] for j in jobs] == ["t_bad", "t_good"]
    params = F.BuildParams(min_subject=20)
    with caplog.at_level(logging.WARNING):
        man = F.build_layers(jobs, tmp_path / "out", teacher=None, params=params, workers=1)
    assert list(man["subjects"]) == ["t_good"] and "t_bad" in man["skipped"]
    assert any("t_bad" in r.getMessage() for r in caplog.records)
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["subjects"]["t_good"]["file"] == "t_good.png"
    f, al = D.ForegroundDataset(tmp_path / "out").load(0)
    assert f.shape == (96, 96, 3) and np.abs(al - a).mean() < 0.03
    # resumable: a second run has nothing to do and keeps the subject
    man2 = F.build_layers(jobs, tmp_path / "out", teacher=None, params=params, workers=1)
    assert list(man2["subjects"]) == ["t_good"]


# ---------------------------------------------------------------------------------- real data


def test_real_shared_data():
    hs = DATA / "people" / "human_seg_290"
    bgd = DATA / "backgrounds"
    if not (hs / "Training_Images").is_dir() or not bgd.is_dir():
        pytest.skip(f"shared data not found at {DATA} (set VMATTE_DATA)")
    samples = R.real_mask_samples(hs / "Training_Images", hs / "Ground_Truth", prefix="hs290_")
    assert len(samples) >= 250
    ds = R.RealMaskDataset(samples[:4], crop=64)
    s = ds[0]
    assert s["image"].shape == (3, 64, 64) and 0 < float(s["mask"].mean()) < 1
    # a layer built from a real photo composites exactly over a real background
    rgb = F.limit_size(F.read_rgb(samples[0]["image"]), 160)
    mask = F.read_mask(samples[0]["mask"])
    fg, alpha, info = F.build_layer(rgb, mask, None, F.BuildParams(min_subject=20))
    assert fg.shape == rgb.shape and 0.01 < alpha.mean() < 0.99
    pool = D.BackgroundPool(bgd, max_side=128)
    assert len(pool) >= 10
    bg = D.to_float(D.random_bg_crop(pool.get(0), alpha.shape, np.random.default_rng(0)))
    comp = D.composite(fg, bg, alpha)
    assert comp.shape == fg.shape and comp.min() >= 0 and comp.max() <= 1


def test_person_free_crops_miss_the_person_and_feed_the_pool(tmp_path):
    """Crops of person photos with no person in them (the mask grown by a margin), as extra
    backgrounds; a photo that is all person gives none."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
    mask = np.zeros((200, 300), np.float32)
    mask[20:200, 120:180] = 1.0  # a person in the middle
    crops = D.person_free_crops(img, mask, np.random.default_rng(1), count=3, tries=400)
    assert 1 <= len(crops) <= 3
    grown = cv2.dilate((mask > 0.1).astype(np.uint8), np.ones((19, 19), np.uint8))
    for c in crops:
        h, w = c.shape[:2]
        assert 0.2 * 200 - 1 <= h <= 0.6 * 200 and 0.2 * 300 - 1 <= w <= 0.6 * 300
        # locate the crop in the photo and check it misses the grown mask
        res = cv2.matchTemplate(img, c, cv2.TM_SQDIFF)
        y0, x0 = np.unravel_index(int(res.argmin()), res.shape)
        assert grown[y0:y0 + h, x0:x0 + w].sum() == 0
    assert D.person_free_crops(img, np.ones((200, 300), np.float32), np.random.default_rng(1)) == []
    cv2.imwrite(str(tmp_path / "p.png"), img[..., ::-1])
    cv2.imwrite(str(tmp_path / "m.png"), (mask * 255).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "bg.png"), img[..., ::-1])
    pool = D.BackgroundPool(tmp_path / "bg.png", person_free=[{"image": tmp_path / "p.png", "mask": tmp_path / "m.png"}],
                            person_free_per_photo=2)
    assert 2 <= len(pool) <= 3 and pool.get(0).shape == (200, 300, 3)
