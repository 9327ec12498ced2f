"""Model components: shapes, registry, refiner patch logic."""
from __future__ import annotations

import pytest
import torch

from vmatte.models.refiner import PATCH, Refiner, RefinerConfig, RefinerNet, cell_scores, patch_scores, select_cells
from vmatte.registry import create_model, list_models


def test_registry_lists_variants_and_rejects_unknown():
    assert {"rt", "paper"} <= set(list_models())
    with pytest.raises(ValueError, match="valid models: .*paper.*rt"):
        create_model("nope")


@pytest.mark.parametrize("name", ["rt", "rt_plus", "rt_mv3", "paper"])
def test_forward_shapes(name):
    m = create_model(name).eval()
    x, lo = torch.rand(2, 3, 128, 192), torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        out = m.forward_all(x, lo)
    assert out["mask"].shape == (2, 1, 64, 96)
    assert out["coarse"].shape == (2, 1, 64, 96)
    assert out["alpha"].shape == (2, 1, 128, 192)
    for v in out.values():
        assert float(v.min()) >= 0 and float(v.max()) <= 1


def test_generator_uses_both_encoders():
    """The segmentation encoder sees mask ⊕ image·mask: changing the mask changes the output."""
    m = create_model("rt").eval()
    img = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a = m.generator(img, torch.zeros(1, 1, 64, 64))
        b = m.generator(img, torch.ones(1, 1, 64, 64))
    assert (a - b).abs().max() > 1e-4


def test_select_cells_prefers_uncertain_and_pads_small_grids():
    scores = torch.tensor([[0.0, 0.9, 0.1, 0.5]])
    assert select_cells(scores, 2).tolist() == [[1, 3]]
    idx = select_cells(scores, 6)  # more picks than cells: surplus repeats a valid cell
    assert idx.shape == (1, 6) and int(idx.max()) <= 3 and set(idx[0, :4].tolist()) == {0, 1, 2, 3}


def test_patch_scores_mark_border_cells():
    a = torch.zeros(1, 1, 128, 128)
    a[..., :, :64] = 1.0
    a[..., 64:, 64:] = 0.5  # fractional cell
    s = patch_scores(a)
    assert s.shape == (1, 4)
    assert s[0, 3] == pytest.approx(1.0) and s[0, :3].abs().max() == 0


def test_cell_scores_match_full_resolution_scores_on_a_smooth_matte():
    """Scoring the upsampled alpha on 16x16 samples a cell picks the same cells as scoring every pixel."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 48), torch.linspace(-1, 1, 80), indexing="ij")
    coarse = torch.sigmoid(8 * (0.6 - (xx**2 + yy**2).sqrt()))[None, None]  # a soft disc [1,1,48,80]
    up = torch.nn.functional.interpolate(coarse, size=(384, 640), mode="bilinear", align_corners=False)
    full, fast = patch_scores(up), cell_scores(coarse, 6, 10)
    assert fast.shape == full.shape == (1, 60)
    assert (fast - full).abs().max() < 0.02
    assert set(select_cells(fast, 12)[0].tolist()) == set(select_cells(full, 12)[0].tolist())


@pytest.mark.parametrize("deep,context", [(False, 4), (True, 8), (False, 1)])
def test_refiner_net_centre_crop_equals_padded_output(deep, context):
    """The unpadded decoder on the centre gives exactly the padded net's centre (less work)."""
    torch.manual_seed(0)
    net = RefinerNet((8, 16), deep).eval()
    for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 4, PATCH + 2 * context, PATCH + 2 * context)
    with torch.no_grad():
        want = net(x)[..., context:-context, context:-context]
        got = net(x, crop=context)
    assert got.shape == (3, 1, PATCH, PATCH)
    assert torch.allclose(got, want, atol=1e-5)


def test_refiner_only_changes_selected_cells():
    torch.manual_seed(0)
    r = Refiner(RefinerConfig(patches=1, context=4, widths=(4, 8))).eval()
    img = torch.rand(1, 3, 128, 192)
    coarse = torch.zeros(1, 1, 32, 48)
    coarse[..., 16:, 24:] = 0.5  # uncertain only in the bottom-right cell region
    coarse[..., :16, :24] = 1.0
    with torch.no_grad():
        out = r(img, coarse)
        up = torch.nn.functional.interpolate(coarse, size=(128, 192), mode="bilinear", align_corners=False)
    changed = (out - up).abs() > 0
    # Everything outside the chosen 64x64 cell is the plain upsampled alpha.
    cell = select_cells(cell_scores(coarse, 128 // PATCH, 192 // PATCH), 1)[0, 0].item()
    gy, gx = divmod(cell, 192 // PATCH)
    mask = torch.zeros_like(changed)
    mask[..., gy * PATCH : (gy + 1) * PATCH, gx * PATCH : (gx + 1) * PATCH] = True
    assert not changed[~mask].any()
    assert changed[mask].any()


def test_refiner_zero_budget_is_upsampling():
    r = Refiner(RefinerConfig(patches=0)).eval()
    c = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        out = r(torch.rand(1, 3, 64, 64), c)
    assert out.shape == (1, 1, 64, 64)


def test_builtin_names_match_registry():
    from vmatte import registry

    registry._ensure_loaded()
    assert set(registry.BUILTIN_MODELS) == set(registry._REGISTRY)
