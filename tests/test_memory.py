"""The CLI's allocator setting: applied on glibc, skipped when the user set glibc's own knobs."""
from __future__ import annotations

import sys

import pytest

from vmatte import memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_keep_freed_buffers_applies_and_respects_the_users_setting(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        pytest.skip("not glibc")
    assert memory.keep_freed_buffers() is True
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1000000")
    assert memory.keep_freed_buffers() is False


def test_keep_freed_buffers_is_a_no_op_off_linux(monkeypatch):
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.keep_freed_buffers() is False
