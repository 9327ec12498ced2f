"""The paired graphs (vmatte.models.pairs) and how the onnxruntime backend picks and feeds them:
the same cells as the refiner's own patch net for any number of windows, the same alpha as the
generator."""
from __future__ import annotations

import numpy as np
import pytest

from vmatte.backends import base
from vmatte.backends.base import PAIRED, PATCH_NET, PATCH_NET_PAIRS, part_file, window_multiple
from vmatte.ops.patches import in_multiples


def _randomise_bn(module, seed: int) -> None:
    """Give every batch norm non-trivial statistics and affine terms, so folding them is tested."""
    import torch

    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)


@pytest.mark.parametrize("model_name", ["rt", "paper"])  # 8/16 channels (block-diagonal, grouped); 32/64, deep
def test_paired_net_matches_refine_windows(model_name):
    torch = pytest.importorskip("torch")
    from vmatte.models.pairs import PairedPatchNet
    from vmatte.registry import create_model

    torch.manual_seed(0)
    refiner = create_model(model_name).refiner.eval()
    _randomise_bn(refiner, 1)
    paired = PairedPatchNet(refiner).eval()
    S = 64 + 2 * refiner.cfg.context
    g = torch.Generator().manual_seed(2)
    img, alpha = torch.rand(6, 3, S, S, generator=g), torch.rand(6, 1, S, S, generator=g)
    with torch.no_grad():
        want = refiner.refine_windows(img, alpha)
        got = paired(img, alpha)
    assert got.shape == want.shape == (6, 1, 64, 64)
    assert float((got - want).abs().max()) < 1e-5
    assert float((want - alpha[:, :, S // 2 - 32:S // 2 + 32, S // 2 - 32:S // 2 + 32]).abs().max()) > 1e-3  # not a no-op


def test_in_multiples_pads_with_the_last_window_and_drops_its_cells():
    seen = []

    def net(img, base):
        seen.append(len(img))
        assert len(img) % 2 == 0
        return img[:, :1, :64, :64] + base[:, :, :64, :64]

    rng = np.random.default_rng(0)
    for k in (1, 2, 5):
        img, base_ = rng.random((k, 3, 72, 72), dtype=np.float32), rng.random((k, 1, 72, 72), dtype=np.float32)
        out = in_multiples(net, 2)(img, base_)
        assert out.shape == (k, 1, 64, 64)
        np.testing.assert_array_equal(out, img[:, :1, :64, :64] + base_[:, :, :64, :64])
    assert seen == [2, 2, 6]
    assert in_multiples(net, 1) is net


@pytest.mark.parametrize("part", [PATCH_NET, "generator"])
def test_part_file_choice(tmp_path, monkeypatch, part):
    assert part_file(tmp_path, part) is None  # an export without it (no patch net: the refiner graph)
    plain = tmp_path / f"{part}.onnx"
    plain.write_bytes(b"x")
    assert part_file(tmp_path, part, pairs=True) == plain  # no paired file: the plain one
    paired = tmp_path / f"{PAIRED[part]}.onnx"
    paired.write_bytes(b"x")
    assert part_file(tmp_path, part, pairs=True) == paired
    assert part_file(tmp_path, part, pairs=False) == plain
    monkeypatch.setattr(base, "avx512", lambda: True)
    assert part_file(tmp_path, part) == paired
    monkeypatch.setattr(base, "avx512", lambda: False)
    assert part_file(tmp_path, part) == plain
    assert part_file(tmp_path, part, "int8", pairs=True) is None  # int8 runs only its own twin
    (tmp_path / f"{part}.int8.onnx").write_bytes(b"x")
    assert part_file(tmp_path, part, "int8", pairs=True) == tmp_path / f"{part}.int8.onnx"


def test_unpaired_parts_have_no_paired_file(tmp_path):
    (tmp_path / "segmenter.onnx").write_bytes(b"x")
    (tmp_path / "segmenter_pairs.onnx").write_bytes(b"x")
    assert part_file(tmp_path, "segmenter", pairs=True) == tmp_path / "segmenter.onnx"


@pytest.mark.parametrize("model_name,shape", [("rt", (64, 96)), ("rt", (128, 224)), ("paper", (64, 64))])  # paper: grouped convs
def test_paired_generator_matches_the_generator(model_name, shape):
    torch = pytest.importorskip("torch")
    from vmatte.models.pairs import PairedGenerator
    from vmatte.registry import create_model

    torch.manual_seed(0)
    gen = create_model(model_name).generator.eval()
    _randomise_bn(gen, 3)
    g = torch.Generator().manual_seed(4)
    img, mask = torch.rand(2, 3, *shape, generator=g), torch.rand(2, 1, *shape, generator=g)
    with torch.no_grad():
        want = gen(img, mask)
        got = PairedGenerator(gen).eval()(img, mask)
    assert got.shape == want.shape == (2, 1, *shape)
    assert float((got - want).abs().max()) < 1e-5
    assert float(want.std()) > 1e-3  # not a constant map


def test_window_multiple_reads_the_metadata():
    assert window_multiple({}) == 1
    assert window_multiple({"vmatte_window_multiple": "2"}) == 2
    assert window_multiple({"vmatte_window_multiple": "two"}) == 1


def test_avx512_agrees_with_the_kernel():
    """numpy's view of the CPU, against Linux's flags where they can be read."""
    from pathlib import Path

    info = Path("/proc/cpuinfo")
    if not info.is_file():
        pytest.skip("no /proc/cpuinfo to compare with")
    flags = next((line.split(":", 1)[1].split() for line in info.read_text().splitlines() if line.startswith("flags")), None)
    if flags is None:
        pytest.skip("/proc/cpuinfo lists no flags (not x86)")
    assert base.avx512() == ("avx512f" in flags and "avx512bw" in flags)


def test_a_model_that_does_not_pair_exports_the_plain_files(tmp_path, caplog):
    """A refiner whose context is under its decoder's reach has no paired patch net: the export
    skips that file with a log line (and removes a stale one) instead of failing."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import logging

    from vmatte.export.onnx import export_onnx
    from vmatte.models.refiner import Refiner, RefinerConfig
    from vmatte.registry import create_model

    m = create_model("rt")
    m.refiner = Refiner(RefinerConfig(patches=8, context=1, widths=(8, 16)))
    m.eval()
    (tmp_path / f"{PATCH_NET_PAIRS}.onnx").write_bytes(b"stale")
    with caplog.at_level(logging.INFO, logger="vmatte.export.onnx"):
        paths = export_onnx(m, tmp_path)
    assert PATCH_NET in paths and PAIRED["generator"] in paths and PATCH_NET_PAIRS not in paths
    assert not (tmp_path / f"{PATCH_NET_PAIRS}.onnx").exists()
    assert "no refiner_patches_pairs.onnx" in caplog.text
    assert part_file(tmp_path, PATCH_NET, pairs=True) == tmp_path / f"{PATCH_NET}.onnx"


def test_other_providers_keep_the_plain_files(monkeypatch, tmp_path):
    """The paired graphs are for onnxruntime's CPU kernels: with another provider listed the
    backend runs the plain files unless told otherwise."""
    pytest.importorskip("onnxruntime")
    from vmatte.backends.onnxruntime import OnnxRuntimeBackend

    seen = {}
    monkeypatch.setattr(base, "avx512", lambda: True)
    monkeypatch.setattr("vmatte.backends.onnxruntime.part_file",
                        lambda d, part, precision="fp32", pairs=None: seen.setdefault(part, pairs))
    monkeypatch.setattr(OnnxRuntimeBackend, "_load", lambda self, *a: None)

    class Source:
        model, onnx_dir = "rt", tmp_path

    with pytest.raises(AttributeError):  # the fake files load as nothing: stop at reading the patch plan
        OnnxRuntimeBackend(Source(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert seen == dict.fromkeys(("segmenter", "generator", "refiner", PATCH_NET), False)
