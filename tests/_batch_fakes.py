"""Picklable model factories for the batch tests: worker processes (spawned, or Ray's) import
this module by name, so it must stay importable from the tests folder."""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from _media import EllipseMatter


@dataclass(frozen=True)
class KillOnce:
    """A model whose process kills itself (SIGKILL, as the kernel's OOM killer would) at its first
    frame after a partial output appeared in `out_dir`, so mid-file; `marker` (created
    exclusively) makes it happen once in the whole batch."""

    marker: str
    out_dir: str

    def __call__(self):
        return _Killer(self)


class _Killer(EllipseMatter):
    def __init__(self, spec: KillOnce):
        super().__init__()
        self.spec = spec

    def matte(self, rgb):
        if not os.path.exists(self.spec.marker) and any(".partial" in p.name for p in Path(self.spec.out_dir).iterdir()):
            try:
                os.close(os.open(self.spec.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().matte(rgb)

    def matte_batch(self, frames):
        return [self.matte(f) for f in frames]


@dataclass(frozen=True)
class DeviceProbe:
    """Records, per worker process, the GPU it was given (CUDA_VISIBLE_DEVICES) into `folder`."""

    folder: str

    def __call__(self):
        Path(self.folder, f"{os.getpid()}.txt").write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
        return EllipseMatter()


@dataclass(frozen=True)
class Slow:
    """EllipseMatter that takes `delay` seconds a frame (so a batch can be interrupted mid-file)."""

    delay: float = 0.05

    def __call__(self):
        return _SlowMatter(self.delay)


class _SlowMatter(EllipseMatter):
    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    def matte(self, rgb):
        time.sleep(self.delay)
        return super().matte(rgb)


@dataclass(frozen=True)
class Broken:
    """A model that cannot be built (as a missing weights file would be)."""

    def __call__(self):
        from vmatte.errors import VmatteError

        raise VmatteError("model 'x' ships no weights; pick one that does")


@dataclass(frozen=True)
class DiskFullOn:
    """EllipseMatter, and in its worker process a video sink that fails with ENOSPC (disk full)
    when writing the output named `name`, as a full disk would mid-file."""

    name: str

    def __call__(self):
        from vmatte.io import sinks

        write, name = sinks.VideoSink.write, self.name

        def failing(sink, *a, **k):
            if sink.path.name == name and sink.frames >= 2:
                raise OSError(28, "No space left on device")
            return write(sink, *a, **k)

        sinks.VideoSink.write = failing
        return EllipseMatter()
