"""Weights files: round trip, damaged and mismatched files give clear errors."""
from __future__ import annotations

import pytest
import torch

from vmatte.errors import VmatteError
from vmatte.registry import create_model
from vmatte.weights import load_weights, read_header, save_weights


def test_round_trip(tmp_path):
    torch.manual_seed(1)
    a = create_model("rt")
    p = save_weights(a, tmp_path / "w.safetensors", {"steps": 3})
    b = create_model("rt")
    card = load_weights(b, p)
    assert card == {"steps": 3}
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    assert read_header(p)["model"] == "rt"


def test_damaged_file(tmp_path):
    p = save_weights(create_model("rt"), tmp_path / "w.safetensors")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(VmatteError, match="damaged"):
        load_weights(create_model("rt"), p)
    (tmp_path / "junk.safetensors").write_bytes(b"not a weights file at all")
    with pytest.raises(VmatteError, match="damaged|not a safetensors"):
        load_weights(create_model("rt"), tmp_path / "junk.safetensors")


def test_missing_and_mismatched(tmp_path):
    with pytest.raises(VmatteError, match="not found"):
        load_weights(create_model("rt"), tmp_path / "none.safetensors")
    p = save_weights(create_model("rt"), tmp_path / "w.safetensors")
    with pytest.raises(VmatteError, match="for model 'rt', not 'paper'"):
        load_weights(create_model("paper"), p)


def test_foreign_safetensors(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "f.safetensors"))
    with pytest.raises(VmatteError, match="not a vmatte weights file"):
        read_header(tmp_path / "f.safetensors")


def test_saved_weights_are_readable_by_everyone(tmp_path):
    """safetensors writes 0600; a file released into the package must be world-readable."""
    import stat

    p = save_weights(create_model("rt"), tmp_path / "w.safetensors")
    assert p.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH) == stat.S_IRGRP | stat.S_IROTH
    from vmatte.weights import shipped_weights

    assert shipped_weights("rt").stat().st_mode & stat.S_IROTH
