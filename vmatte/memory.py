"""Process-wide allocator setting for the CLI and its worker processes (not applied by the library).

Every frame allocates and frees several multi-MB arrays (OpenCV and onnxruntime outputs, the
compositor's products). glibc serves blocks above its mmap threshold with fresh mappings and
unmaps them on free, so each one page-faults again on first touch; its threshold does rise after
the first such free, but a run spends its first hundreds of frames (or all of them) paying it.
Raising the threshold and the trim threshold up front keeps freed frame buffers in the heap for
reuse: `vmatte process` at 720p on 2 cores, first run in a fresh process, 32.9 -> 34.9 fps (three
runs each, docs/benchmarks.md), for about 20 MB more peak memory.
"""
from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
MMAP_THRESHOLD = 64 << 20  # blocks up to 64 MB (a 4K float frame is 100 MB: still mapped)
TRIM_THRESHOLD = 256 << 20


def keep_freed_buffers() -> bool:
    """Apply the setting on Linux with glibc unless the user set MALLOC_MMAP_THRESHOLD_ or
    MALLOC_TRIM_THRESHOLD_ (glibc's own environment knobs); returns whether it was applied."""
    if not sys.platform.startswith("linux") or any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):  # not glibc (musl, ...): leave the allocator as it is
        return False
    log.debug("malloc: mmap threshold %d MB, trim threshold %d MB (%s)", MMAP_THRESHOLD >> 20, TRIM_THRESHOLD >> 20,
              "applied" if ok else "refused")
    return ok
