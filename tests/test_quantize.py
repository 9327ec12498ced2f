"""int8 (onnxruntime QDQ) as an opt-in CPU precision: quantising an export, loading the int8 files,
the errors when they are missing or the backend cannot run them, and the release step."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from vmatte.backends.base import PATCH_NET  # noqa: E402
from vmatte.errors import VmatteError  # noqa: E402
from vmatte.export.quantize import PARTS  # noqa: E402

SIDES = (160, 320)  # small calibration framings: the test stays fast


def _photo(seed: int, h: int = 120, w: int = 96) -> np.ndarray:
    """A textured frame with a bright ellipse 'person'."""
    rng = np.random.default_rng(seed)
    img = (rng.random((h, w, 3)) * 90 + 30).astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    img[((yy - 0.6 * h) / (0.35 * h)) ** 2 + ((xx - w / 2) / (0.25 * w)) ** 2 < 1] = (210, 170, 140)
    return img


@pytest.fixture(scope="module")
def int8_dir(random_weights, tmp_path_factory):
    """A random-weights FP32 export and its int8 files."""
    from vmatte.export.onnx import export_onnx
    from vmatte.export.quantize import quantize_model
    from vmatte.registry import create_model
    from vmatte.weights import load_weights

    m = create_model("rt")
    load_weights(m, random_weights)
    out = tmp_path_factory.mktemp("q")
    export_onnx(m.eval(), out, metadata={"weights_sha256": "abc"})
    quantize_model(out, [_photo(i) for i in range(4)], 128, "four test photos", sides=SIDES)
    return out


def test_quantised_export_is_close_to_fp32(int8_dir):
    import onnx
    import onnxruntime as ort

    from vmatte.export.quantize import Pipeline, int8_path
    from vmatte.weights import file_sha256

    from vmatte.export.quantize import NODE_PREFIX, nodes_to_quantize

    pipe = Pipeline(int8_dir, 128)
    for c in ("refiner", PATCH_NET):  # the patch network only: inputs, normalisation and output stay float
        assert nodes_to_quantize(int8_dir / f"{c}.onnx", NODE_PREFIX[c])
        g = onnx.load(str(int8_path(int8_dir, c))).graph
        inputs, outputs = {i.name for i in g.input}, {o.name for o in g.output}
        assert not [n.name for n in g.node if n.op_type == "QuantizeLinear" and set(n.input) & inputs], c
        assert not [n.name for n in g.node if n.op_type == "DequantizeLinear" and set(n.output) & outputs], c
    for c in PARTS:
        meta = {p.key: p.value for p in onnx.load(str(int8_path(int8_dir, c))).metadata_props}
        assert meta["vmatte_precision"] == "int8" and meta["weights_sha256"] == "abc"
        assert meta["fp32_sha256"] == file_sha256(int8_dir / f"{c}.onnx")
        assert json.loads(meta["calibration"])["sources"] == "four test photos"
        ops = {n.op_type for n in onnx.load(str(int8_path(int8_dir, c))).graph.node}
        assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    q = {c: ort.InferenceSession(str(int8_path(int8_dir, c)), opts, providers=["CPUExecutionProvider"]) for c in PARTS}
    fp32 = {**pipe.sessions, PATCH_NET: ort.InferenceSession(str(int8_dir / f"{PATCH_NET}.onnx"), opts, providers=["CPUExecutionProvider"])}
    for seed in (10, 11):  # frames it was not calibrated on
        feeds = {**pipe.feeds(_photo(seed, 144, 176)), **pipe.feeds(_photo(seed, 144, 176), upto=PATCH_NET)}
        assert set(feeds) == set(PARTS)
        for c, feed in feeds.items():
            ref, got = fp32[c].run(None, feed)[0], q[c].run(None, feed)[0]
            assert got.shape == ref.shape
            assert np.abs(got - ref).mean() < 0.005 and np.abs(got - ref).max() < 0.1, c


def test_missing_onnx_is_a_one_line_error(monkeypatch):
    import sys

    from vmatte.export.quantize import require_onnx

    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(VmatteError, match=r'pip install "vmatte\[torch\]"') as e:
        require_onnx()
    assert "\n" not in str(e.value)


def test_framings_are_the_frame_and_webcam_crops():
    from vmatte.export.quantize import framings

    views = framings(np.zeros((830, 550, 3), np.uint8), (640, 1280))
    assert views[0].shape == (640, 424, 3)
    assert views[1].shape == (720, 1280, 3)  # a 16:9 crop of a portrait photo


def test_precision_int8_loads_the_int8_files(random_weights, int8_dir, tmp_path, monkeypatch):
    import shutil

    from vmatte import Matter

    monkeypatch.setenv("VMATTE_CACHE", str(tmp_path))
    fp32 = Matter("rt", backend="onnxruntime", weights=random_weights, size=64)  # exports into the cache; refines 144x176
    onnx_dir = fp32.source.onnx_dir
    for p in int8_dir.glob("*.int8.onnx"):
        shutil.copy(p, onnx_dir / p.name)
    m = Matter("rt", weights=random_weights, precision="int8", size=64)  # auto -> onnxruntime
    assert m.backend_name == "onnxruntime"
    assert {c: p.name for c, p in m.backend.files.items()} == {c: f"{c}.int8.onnx" for c in PARTS}
    frame = _photo(3, 144, 176)
    a, b = m.matte(frame), fp32.matte(frame)
    assert a.shape == b.shape == (144, 176) and np.abs(a - b).mean() < 0.05


def test_missing_int8_file_is_a_one_line_error(random_weights, tmp_path, monkeypatch):
    from vmatte import Matter

    monkeypatch.setenv("VMATTE_CACHE", str(tmp_path))
    with pytest.raises(VmatteError) as e:
        Matter("rt", backend="onnxruntime", weights=random_weights, precision="int8")
    msg = str(e.value)
    assert "\n" not in msg and "segmenter.int8.onnx is missing" in msg
    assert "python -m vmatte.export.quantize" in msg and "--precision fp32" in msg


@pytest.mark.parametrize("backend,precision,match", [("torch", "int8", "onnxruntime backend only"),
                                                     ("tensorrt", "int8", "onnxruntime backend only"),
                                                     ("onnxruntime", "fp16", "precision 'fp16' is not known")])
def test_other_backends_and_precisions_are_refused(random_weights, backend, precision, match):
    from vmatte import Matter

    with pytest.raises(VmatteError, match=match) as e:
        Matter("rt", backend=backend, weights=random_weights, precision=precision)
    assert "\n" not in str(e.value)


def test_cli_commands_take_precision():
    from vmatte.cli import build_parser

    p = build_parser()
    assert p.parse_args(["process", "a.mp4", "-o", "b.mp4"]).precision == "fp32"
    assert p.parse_args(["process", "a.mp4", "-o", "b.mp4", "--precision", "int8"]).precision == "int8"
    assert p.parse_args(["eval", "dir", "--precision", "int8"]).precision == "int8"
    assert p.parse_args(["webcam", "--precision", "int8"]).precision == "int8"


def test_calibration_never_uses_held_out_data(tmp_path):
    from pathlib import Path

    from vmatte.training.int8 import check_sources, heldout_filter

    split = tmp_path / "split.json"
    split.write_text(json.dumps({"heldout_subjects": ["hs290_110", "ccp_0002"]}))
    skip = heldout_filter([tmp_path / "val"], split)
    assert skip(Path("data/human_seg_290/Training_Images/110.jpg")) and skip(Path("ccp/labelled/images/0002.jpg"))
    assert not skip(Path("data/human_seg_290/Training_Images/111.jpg"))
    assert skip(tmp_path / "val" / "image" / "x.png")
    with pytest.raises(VmatteError, match="overlaps the validation set"):
        check_sources([tmp_path / "val" / "image"], [tmp_path / "val"])


def _labelled_set(root, masks: bool, n: int = 2):
    (root / "image").mkdir(parents=True)
    (root / "alpha").mkdir()
    for i in range(n):
        img = _photo(20 + i, 96, 128)
        a = (np.all(img == (210, 170, 140), axis=2) * 255).astype(np.uint8)
        if not masks:
            a = cv2.GaussianBlur(a, (7, 7), 0)
        cv2.imwrite(str(root / "image" / f"s{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "alpha" / f"s{i}.png"), a)
    return root


def test_release_writes_int8_files_and_parity(tmp_path):
    from vmatte.export.onnx import read_metadata
    from vmatte.registry import create_model
    from vmatte.training.release import release
    from vmatte.weights import file_sha256, read_header

    torch.manual_seed(0)
    torch.save({"model": create_model("rt").state_dict(), "model_name": "rt", "stage": "matting", "step": 1},
               tmp_path / "c.pt")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(3):
        cv2.imwrite(str(calib / f"{i}.jpg"), _photo(30 + i, 90, 70))
    dev, val = _labelled_set(tmp_path / "dev", masks=False), _labelled_set(tmp_path / "val", masks=True)
    out = release(tmp_path / "c.pt", tmp_path / "w", devset=dev, calib=[calib], parity_set=val, calib_count=3)
    card = json.loads(read_header(out)["card"])
    entry = card["int8"]
    assert entry["calibration"]["frames"] == 3 and "calib: 3 of 3 photos" in entry["calibration"]["sources"]
    par = entry["parity"]
    assert par["dev"]["labels"] == "alpha" and set(par["dev"]["fp32"]) == {"mse", "sad"}
    assert par["val"]["labels"] == "masks" and set(par["val"]["int8"]) == {"iou", "biou"}
    assert par["dev"]["images"] == 2 and 0 <= par["dev"]["max_abs_alpha_diff"] <= 1
    assert isinstance(par["val"]["within_2pct"], bool)
    sha = file_sha256(out)  # the card was rewritten: every ONNX file names the final weights
    for c in PARTS:
        assert read_metadata(tmp_path / "w" / "rt" / f"{c}.onnx")["weights_sha256"] == sha
        meta = read_metadata(tmp_path / "w" / "rt" / f"{c}.int8.onnx")
        assert meta["fp32_sha256"] == file_sha256(tmp_path / "w" / "rt" / f"{c}.onnx") and meta["weights_sha256"] == sha


def test_shipped_int8_files_match_the_shipped_fp32_files():
    from vmatte.export.onnx import read_metadata
    from vmatte.weights import file_sha256, shipped_onnx_dir

    import onnx

    d = shipped_onnx_dir("rt")
    g = onnx.load(str(d / f"{PATCH_NET}.int8.onnx")).graph  # the patch network only, as the refiner's
    assert not [n.name for n in g.node if n.op_type == "QuantizeLinear" and set(n.input) & {i.name for i in g.input}]
    for c in PARTS:
        meta = read_metadata(d / f"{c}.int8.onnx")
        assert meta["fp32_sha256"] == file_sha256(d / f"{c}.onnx"), (
            f"{c}.int8.onnx is stale: re-run python -m vmatte.training.release vmatte/weights/rt.safetensors --keep-card "
            "--calib ... (docs/benchmarks.md, int8)")


def test_shipped_int8_mattes_like_fp32(blob_frame):
    import cv2

    from vmatte import Matter

    frame = cv2.resize(blob_frame, (1280, 720), interpolation=cv2.INTER_LINEAR)  # the refiner runs at 720p
    a = Matter("rt", precision="int8").matte(frame)
    b = Matter("rt", backend="onnxruntime").matte(frame)
    assert np.abs(a - b).mean() < 0.01


def test_restamp_records_the_new_sha_in_every_file(int8_dir, tmp_path):
    """After a header-only change of the weights, every FP32 file (the paired ones too) carries the
    new sha256 and every int8 file its FP32 twin's."""
    import shutil

    from vmatte.backends.base import PAIRED
    from vmatte.export.onnx import read_metadata
    from vmatte.export.quantize import restamp
    from vmatte.weights import file_sha256

    d = tmp_path / "copy"
    shutil.copytree(int8_dir, d)
    restamp(d, "f" * 64)
    for part in ("segmenter", "generator", "refiner", PATCH_NET, *PAIRED.values()):
        assert read_metadata(d / f"{part}.onnx")["weights_sha256"] == "f" * 64, part
    for part in ("segmenter", "generator", "refiner", PATCH_NET):
        meta = read_metadata(d / f"{part}.int8.onnx")
        assert meta["weights_sha256"] == "f" * 64 and meta["fp32_sha256"] == file_sha256(d / f"{part}.onnx")
