"""MediaPipe selfie segmentation (TFLite, Apache-2.0) as a baseline for `vmatte eval`.

The model is inside the wheel of mediapipe==0.10.14
(mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite, 256x256 input; the _landscape
file takes 144x256). It runs on a TFLite interpreter: `pip install ai-edge-litert` (or tflite-runtime).
Input [1,H,W,3] float32 RGB in 0..1, the whole frame stretched to the model's size; output
[1,H,W,1] person probability.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import VmatteError


def _interpreter(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise VmatteError("MediaPipe's model needs a TFLite interpreter; pip install ai-edge-litert") from None
    try:
        return Interpreter(model_path=str(path))
    except Exception as e:  # the interpreter raises ValueError/RuntimeError for bad files
        raise VmatteError(f"{path} is not a readable TFLite model ({type(e).__name__}); expected selfie_segmentation.tflite") from None


class MediaPipeSelfie:
    """MediaPipe selfie segmentation: `.matte(rgb HxWx3 uint8) -> HxW float32 person probability`."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise VmatteError(f"MediaPipe model {path} not found; expected selfie_segmentation.tflite "
                              "(pip download --no-deps mediapipe==0.10.14, then unzip "
                              "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite)")
        self.it = _interpreter(path)
        self.it.allocate_tensors()
        inp, out = self.it.get_input_details(), self.it.get_output_details()
        if len(inp) != 1 or list(inp[0]["shape"][[0, 3]]) != [1, 3]:
            raise VmatteError(f"{path} takes {[i['shape'].tolist() for i in inp]}; expected one [1,H,W,3] input")
        self.inp, self.out = inp[0]["index"], out[0]["index"]
        self.h, self.w = int(inp[0]["shape"][1]), int(inp[0]["shape"][2])

    def matte(self, rgb: np.ndarray) -> np.ndarray:
        """Person probability HxW float32 in [0, 1] of one RGB uint8 frame."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"MediaPipe got an array {rgb.shape} {rgb.dtype}; expected HxWx3 uint8 RGB")
        h, w = rgb.shape[:2]
        x = cv2.resize(rgb, (self.w, self.h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        self.it.set_tensor(self.inp, x[None])  # [1,h,w,3]
        self.it.invoke()
        p = self.it.get_tensor(self.out)[0, :, :, 0]  # [h,w]
        return np.clip(cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
