"""Person-mask metrics (exact answers), `vmatte eval --masks`, the baselines' loaders and the
scipy-free matting metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from _media import fake_matter
from vmatte.ops.mask_metrics import boundary_band, mask_metrics

ROOT = Path(__file__).resolve().parents[1]


def _rect(h, w, y0, x0, y1, x1):
    m = np.zeros((h, w), np.float32)
    m[y0:y1, x0:x1] = 1
    return m


def test_mask_metrics_exact():
    gt = _rect(100, 100, 20, 20, 80, 80)  # 3600 px
    pred = _rect(100, 100, 20, 20, 80, 90)  # 4200 px: 600 px false positive
    m = mask_metrics(pred, gt)
    assert m["iou"] == pytest.approx(3600 / 4200)
    assert m["fp"] == pytest.approx(600 / 10000) and m["fn"] == 0.0
    assert mask_metrics(gt, gt) == {"iou": 1.0, "biou": 1.0, "fp": 0.0, "fn": 0.0}
    # a prediction that is all the inside of the label but its border band scores IoU high and boundary IoU low
    inner = _rect(100, 100, 23, 23, 77, 77)
    m = mask_metrics(inner, gt)
    assert m["iou"] == pytest.approx(54 * 54 / 3600)
    assert m["biou"] < m["iou"] - 0.3 and m["fn"] == pytest.approx((3600 - 54 * 54) / 10000)
    assert mask_metrics(np.zeros((8, 8)), np.zeros((8, 8)))["iou"] == 1.0  # both empty
    with pytest.raises(ValueError, match="one size"):
        mask_metrics(np.zeros((4, 4)), np.zeros((4, 5)))


def test_boundary_band_width_and_image_edge():
    m = _rect(50, 50, 10, 10, 40, 40).astype(bool)
    band = boundary_band(m, 3)
    assert band.sum() == 30 * 30 - 24 * 24  # a ring 3 px wide, corners included (3x3 erosions)
    assert band[10:13, 20].all() and not band[13:37, 25].any() and band[25, 37:40].all()
    assert not band[~m].any()  # only pixels of the mask
    full = np.ones((20, 20), bool)
    assert boundary_band(full, 2).sum() == 400 - 16 * 16  # the image edge is a contour
    disc = np.zeros((41, 41), np.uint8)
    cv2.circle(disc, (20, 20), 15, 1, -1)
    # chessboard distance, as repeated 3x3 erosions give (Cheng et al.'s reference), not Euclidean
    want = disc.astype(bool) & ~cv2.erode(np.pad(disc, 1), np.ones((3, 3), np.uint8), iterations=4)[1:-1, 1:-1].astype(bool)
    np.testing.assert_array_equal(boundary_band(disc.astype(bool), 4), want)


def test_boundary_iou_band_is_rounded_2_percent_of_the_diagonal():
    # 300x400: diagonal 500, d = 10. A prediction 10 px short at the right: its band and the label's
    # overlap on three sides.
    gt = _rect(300, 400, 50, 50, 250, 350)
    pred = _rect(300, 400, 50, 50, 250, 340)
    g = boundary_band(gt > 0.5, 10)
    p = boundary_band(pred > 0.5, 10)
    want = (g & p).sum() / (g | p).sum()
    assert mask_metrics(pred, gt)["biou"] == pytest.approx(want)
    assert mask_metrics(pred, gt)["biou"] != pytest.approx(mask_metrics(pred, gt, band_frac=0.01)["biou"])


def _mask_set(root: Path, n=3) -> list[np.ndarray]:
    (root / "image").mkdir(parents=True)
    (root / "mask").mkdir(parents=True)
    gts = []
    for i in range(n):
        gt = _rect(40, 30, 5 + i, 5, 35, 25)
        cv2.imwrite(str(root / "image" / f"p{i}.jpg"), np.full((40, 30, 3), 128, np.uint8))
        cv2.imwrite(str(root / "mask" / f"p{i}.png"), (gt * 255).astype(np.uint8))
        gts.append(gt)
    return gts


def test_evaluate_dir_masks(tmp_path):
    from vmatte.evaluate import evaluate_dir, format_table

    gts = _mask_set(tmp_path)
    it = iter(gts)
    res = evaluate_dir(tmp_path, lambda rgb: next(it) * 0.9, masks=True)  # 0.9 > 0.5: the same masks
    assert res.count == 3 and res.mean == {"iou": 1.0, "biou": 1.0, "fp": 0.0, "fn": 0.0}
    res = evaluate_dir(tmp_path, lambda rgb: np.ones(rgb.shape[:2]), masks=True)
    assert res.mean["fn"] == 0.0 and res.mean["fp"] > 0.3
    table = format_table({"all": res})
    assert table.splitlines()[0] == "| method | images | IoU | boundary IoU | FP area % | FN area % |"
    assert f"| all | 3 | {res.mean['iou']:.4f} |" in table


def test_evaluate_dir_refuses_0_1_masks(tmp_path):
    from vmatte.evaluate import EvalDataError, evaluate_dir

    _mask_set(tmp_path, n=1)
    cv2.imwrite(str(tmp_path / "mask" / "p0.png"), _rect(40, 30, 5, 5, 35, 25).astype(np.uint8))  # 0/1, not 0/255
    with pytest.raises(EvalDataError, match="only 0 and 1"):
        evaluate_dir(tmp_path, lambda rgb: np.zeros(rgb.shape[:2]), masks=True)


def _rect_matter(rgb):
    m = np.zeros(rgb.shape[:2], np.float32)
    m[5:35, 5:25] = 1
    return m


def test_eval_masks_command(tmp_path, monkeypatch, capsys):
    import vmatte.api
    from vmatte.cli import main

    monkeypatch.setattr(vmatte.api, "Matter", fake_matter(_rect_matter))
    _mask_set(tmp_path / "ds")
    out_json = tmp_path / "r.json"
    assert main(["eval", str(tmp_path / "ds"), "--masks", "--compare-mask", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "| vmatte rt (fake) | 3 | " in out and "boundary IoU" in out
    data = json.loads(out_json.read_text())
    assert data["vmatte rt (fake)"]["per_image"][0] == {"name": "p0", "iou": 1.0, "biou": 1.0, "fp": 0.0, "fn": 0.0}


@pytest.mark.parametrize("flag", ["--compare-rvm", "--compare-modnet", "--compare-mediapipe"])
def test_eval_bad_baseline_file_fails_first(tmp_path, monkeypatch, capsys, flag):
    """A wrong --compare-* file is one line, exit 2, before any model runs or any output is written."""
    import vmatte.api
    from vmatte.cli import main

    ran = []
    monkeypatch.setattr(vmatte.api, "Matter", lambda **kw: ran.append(kw) or fake_matter(_rect_matter)())
    _mask_set(tmp_path / "ds")
    bogus = tmp_path / "not_a_model.mp4"
    bogus.write_bytes(b"\x00\x00\x00\x18ftypmp42 not a model")
    out_json = tmp_path / "r.json"
    for path in (bogus, tmp_path / "missing.onnx"):
        rc = main(["eval", str(tmp_path / "ds"), flag, str(path), "--json", str(out_json)])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("vmatte: error:") and len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err
    assert not ran and not out_json.exists()


def _tiny_modnet(path: Path) -> None:
    """An ONNX model shaped like MODNet: one [1,3,H,W] input, [1,1,H,W] output (the channel mean
    mapped back to 0..1)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, "h", "w"])
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], axes=[1], keepdims=1),
             helper.make_node("Mul", ["m", "half"], ["m2"]),
             helper.make_node("Add", ["m2", "half"], ["output"])]
    g = helper.make_graph(nodes, "tiny", [x], [y], initializer=[half])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_modnet_wrapper_on_a_tiny_model(tmp_path):
    from vmatte.modnet import MODNetMatter, modnet_size

    assert modnet_size(830, 550) == (768, 512) and modnet_size(720, 1280) == (512, 896)
    _tiny_modnet(tmp_path / "m.onnx")
    rgb = np.zeros((50, 70, 3), np.uint8)
    rgb[:, 35:] = 255  # right half white -> alpha 1, left half black -> alpha 0
    a = MODNetMatter(tmp_path / "m.onnx", short_side=64).matte(rgb)
    assert a.shape == (50, 70) and a.dtype == np.float32
    assert a[:, :30].max() < 0.05 and a[:, 40:].min() > 0.95


