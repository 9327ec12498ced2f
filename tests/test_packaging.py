"""A non-editable install carries what the package reads at run time (weights, the sample photo)
and the licence in the SPDX form setuptools keeps supporting."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _setuptools_version() -> tuple[int, ...]:
    try:
        from importlib.metadata import version

        return tuple(int(p) for p in version("setuptools").split(".")[:2])
    except Exception:  # not installed, or an odd version string
        return (0,)


@pytest.mark.skipif(_setuptools_version() < (77,), reason="building offline needs setuptools >= 77 installed")
def test_wheel_carries_the_sample_photo_and_weights(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "runs")
    for pkg in ("vmatte", "export", "training"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=skip)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "License classifiers are deprecated" not in out.stderr and "`project.license` as a TOML table" not in out.stderr
    (wheel,) = (tmp_path / "dist").glob("vmatte-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    from vmatte.sample import PHOTO

    assert f"vmatte/data/{PHOTO.name}" in names and "vmatte/data/README.md" in names
    assert {"vmatte/weights/rt.safetensors", "vmatte/weights/rt/segmenter.onnx", "vmatte/weights/rt/segmenter.int8.onnx"} <= names
    assert "License-Expression: MIT" in meta
