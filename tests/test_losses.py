"""Loss terms on hand-checked tiny tensors, term switches, the discriminator and the VGG19 features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

try:
    from vmatte.training import discriminator as D
    from vmatte.training import losses as L
    from vmatte.training import vgg as V
except ImportError:  # not installed: run from the repository root
    from training import discriminator as D
    from training import losses as L
    from training import vgg as V

ROOT = Path(__file__).resolve().parents[1]
VGG_FILE = ROOT / ".assets" / "vgg19.safetensors"


def t(rows):
    """[[...]] -> [1,1,H,W] float tensor."""
    return torch.tensor(rows, dtype=torch.float32)[None, None]


TRUE = t([[0.0, 1.0], [0.5, 0.25]])
PRED = t([[0.1, 0.7], [0.4, 0.45]])
# image channels constant 0.5, 1, 0 -> per-pixel weight sum 1.5 over 3 channels
IMAGE = torch.stack([torch.full((2, 2), 0.5), torch.ones(2, 2), torch.zeros(2, 2)])[None]


def test_masked_l1_normalises_and_guards_zero():
    p, q = t([[1.0, 2.0]]), t([[0.0, 0.0]])
    assert L.masked_l1(p, q, t([[1.0, 1.0]])).item() == pytest.approx(1.5)
    assert L.masked_l1(p, q, t([[0.0, 1.0]])).item() == pytest.approx(2.0)
    assert L.masked_l1(p, q, t([[0.0, 0.0]])).item() == 0.0


def test_alpha_loss_by_hand():
    # pixels with true 0 or 1: |0.1-0| + |0.7-1| = 0.4 over 2 pixels
    assert L.alpha_loss(PRED, TRUE).item() == pytest.approx(0.2)
    # foreground: sum over channels of image * |dp| = 1.5 * 0.4 over 2 px x 3 ch
    assert L.alpha_loss(PRED, TRUE, image=IMAGE).item() == pytest.approx(0.6 / 6)


def test_coef_loss_by_hand():
    # pixels with 0<true<1: |0.4-0.5| + |0.45-0.25| = 0.3 over 2 pixels
    assert L.coef_loss(PRED, TRUE).item() == pytest.approx(0.15)
    assert L.coef_loss(PRED, TRUE, image=IMAGE).item() == pytest.approx(1.5 * 0.3 / 6)


def test_dilate_erode_band_by_hand():
    m = t([[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    torch.testing.assert_close(L.dilate(m, 3), torch.ones_like(m))
    torch.testing.assert_close(L.erode(m, 3), t([[1, 0, 0], [0, 0, 0], [0, 0, 0]]))
    torch.testing.assert_close(L.border_band(m, 3), t([[0, 1, 1], [1, 1, 1], [1, 1, 1]]))
    torch.testing.assert_close(L.border_band(m, 1), torch.zeros_like(m))
    with pytest.raises(ValueError, match="odd"):
        L.dilate(m, 4)


def test_border_loss_by_hand():
    true = t([[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    pred = torch.zeros_like(true)
    # band = all but (0,0): 8 px; |0 - true| sums to 3 there
    assert L.border_loss(pred, true, kernel=3).item() == pytest.approx(3 / 8)
    # an explicit mask replaces true > 0: mask only at (2,2) -> band = (1..2, 1..2), true there sums to 1
    mask = t([[0, 0, 0], [0, 0, 0], [0, 0, 1]])
    assert L.border_loss(pred, true, mask=mask, kernel=3).item() == pytest.approx(1 / 4)
    img = torch.full((1, 3, 3, 3), 0.5)
    assert L.border_loss(pred, true, image=img, kernel=3).item() == pytest.approx(0.5 * 3 * 3 / 24)


class _FakeVGG:
    def __call__(self, x):
        return {"a": x, "b": 2 * x}


def test_perceptual_loss_with_fake_features():
    # layer a: mean|d|; layer b: 2 mean|d| / 4 -> average 0.75 mean|d|; alpha repeated to 3 ch
    m = (PRED - TRUE).abs().mean().item()
    got = L.perceptual_loss(_FakeVGG(), PRED, TRUE, scales={"a": 1.0, "b": 4.0})
    assert got.item() == pytest.approx(0.75 * m)


def test_lsgan_losses_by_hand():
    real = [[torch.ones(1, 1, 2, 2)]]
    fake = [[torch.full((1, 1, 2, 2), 0.5)]]
    assert L.gan_loss_d(real, fake).item() == pytest.approx(0.5 * (0 + 0.25))
    assert L.gan_loss_g(fake).item() == pytest.approx(0.25)
    # two scales averaged: (0.5-1)^2 and (0-1)^2
    assert L.gan_loss_g([torch.full((1, 1, 2, 2), 0.5), torch.zeros(1, 1, 1, 1)]).item() == pytest.approx(0.625)


def test_feature_matching_by_hand():
    real = [[torch.ones(1, 2, 2, 2), torch.zeros(1, 1, 1, 1)]]
    fake = [[torch.full((1, 2, 2, 2), 0.5), torch.ones(1, 1, 1, 1)]]  # last (score) entry ignored
    assert L.feature_matching_loss(real, fake).item() == pytest.approx(0.5)


def test_generator_loss_total_and_switches():
    cfg = L.LossConfig(perceptual=False, adversarial=False)
    out = L.generator_loss(PRED, TRUE, IMAGE, cfg)
    assert set(out) == {"alpha", "alpha_fg", "coef", "coef_fg", "border", "border_fg", "total"}
    assert out["alpha"].item() == pytest.approx(0.2) and out["coef"].item() == pytest.approx(0.15)
    want = 25 * (out["alpha"] + out["alpha_fg"] + out["border"] + out["border_fg"]) + 50 * (out["coef"] + out["coef_fg"])
    assert out["total"].item() == pytest.approx(want.item())

    only_alpha = cfg.replace(coef=False, border=False, on_foreground=False)
    out = L.generator_loss(PRED, TRUE, None, only_alpha)
    assert set(out) == {"alpha", "total"} and out["total"].item() == pytest.approx(25 * 0.2)

    none = only_alpha.replace(alpha=False)
    out = L.generator_loss(PRED, TRUE, None, none)
    assert set(out) == {"total"} and out["total"].item() == 0.0

    with pytest.raises(ValueError, match="vgg"):
        L.generator_loss(PRED, TRUE, IMAGE, L.LossConfig(adversarial=False))
    with pytest.raises(ValueError, match="disc_fake"):
        L.generator_loss(PRED, TRUE, IMAGE, L.LossConfig(perceptual=False))
    with pytest.raises(ValueError, match="image"):
        L.generator_loss(PRED, TRUE, None, cfg)
    with pytest.raises(ValueError, match="unknown LossConfig"):
        cfg.replace(gamma=3)


def test_generator_loss_full_backprops():
    torch.manual_seed(0)
    disc = D.MultiScaleDiscriminator(base=8)
    vgg = V.VGG19Features(pretrained=False)
    image = torch.rand(2, 3, 32, 32)
    true = (torch.rand(2, 1, 32, 32) > 0.5).float()
    true[:, :, :4] = 0.5
    pred = torch.rand(2, 1, 32, 32, requires_grad=True)
    out = L.generator_loss(pred, true, image, L.LossConfig(feature_matching=True), vgg=vgg,
                           disc_fake=disc(image, pred), disc_real=disc(image, true))
    names = {"alpha", "alpha_fg", "coef", "coef_fg", "border", "border_fg", "perceptual", "perceptual_fg", "adv", "fm"}
    assert set(out) == names | {"total"}
    assert all(torch.isfinite(v) for v in out.values())
    out["total"].backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    d = L.discriminator_loss(disc(image, true), disc(image, pred.detach()))
    assert set(d) == {"d", "total"} and d["d"].item() > 0


def test_discriminator_three_scales_shapes():
    disc = D.MultiScaleDiscriminator(base=8)
    outs = disc(torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64))
    assert len(outs) == 3
    # k4 s2 p2: 64 -> 33 -> 17 -> 9, then s1: 10 -> 11; scales 1/2 and 1/4 start at 32 and 16
    assert [tuple(o[-1].shape) for o in outs] == [(2, 1, 11, 11), (2, 1, 7, 7), (2, 1, 5, 5)]
    assert all(len(o) == 5 for o in outs)
    x = D.MultiScaleDiscriminator.make_input(torch.full((1, 3, 2, 2), 0.5), t([[1, 0], [0, 1]]))
    assert x.shape == (1, 4, 2, 2) and x[0, 0].tolist() == [[0.5, 0.0], [0.0, 0.5]]
    with pytest.raises(ValueError, match="expected"):
        disc(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 4, 4))


def test_vgg_shapes_random_weights():
    vgg = V.VGG19Features(pretrained=False)
    feats = vgg(torch.rand(1, 3, 32, 32))
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "relu1_1": (1, 64, 32, 32), "relu2_1": (1, 128, 16, 16), "relu3_1": (1, 256, 8, 8),
        "relu4_1": (1, 512, 4, 4), "relu5_1": (1, 512, 2, 2)}
    assert len(vgg.features) == 30 and not any(p.requires_grad for p in vgg.parameters())
    assert vgg.train().training is False


def test_vgg_missing_file_names_converter(tmp_path):
    with pytest.raises(FileNotFoundError, match="vmatte.training.vgg convert"):
        V.VGG19Features(tmp_path / "none.safetensors")


def test_converter_transposes_keras_layout(tmp_path):
    h5py = pytest.importorskip("h5py", reason="h5py (extra 'train') is needed by the converter")
    rng = np.random.default_rng(0)
    src = tmp_path / "vgg.h5"
    chans = [3, 64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]
    kept = {}
    with h5py.File(src, "w") as f:
        for n, name in enumerate(V._KERAS_NAMES):
            cin, cout = chans[n], chans[n + 1]
            w = rng.standard_normal((3, 3, cin, cout)).astype(np.float32) if n < 2 else np.zeros((3, 3, cin, cout), np.float32)
            b = rng.standard_normal(cout).astype(np.float32)
            g = f.create_group(name)
            g.create_dataset(f"{name}_W_1:0", data=w)
            g.create_dataset(f"{name}_b_1:0", data=b)
            kept[name] = (w, b)
    out = V.convert_h5(src, tmp_path / "vgg.safetensors", half=False, check_md5=False)
    vgg = V.VGG19Features(out)
    w, b = kept["block1_conv2"]
    got = vgg.features[2].weight.detach().numpy()
    assert got.shape == (64, 64, 3, 3)
    np.testing.assert_array_equal(got[5, 7, 1, 2], w[1, 2, 7, 5])  # torch [out,in,y,x] = keras [y,x,in,out]
    np.testing.assert_array_equal(vgg.features[2].bias.detach().numpy(), b)
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        assert "features.28.weight" in f.keys() and "features.30.weight" not in f.keys()  # stops at conv5_1


@pytest.mark.skipif(not VGG_FILE.is_file(), reason=f"{VGG_FILE} missing (see training/vgg.py for the converter)")
def test_vgg_real_weights_are_pretrained():
    def filter_stats(w):
        adj = torch.corrcoef(torch.stack([w[..., :-1].flatten(), w[..., 1:].flatten()]))[0, 1]
        rgb = torch.corrcoef(torch.stack([w[:, 0].flatten(), w[:, 1].flatten()]))[0, 1]
        return adj.item(), rgb.item()

    # trained conv1_1 filters are smooth (neighbouring taps correlate) and colour-correlated;
    # random init (the same statistic on a fresh layer) gives correlations near 0
    adj, rgb = filter_stats(V.VGG19Features(VGG_FILE).features[0].weight.detach())
    assert adj > 0.3 and rgb > 0.4
    torch.manual_seed(0)
    adj_r, rgb_r = filter_stats(V.VGG19Features(pretrained=False).features[0].weight.detach())
    assert abs(adj_r) < 0.15 and abs(rgb_r) < 0.15
