"""ONNX export parity (onnxruntime vs PyTorch), dynamic shapes, FP16 export, format table, CLI."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from vmatte.backends.base import COMPONENT_IO, PAIRED, PATCH_NET, PATCH_NET_PAIRS  # noqa: E402


@pytest.fixture(scope="module")
def model(random_weights):
    from vmatte.registry import create_model
    from vmatte.weights import load_weights

    m = create_model("rt")
    load_weights(m, random_weights)
    return m.eval()


def blob_alpha(h: int, w: int, cy: float = 0.41, cx: float = 0.57) -> np.ndarray:
    """A smooth anisotropic blob [1,1,h,w] in (0,1): its refiner cell scores have no ties."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r2 = ((yy / h - cy) / 0.23) ** 2 + ((xx / w - cx) / 0.31) ** 2 + 0.07 * (xx / w) ** 1.3
    a = 1.0 / (1.0 + np.exp(6.0 * (r2 - 1.0)))
    return a[None, None].astype(np.float32)


def component_inputs(component: str, low: tuple[int, int], full: tuple[int, int], seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = low
    H, W = full
    if component == "segmenter":
        return {"image": rng.random((1, 3, h, w), dtype=np.float32)}
    if component == "generator":
        return {"image": rng.random((1, 3, h, w), dtype=np.float32), "mask": blob_alpha(h, w)}
    return {"image": rng.random((1, 3, H, W), dtype=np.float32), "coarse": blob_alpha(h, w)}


def torch_ref(model, component: str, feed: dict[str, np.ndarray]) -> np.ndarray:
    names, _ = COMPONENT_IO[component]
    with torch.no_grad():
        return getattr(model, component)(*(torch.from_numpy(feed[n]) for n in names)).numpy()


@pytest.fixture(scope="module")
def onnx32(model, tmp_path_factory):
    from vmatte.export.onnx import export_onnx

    return export_onnx(model, tmp_path_factory.mktemp("onnx32"), metadata={"weights_sha256": "abc"})


@pytest.mark.parametrize("component,part", [(c, c) for c in COMPONENT_IO] + [("generator", PAIRED["generator"])])
def test_onnx_parity_two_sizes(model, onnx32, component, part):
    """Every component's file, and the paired generator's, against PyTorch at two new sizes."""
    sess = ort.InferenceSession(str(onnx32[part]), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == list(COMPONENT_IO[component][0])
    assert [o.name for o in sess.get_outputs()] == [COMPONENT_IO[component][1]]
    # Two sizes other than the tracing size: the axes really are dynamic.
    for low, full in (((144, 256), (768, 1280)), ((96, 176), (384, 704))):
        feed = component_inputs(component, low, full)
        got = sess.run(None, feed)[0]
        ref = torch_ref(model, component, feed)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["rt_plus", "rt_mv3"])
def test_other_segmenter_backbones_onnx_parity(tmp_path, name):
    """The atrous stride-32 stages of rt_plus's full Lite0 and rt_mv3's MobileNetV3 (hard-swish,
    squeeze-excite) export with dynamic sizes."""
    from vmatte.export.onnx import export_component
    from vmatte.registry import create_model

    torch.manual_seed(0)
    m = create_model(name).eval()
    path = export_component(m, "segmenter", tmp_path / "segmenter.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for low in ((144, 256), (96, 176)):
        feed = component_inputs("segmenter", low, low)
        np.testing.assert_allclose(sess.run(None, feed)[0], torch_ref(m, "segmenter", feed), atol=1e-4, rtol=0)


def test_onnx_metadata_and_checker(onnx32):
    import onnx

    from vmatte.export.onnx import read_metadata

    for comp, path in onnx32.items():
        onnx.checker.check_model(str(path))
        meta = read_metadata(path)
        assert meta["weights_sha256"] == "abc"
        assert meta["vmatte_component"] == comp
        assert meta["vmatte_precision"] == "fp32"
        assert meta["vmatte_model"] == "rt"
        m = onnx.load(str(path))
        assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
        assert not list(path.parent.glob("*.partial"))


def test_export_opset_too_old(model, tmp_path):
    from vmatte.export.onnx import export_component

    with pytest.raises(ValueError, match="opset"):
        export_component(model, "segmenter", tmp_path / "s.onnx", opset=13)


def test_onnx_fp16_export_runs(model, tmp_path):
    from vmatte.export.onnx import export_onnx, read_metadata

    paths = export_onnx(model, tmp_path, half=True)
    # The caller's model stays FP32.
    assert next(model.parameters()).dtype == torch.float32
    for comp in ("segmenter", "generator"):
        sess = ort.InferenceSession(str(paths[comp]), providers=["CPUExecutionProvider"])
        assert all(i.type == "tensor(float16)" for i in sess.get_inputs())
        feed = component_inputs(comp, (144, 256), (768, 1280))
        got = sess.run(None, {k: v.astype(np.float16) for k, v in feed.items()})[0]
        assert got.dtype == np.float16
        ref = torch_ref(model, comp, feed)
        np.testing.assert_allclose(got.astype(np.float32), ref, atol=2e-2, rtol=0)
        assert read_metadata(paths[comp])["vmatte_precision"] == "fp16"
    # The refiner's top-k may pick other cells in half precision: compare the un-refined area
    # loosely and check it runs with the right shape.
    sess = ort.InferenceSession(str(paths["refiner"]), providers=["CPUExecutionProvider"])
    feed = component_inputs("refiner", (144, 256), (768, 1280))
    got = sess.run(None, {k: v.astype(np.float16) for k, v in feed.items()})[0].astype(np.float32)
    ref = torch_ref(model, "refiner", feed)
    assert got.shape == ref.shape == (1, 1, 768, 1280)
    assert np.mean(np.abs(got - ref)) < 2e-2


def test_format_table():
    from vmatte.export import FORMATS, export_formats

    rows = export_formats()
    assert [r["format"] for r in rows] == ["onnx", "onnx-fp16", "tensorrt", "torch-tensorrt"]
    by = {r["format"]: r for r in rows}
    assert by["onnx"]["suffix"] == ".onnx" and not by["onnx"]["gpu"]
    assert by["tensorrt"]["suffix"] == ".engine" and by["tensorrt"]["gpu"] and "tensorrt" in by["tensorrt"]["requirements"]
    assert by["torch-tensorrt"]["gpu"] and "torch_tensorrt" in by["torch-tensorrt"]["requirements"]
    assert by["onnx-fp16"]["half"] and not by["onnx"]["half"]
    assert set(FORMATS) == set(by)


def test_export_unknown_format_lists_valid():
    from vmatte.errors import VmatteError
    from vmatte.export import export

    with pytest.raises(VmatteError, match="valid formats: onnx, onnx-fp16, tensorrt, torch-tensorrt"):
        export("rt", format="coreml")


def test_export_api_onnx_skips_up_to_date(random_weights, tmp_path):
    from vmatte.export import export
    from vmatte.export.onnx import read_metadata
    from vmatte.weights import file_sha256

    paths = export("rt", weights=random_weights, format="onnx", out_dir=tmp_path)
    assert set(paths) == set(COMPONENT_IO) | {PATCH_NET, *PAIRED.values()}
    assert read_metadata(paths["refiner"])["weights_sha256"] == file_sha256(random_weights)
    mtimes = {c: p.stat().st_mtime_ns for c, p in paths.items()}
    again = export("rt", weights=random_weights, format="onnx", out_dir=tmp_path)
    assert {c: p.stat().st_mtime_ns for c, p in again.items()} == mtimes  # not re-exported


def test_export_weights_for_other_model(random_weights):
    from vmatte.errors import VmatteError
    from vmatte.export import export

    with pytest.raises(VmatteError, match="is for model 'rt'"):
        export("paper", weights=random_weights, format="onnx")


def test_cli_export_onnx_writes_files(random_weights, tmp_path):
    from vmatte.cli import main

    out = tmp_path / "exp"
    rc = main(["export", "--model", "rt", "--weights", str(random_weights), "--format", "onnx", "--out", str(out)])
    assert rc == 0
    for comp in COMPONENT_IO:
        assert (out / f"{comp}.onnx").is_file()
    sess = ort.InferenceSession(str(out / "segmenter.onnx"), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"image": np.zeros((1, 3, 64, 96), np.float32)})[0].shape == (1, 1, 64, 96)


def test_cli_export_prints_paths(random_weights, tmp_path, capsys):
    from vmatte.cli import main

    out = tmp_path / "exp"
    assert main(["export", "--weights", str(random_weights), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for comp in COMPONENT_IO:
        assert f"{comp}: {out / (comp + '.onnx')}" in text


def test_cli_unknown_format(capsys):
    from vmatte.cli import main

    assert main(["export", "--format", "tflite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vmatte: error: unknown export format 'tflite'")
    assert "onnx, onnx-fp16, tensorrt, torch-tensorrt" in err


def test_cli_list_formats(capsys):
    from vmatte.cli import main

    assert main(["export", "--list-formats"]) == 0
    out = capsys.readouterr().out
    assert "torch-tensorrt" in out and ".engine" in out


def test_cli_bad_sizes(random_weights, capsys):
    from vmatte.cli import main

    assert main(["export", "--weights", str(random_weights), "--format", "tensorrt", "--sizes", "1280by720"]) == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


@pytest.mark.parametrize("part", [PATCH_NET, PATCH_NET_PAIRS])
def test_patch_net_onnx_matches_the_refiner(model, onnx32, part):
    """refiner_patches.onnx is the refiner's patch net: same cells as Refiner.refine_windows on the
    same windows, for any number of windows, with the patch plan in its metadata; so is
    refiner_patches_pairs.onnx, for any number of pairs."""
    from vmatte.export.onnx import read_metadata

    meta = read_metadata(onnx32[part])
    assert (int(meta["vmatte_patches"]), int(meta["vmatte_context"])) == (model.refiner.cfg.patches, model.refiner.cfg.context)
    assert meta.get("vmatte_window_multiple", "1") == ("2" if part == PATCH_NET_PAIRS else "1")
    sess = ort.InferenceSession(str(onnx32[part]), providers=["CPUExecutionProvider"])
    S = 64 + 2 * model.refiner.cfg.context
    rng = np.random.default_rng(3)
    for k in ((2, 10) if part == PATCH_NET_PAIRS else (1, 5)):
        img, alpha = rng.random((k, 3, S, S), dtype=np.float32), rng.random((k, 1, S, S), dtype=np.float32)
        got = sess.run(None, {"image": img, "alpha": alpha})[0]
        with torch.no_grad():
            ref = model.refiner.refine_windows(torch.from_numpy(img), torch.from_numpy(alpha)).numpy()
        assert got.shape == (k, 1, 64, 64)
        assert np.abs(got - ref).max() < 1e-4


@pytest.mark.parametrize("pairs", [False, True])
@pytest.mark.parametrize("full,low,frame", [
    ((384, 640), (96, 160), (384, 640)),  # 60 cells, the score resize an identity
    ((384, 640), (64, 96), (370, 630)),  # scores upsampled 1.5x; an unpadded frame
    ((384, 640), (128, 224), (384, 600)),  # scores downsampled
    ((256, 256), (64, 64), (250, 256)),  # 16 cells
    ((128, 192), (40, 56), (128, 192)),  # 6 cells, fewer than the budget of 32
    ((192, 320), (56, 88), (190, 320)),  # 15 cells: an odd number (the pairs pad it)
])
def test_host_refiner_matches_the_graph(onnx32, full, low, frame, pairs):
    """The onnxruntime backend's host plumbing around the patch net (plain or paired) gives the
    refiner graph's alpha: any score resize, fewer cells than the patch budget (an odd number for the
    pairs), a batch of two, and from the unpadded uint8 frame as run_matte feeds it (the graph gets
    the edge-padded frame, as prepare pads)."""
    from vmatte.backends import ModelSource, create_backend
    from vmatte.ops.patches import refine_alpha

    be = create_backend("onnxruntime", ModelSource("rt", onnx32["segmenter"], onnx32["segmenter"].parent), pairs=pairs)
    assert be.patch_plan == (32, 4)
    assert be.files[PATCH_NET] == onnx32[PATCH_NET_PAIRS if pairs else PATCH_NET]
    (H, W), (h, w), (fh, fw) = full, low, frame
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (fh, fw, 3), dtype=np.uint8)
    padded = np.pad(rgb, ((0, H - fh), (0, W - fw), (0, 0)), mode="edge")
    image = (padded.transpose(2, 0, 1)[None] * np.float32(1 / 255)).astype(np.float32)
    coarse = blob_alpha(h, w)
    graph = be.sessions["refiner"].run(None, {"image": image, "coarse": coarse})[0]
    assert np.abs(graph - be.sessions["refiner"].run(None, {"image": image, "coarse": coarse})[0]).max() == 0
    host = be.run("refiner", image=image, coarse=coarse)
    assert host.shape == graph.shape and np.abs(host - graph).max() < 1e-4
    coarse2 = np.concatenate([coarse, coarse[:, :, ::-1, ::-1].copy()])  # another subject, other cells
    image2 = np.concatenate([image, image[:, :, ::-1, ::-1].copy()])
    graph2 = be.sessions["refiner"].run(None, {"image": image2, "coarse": coarse2})[0]
    assert np.abs(be.run("refiner", image=image2, coarse=coarse2) - graph2).max() < 1e-4
    from_u8 = refine_alpha(rgb, coarse[0, 0], (H, W), *be.patch_plan, be.run_patch_net)
    assert np.abs(from_u8 - graph[0, 0]).max() < 1e-4


def test_export_without_patch_net_runs_the_refiner_graph(onnx32, tmp_path):
    """An export made before the patch net existed still runs: the refiner as one graph."""
    import shutil

    from vmatte.backends import ModelSource, create_backend

    for c in COMPONENT_IO:
        shutil.copy(onnx32[c], tmp_path / f"{c}.onnx")
    be = create_backend("onnxruntime", ModelSource("rt", tmp_path / "segmenter.onnx", tmp_path))
    assert be.patch_plan is None
    out = be.run("refiner", **component_inputs("refiner", (96, 160), (384, 640)))
    assert out.shape == (1, 1, 384, 640)
