"""The allocator setting of the frame-streaming commands (vmatte/memory.py), checked in fresh
subprocesses so the test process keeps glibc's defaults."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vmatte import memory

PROBE = "from vmatte.memory import keep_freed_buffers; print(keep_freed_buffers())"


def _run(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("VMATTE_DEFAULT_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_applied_on_glibc_unless_the_user_chose_otherwise():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert _run({}) == "True"
    assert _run({"VMATTE_DEFAULT_MALLOC": "1"}) == "False"
    assert _run({"MALLOC_MMAP_THRESHOLD_": "1000000"}) == "False"
    assert _run({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1000"}) == "False"


def test_a_no_op_off_linux(monkeypatch):
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.keep_freed_buffers() is False
