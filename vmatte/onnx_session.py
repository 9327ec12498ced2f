"""One onnxruntime session for a model file given by the user (a baseline or a teacher), with the
project's one-line errors for a missing or unreadable file."""

from __future__ import annotations

from pathlib import Path

from .errors import VmatteError


def open_onnx(path: str | Path, expected: str, threads: int | None = None, providers: list[str] | None = None):
    """onnxruntime.InferenceSession of `path`; VmatteError naming `expected` (what the file should be,
    and where to get it) when the file is missing or not a readable ONNX model."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise VmatteError(f"model {path} not found; expected {expected}")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), opts, providers=providers or ["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own types for bad files
        raise VmatteError(f"{path} is not a readable ONNX model ({type(e).__name__}); expected {expected}") from None