def test_teacher_labels_cached_and_named(tmp_path):
    from training.teacher import label_folder, teacher_id, teacher_kind
    from vmatte.errors import VmatteError

    _tiny_modnet(tmp_path / "m.onnx")
    assert teacher_kind(tmp_path / "m.onnx") == "modnet"
    for d, stems in (("a", ("1", "2")), ("b", ("2",))):
        (tmp_path / d).mkdir()
        for s in stems:
            cv2.imwrite(str(tmp_path / d / f"{s}.jpg"), np.full((40, 30, 3), 255, np.uint8))
    out = label_folder(tmp_path / "a", tmp_path / "m.onnx", tmp_path / "cache", threads=1)
    assert out.name == teacher_id(tmp_path / "m.onnx") and out.name.startswith("modnet-")
    lab = cv2.imread(str(out / "1.png"), cv2.IMREAD_UNCHANGED)
    assert lab.shape == (40, 30) and lab.min() >= 250  # white photo -> alpha 1
    before = (out / "1.png").stat().st_mtime_ns
    label_folder(tmp_path / "a", tmp_path / "m.onnx", tmp_path / "cache", threads=1)  # resumes: nothing redone
    assert (out / "1.png").stat().st_mtime_ns == before
    with pytest.raises(VmatteError, match="stem"):  # b/2.jpg would overwrite a/2.jpg's label
        label_folder(tmp_path / "b", tmp_path / "m.onnx", tmp_path / "cache", threads=1)
    bogus = tmp_path / "x.onnx"
    bogus.write_text("not onnx")
    with pytest.raises(VmatteError, match="not a readable ONNX"):
        teacher_kind(bogus)


def test_metrics_match_scipy_reference():
    """Grad and Conn run on OpenCV (no scipy on the light install); scipy, where present, agrees."""
    ndimage = pytest.importorskip("scipy.ndimage")
    from vmatte.ops import metrics as M

    rng = np.random.default_rng(1)
    a = rng.random((41, 57))
    hx, hy = M.gauss_gradient_kernels()
    gx, gy = M.gauss_gradient(a)
    np.testing.assert_allclose(gx, ndimage.convolve(a, hx, mode="nearest"), atol=1e-12)
    np.testing.assert_allclose(gy, ndimage.convolve(a, hy, mode="nearest"), atol=1e-12)
    b = rng.random((60, 60)) > 0.55
    labels, n = ndimage.label(b, structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    sizes = np.bincount(labels.ravel())[1:]
    assert M._largest_component(b).sum() == sizes.max()


def test_metrics_import_without_scipy():
    code = ("import sys; sys.modules['scipy'] = None; import vmatte.ops.metrics as M, numpy as np; "
            "print(round(M.conn_error(np.eye(5), np.zeros((5, 5))), 6))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
