"""The shipped default model: weights load, ONNX files are exports of exactly these weights, and the
model is trained (checked on real photos when ../shared/data is present)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import shared_data
from vmatte import Matter
from vmatte.export.onnx import read_metadata
from vmatte.weights import file_sha256, read_header, shipped_onnx_dir, shipped_weights

# the refiner's patch net too (onnxruntime's host refiner), and the paired files (AVX-512)
COMPONENTS = ("segmenter", "generator", "refiner", "refiner_patches", "generator_pairs", "refiner_patches_pairs")


def test_shipped_weights_have_a_card():
    meta = read_header(shipped_weights("rt"))
    card = json.loads(meta["card"])
    assert meta["model"] == "rt"
    for key in ("data", "teacher", "steps", "metrics"):
        assert key in card, f"model card lacks {key!r}"


def test_shipped_onnx_matches_weights_and_graphs():
    from vmatte.backends.base import GRAPH_VERSION

    sha = file_sha256(shipped_weights("rt"))
    for c in COMPONENTS:
        meta = read_metadata(shipped_onnx_dir("rt") / f"{c}.onnx")
        assert meta["weights_sha256"] == sha, f"{c}.onnx is stale: re-run python -m vmatte.training.release"
        assert meta.get("vmatte_graph_version") == str(GRAPH_VERSION), f"{c}.onnx holds an older graph: re-export it"


@pytest.mark.parametrize("shape", [(200, 300), (720, 1280)])  # refiner skipped / run
def test_shipped_onnx_parity_with_torch(blob_frame, shape):
    pytest.importorskip("torch")
    import cv2

    frame = cv2.resize(blob_frame, shape[::-1], interpolation=cv2.INTER_LINEAR)
    a = Matter("rt", backend="onnxruntime").matte(frame)
    b = Matter("rt", backend="torch").matte(frame)
    assert np.abs(a - b).max() < 1e-3


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.mark.skipif(shared_data() is None, reason="../shared/data is not present")
def test_shipped_model_finds_people():
    """On real portrait photos with person masks, the matte overlaps the mask well."""
    root = shared_data() / "people" / "human_seg_290"
    m = Matter("rt", backend="onnxruntime")
    ious = []
    for stem in ("1", "2", "3", "4", "5", "6"):  # training photos; any trained model must get these
        img = cv2.imread(str(root / "Training_Images" / f"{stem}.jpg"))
        gt = cv2.imread(str(root / "Ground_Truth" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
        if img is None or gt is None:
            continue
        a = m.matte(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        gt = cv2.resize(gt, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_NEAREST)
        ious.append(_iou(a > 0.5, gt > 127))
    assert ious, "no readable photos"
    assert np.median(ious) > 0.7, ious
