"""Matter: the Python API over every CPU backend."""
from __future__ import annotations

import numpy as np
import pytest

from vmatte import Matter
from vmatte.errors import VmatteError
from vmatte.ops.sizes import lowres_size, padded_size


def test_sizes():
    assert lowres_size(720, 1280, 256) == (144, 256)
    assert lowres_size(100, 50, 256) == (96, 48)  # never upscales; rounds to 16
    assert padded_size(720, 1280) == (768, 1280)
    assert padded_size(1, 65) == (64, 128)


@pytest.mark.parametrize("size", [96, None])  # refiner run / skipped at these frame sizes
@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_matte_any_size(backend, size, random_weights, blob_frame, tmp_path, monkeypatch):
    monkeypatch.setenv("VMATTE_CACHE", str(tmp_path))
    m = Matter("rt", backend=backend, weights=random_weights, size=size)
    for frame in (blob_frame, blob_frame[:77, :131], np.ascontiguousarray(blob_frame.transpose(1, 0, 2))):
        a = m.matte(frame)
        assert a.shape == frame.shape[:2] and a.dtype == np.float32
        assert 0 <= a.min() and a.max() <= 1
    assert m.segment(blob_frame).shape == blob_frame.shape[:2]


@pytest.mark.parametrize("size", [96, None])  # refiner run / skipped
def test_backends_agree(size, random_weights, blob_frame, tmp_path, monkeypatch):
    monkeypatch.setenv("VMATTE_CACHE", str(tmp_path))
    a = Matter("rt", backend="onnxruntime", weights=random_weights, size=size).matte(blob_frame)
    b = Matter("rt", backend="torch", weights=random_weights, size=size).matte(blob_frame)
    assert np.abs(a - b).max() < 1e-3


def test_bad_inputs(random_weights):
    m = Matter("rt", backend="torch", weights=random_weights)
    with pytest.raises(ValueError, match="uint8"):
        m.matte(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(TypeError):
        m.matte([[1, 2, 3]])
    with pytest.raises(ValueError, match="too small"):
        m.matte(np.zeros((4, 4, 3), np.uint8))


def test_unknown_model_and_backend(random_weights):
    with pytest.raises(VmatteError, match="valid models"):
        Matter("nope")
    with pytest.raises(VmatteError, match="valid backends"):
        Matter("rt", backend="nope", weights=random_weights)


def test_results_are_independent_arrays(random_weights, blob_frame, tmp_path, monkeypatch):
    """Backends reuse output buffers; each matte the API returns must be the caller's own array."""
    monkeypatch.setenv("VMATTE_CACHE", str(tmp_path))
    m = Matter("rt", backend="onnxruntime", weights=random_weights, size=64)  # small enough for the refiner to run
    frame = np.ascontiguousarray(np.broadcast_to(blob_frame[:128, :192], (128, 192, 3)))  # whole cells: no crop
    a = m.matte(frame)
    keep = a.copy()
    m.matte(np.ascontiguousarray(frame[::-1]))
    assert a.flags.owndata and np.array_equal(a, keep)


def test_low_res_input_covers_the_padded_frame():
    """The refiner upsamples the coarse alpha onto the padded frame, so the low-resolution input
    must be a downscale of the padded frame: an edge at column x must land at x after the round
    trip (the frame is 394 wide, padded to 448)."""
    from vmatte.api import prepare

    rgb = np.zeros((200, 394, 3), np.uint8)
    rgb[:, :197] = 255
    full, low = prepare(rgb, 128)
    row = low[0, 0, low.shape[2] // 2]  # [w]
    edge_low = np.argmax(row < 0.5)  # first dark low-res column
    x = edge_low * full.shape[3] / low.shape[3]
    assert abs(x - 197) <= full.shape[3] / low.shape[3] + 1


def test_weights_of_another_model_are_refused(tmp_path):
    import torch

    from vmatte.registry import create_model
    from vmatte.weights import save_weights

    torch.manual_seed(0)
    p = save_weights(create_model("paper"), tmp_path / "paper.safetensors")
    with pytest.raises(VmatteError, match="is for model 'paper', not 'rt'"):
        Matter("rt", backend="torch", weights=p)


@pytest.mark.parametrize("size", [0, -5, 32, 63, 8193, 100000])
def test_size_out_of_range(random_weights, size):
    with pytest.raises(VmatteError, match=f"--size {size} is out of range; use 64 to 8192"):
        Matter("rt", backend="torch", weights=random_weights, size=size)


def test_refiner_runs_only_when_the_frame_is_enough_larger_than_the_generator(random_weights):
    """Small frames skip the refiner (the generator already saw them near full size) and get the
    coarse alpha upsampled as the refiner would have upsampled it; large frames are refined."""
    from vmatte.api import needs_refiner

    m = Matter("rt", backend="torch", weights=random_weights, size=256)
    calls: list[str] = []
    run = m.backend.run
    m.backend.run = lambda comp, **kw: (calls.append(comp), run(comp, **kw))[1]
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    a = m.matte(small)
    assert calls == ["segmenter", "generator"] and a.shape == (240, 320)
    # The skip path gives the upsampled coarse alpha, clipped, over the frame.
    from vmatte.api import prepare

    import torch

    _, low = prepare(small, 256, full=False)
    coarse = torch.as_tensor(np.asarray(run("generator", image=low, mask=run("segmenter", image=low))))
    want = torch.nn.functional.interpolate(coarse, size=(256, 320), mode="bilinear", align_corners=False)
    assert np.abs(a - want[0, 0, :240].clamp(0, 1).numpy()).max() < 1e-4  # as the refiner upsamples
    calls.clear()
    m.matte(rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8))
    assert calls == ["segmenter", "generator", "refiner"]
    assert not needs_refiner((256, 320), (208, 256)) and needs_refiner((768, 1280), (160, 256))


def test_refine_patches_budget_on_onnxruntime(blob_frame):
    """The shipped export's refiner runs on the host: its cell budget changes per call; fewer cells
    change only the border, 0 leaves the plain upsample of the coarse alpha."""
    import cv2

    frame = cv2.resize(blob_frame, (1280, 720), interpolation=cv2.INTER_LINEAR)  # refined at 720p
    m = Matter("rt", backend="onnxruntime")
    assert m.refine_patches == m.config["refiner"]["patches"] == 32
    full = m.matte(frame)
    m.refine_patches = 0
    none = m.matte(frame)
    assert 0 < np.abs(full - none).max() and (np.abs(full - none) > 1e-6).mean() < 0.2  # cells of 64x64 only
    m.refine_patches = 32
    np.testing.assert_array_equal(m.matte(frame), full)
    assert Matter("rt", backend="onnxruntime", refine_patches=8).refine_patches == 8
    for bad in (-1, 5000, 2.5, True):
        with pytest.raises(VmatteError, match="refine_patches .* is out of range"):
            m.refine_patches = bad


def test_refine_patches_needs_onnxruntime(random_weights):
    pytest.importorskip("torch")
    m = Matter("rt", backend="torch", weights=random_weights)
    assert m.refine_patches is None
    with pytest.raises(VmatteError, match="needs the onnxruntime backend"):
        m.refine_patches = 8
