"""Process-wide allocator setting for the commands that stream frames (`vmatte process`,
`vmatte webcam`) and the batch worker processes; the library API never applies it by itself.

Every frame allocates and frees several multi-MB arrays (OpenCV and onnxruntime outputs, the
compositor's products). glibc serves blocks above its mmap threshold with fresh mappings and
unmaps them on free, so each one page-faults again on first touch; its threshold does rise after
the first such free, but a run spends its first hundreds of frames (or all of them) paying it.
Raising the threshold and the trim threshold up front keeps freed frame buffers in the heap for
reuse: `vmatte process` at 720p on 2 cores, first job in a fresh process, 32.9 -> 34.9 fps (three
runs each, docs/benchmarks.md), for about 20 MB more peak memory. VMATTE_DEFAULT_MALLOC=1 (or
glibc's own MALLOC_*_ / GLIBC_TUNABLES malloc settings) leaves the allocator alone.
"""
from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
# 64 MB where glibc takes it; older releases cap the threshold at 32 MB on 64-bit (mallopt(3)).
MMAP_THRESHOLDS = (64 << 20, 32 << 20)
TRIM_THRESHOLD = 256 << 20


def _user_chose() -> bool:
    env = os.environ
    return (env.get("VMATTE_DEFAULT_MALLOC", "") not in ("", "0")
            or any(k in env for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"))
            or "glibc.malloc." in env.get("GLIBC_TUNABLES", ""))


def keep_freed_buffers() -> bool:
    """Apply the setting on Linux with glibc unless the user chose otherwise; returns whether the
    mmap threshold was raised."""
    if not sys.platform.startswith("linux") or _user_chose():
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (ImportError, OSError, AttributeError):  # no ctypes, or not glibc (musl, ...): leave it
        return False
    applied = next((t for t in MMAP_THRESHOLDS if mallopt(M_MMAP_THRESHOLD, t) == 1), None)
    trimmed = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    log.debug("malloc: mmap threshold %s, trim threshold %s", f"{applied >> 20} MB" if applied else "unchanged",
              f"{TRIM_THRESHOLD >> 20} MB" if trimmed else "unchanged")
    return applied is not None
