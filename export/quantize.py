"""int8 post-training quantisation of one model's FP32 ONNX files (onnxruntime, static, QDQ).

    from vmatte.export.quantize import quantize_model
    quantize_model("vmatte/weights/rt", frames, long_side=256)   # -> rt/<component>.int8.onnx

An opt-in CPU precision (Matter(..., precision="int8")), made offline at release time; nothing here
runs at inference. Settings: QDQ graph, MinMax calibration, activations QUInt8, weights QInt8 per
output channel with reduce_range (7-bit weights, so the U8S8 kernels of CPUs without VNNI cannot
saturate their 16-bit sums; exact on VNNI/AMX too). Calibration runs the FP32 pipeline on real RGB
frames, so each component is calibrated on the inputs it really gets: the frame at the model's
long side, at two frame sizes (whole at long side 640, a webcam-like 16:9 crop at 1280x720)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from vmatte.backends.base import COMPONENT_IO, PATCH_NET, patch_plan
from vmatte.errors import VmatteError

log = logging.getLogger(__name__)

COMPONENTS = tuple(COMPONENT_IO)
PARTS = COMPONENTS + (PATCH_NET,)  # the refiner's patch net alone too, when the FP32 export has it
FRAME_SIDES = (640, 1280)  # calibration frame long sides: the whole frame at the first, 16:9 crops at the rest
# Nodes quantised per component (a node-name prefix of the torch export; None: every op onnxruntime
# quantises, so Conv+Relu/Clip fuse with the range of their output). The refiner quantises its
# patch network only: its full-resolution upsampling, patch choice (TopK) and paste stay in float,
# where int8 moved which cells get refined and its Q/DQ at full resolution cost more than it saved.
NODE_PREFIX = {"segmenter": None, "generator": None, "refiner": "/net/", PATCH_NET: "/net/"}


def int8_path(onnx_dir: str | Path, component: str) -> Path:
    """Where the int8 file of `component` lies: next to its FP32 file."""
    return Path(onnx_dir) / f"{component}.int8.onnx"


def require_onnx() -> None:
    """One-line VmatteError when the offline quantisation packages are missing."""
    try:
        import onnx  # noqa: F401
        from onnxruntime import quantization  # noqa: F401
    except ImportError as e:
        raise VmatteError(f"int8 quantisation needs onnx and onnxruntime's quantization tools ({e}); "
                          'pip install "vmatte[torch]"') from None


def framings(rgb: np.ndarray, sides: Sequence[int] = FRAME_SIDES) -> list[np.ndarray]:
    """Calibration views of one frame: whole at long side sides[0]; then, for each further side, a
    webcam-like 16:9 landscape crop (full width of the frame, from near its top, where a webcam
    frames head and shoulders) scaled to that long side."""
    H, W = rgb.shape[:2]
    out = [_scale(rgb, sides[0])]
    ch = min(H, round(W * 9 / 16))
    cw = min(W, round(ch * 16 / 9))
    y0 = min(H - ch, round(0.05 * H))
    x0 = (W - cw) // 2
    crop = rgb[y0:y0 + ch, x0:x0 + cw]
    out += [_scale(crop, s) for s in sides[1:]]
    return out


def _scale(rgb: np.ndarray, long_side: int) -> np.ndarray:
    H, W = rgb.shape[:2]
    s = long_side / max(H, W)
    size = (max(8, round(W * s)), max(8, round(H * s)))
    return np.ascontiguousarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR))


class Pipeline:
    """The FP32 pipeline on onnxruntime sessions: each component's inputs for one frame."""

    def __init__(self, fp32_dir: str | Path, long_side: int):
        import onnxruntime as ort

        self.long_side = long_side
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.sessions = {c: ort.InferenceSession(str(Path(fp32_dir) / f"{c}.onnx"), opts, providers=["CPUExecutionProvider"])
                         for c in COMPONENTS}
        patch_file = Path(fp32_dir) / f"{PATCH_NET}.onnx"
        self.patch_plan = None
        if patch_file.is_file():
            from .onnx import read_metadata

            self.patch_plan = patch_plan(read_metadata(patch_file), patch_file)

    def feeds(self, rgb: np.ndarray, upto: str = "refiner") -> dict[str, dict[str, np.ndarray]]:
        """{component: its input feed} for the components up to and including `upto` (PATCH_NET:
        the windows the host gathers for the refiner's patch net, as vmatte.api.run_matte does)."""
        from vmatte.api import prepare

        if upto == PATCH_NET:
            return {PATCH_NET: self._windows(rgb)}
        full, low = prepare(rgb, self.long_side)
        out = {"segmenter": {"image": low}}
        if upto == "segmenter":
            return out
        mask = self.sessions["segmenter"].run(None, {"image": low})[0]
        out["generator"] = {"image": low, "mask": mask}
        if upto == "generator":
            return out
        coarse = self.sessions["generator"].run(None, {"image": low, "mask": mask})[0]
        out["refiner"] = {"image": full.copy(), "coarse": coarse}  # `full` is a reused per-thread buffer
        return out

    def _windows(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """The patch net's inputs for one frame: its image and alpha windows."""
        from vmatte.ops.patches import PATCH, refine_alpha
        from vmatte.ops.sizes import frame_sizes

        if self.patch_plan is None:
            raise VmatteError(f"no {PATCH_NET}.onnx next to the FP32 files; re-export them with `vmatte export --format onnx --force`")
        feeds = self.feeds(rgb, upto="generator")["generator"]
        coarse = self.sessions["generator"].run(None, feeds)[0]
        got: dict[str, np.ndarray] = {}
        P = self.patch_plan[1]

        def grab(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
            got.update(image=image, alpha=alpha)
            return alpha[:, :, P:P + PATCH, P:P + PATCH]

        refine_alpha(rgb, coarse[0, 0], frame_sizes(*rgb.shape[:2], self.long_side)[0], *self.patch_plan, grab)
        return got


def calibration_reader(component: str, frames: Sequence[np.ndarray], pipeline: Pipeline, sides: Sequence[int] = FRAME_SIDES):
    """An onnxruntime CalibrationDataReader that yields `component`'s FP32-pipeline inputs for
    every framing of every frame, lazily (a 720p refiner input is 11 MB)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it: Iterator = self._feeds()

        def _feeds(self):
            for rgb in frames:
                for view in framings(rgb, sides):
                    yield pipeline.feeds(view, upto=component)[component]

        def get_next(self):
            return next(self._it, None)

        def rewind(self):
            self._it = self._feeds()

    return Reader()


def _fp32_metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def nodes_to_quantize(fp32: Path, prefix: str | None) -> list[str] | None:
    """Names of the nodes of `fp32` under `prefix` (None: all nodes onnxruntime quantises)."""
    import onnx

    if prefix is None:
        return None
    names = [n.name for n in onnx.load(str(fp32), load_external_data=False).graph.node if n.name.startswith(prefix)]
    if not names:
        log.warning("%s has no node named %s*; quantising every node", fp32, prefix)
    return names or None


class _DropHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def quantize_component(fp32: str | Path, out: str | Path, reader, metadata: dict[str, str], prefix: str | None = None) -> Path:
    """Quantise one FP32 ONNX file to `out` (QDQ, see the module doc), only nodes under `prefix`
    when given; the FP32 file's metadata is carried over with `metadata` on top. Written to a
    temporary name and checked before it replaces an older file."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from .onnx import _add_metadata

    fp32, out = Path(fp32), Path(out)
    tmp = out.with_name(out.name + ".partial")
    hint = _DropHint()  # onnxruntime's advice to pre-process: measured, no better here (docs/benchmarks.md)
    logging.getLogger().addFilter(hint)
    try:
        quantize_static(str(fp32), str(tmp), reader, quant_format=QuantFormat.QDQ, nodes_to_quantize=nodes_to_quantize(fp32, prefix),
                        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        _add_metadata(tmp, {**_fp32_metadata(fp32), **metadata}, check=True)
        tmp.replace(out)
    finally:
        logging.getLogger().removeFilter(hint)
        tmp.unlink(missing_ok=True)
    onnx.checker.check_model(str(out))
    return out


def quantize_model(onnx_dir: str | Path, frames: Sequence[np.ndarray], long_side: int, description: str = "",
                   sides: Sequence[int] = FRAME_SIDES, components: Sequence[str] = PARTS) -> dict[str, Path]:
    """Write <onnx_dir>/<component>.int8.onnx from <onnx_dir>/<component>.onnx, calibrated on
    `frames` (RGB uint8 [H,W,3]) run through the FP32 pipeline at generator long side `long_side`.
    Each int8 file records its FP32 file's sha256 (fp32_sha256) and the calibration (`description`
    plus frame count, framings and long side) in its metadata. Returns {component: path}."""
    require_onnx()
    from vmatte.weights import file_sha256

    onnx_dir = Path(onnx_dir)
    components = [c for c in components if c != PATCH_NET or (onnx_dir / f"{c}.onnx").is_file()]  # older exports lack it
    for c in COMPONENTS:
        if not (onnx_dir / f"{c}.onnx").is_file():
            raise VmatteError(f"FP32 ONNX file {onnx_dir / f'{c}.onnx'} is missing; export it first with `vmatte export --format onnx`")
    if not len(frames):
        raise VmatteError("no calibration frames; give real photos or video frames of people")
    bad = [i for i, f in enumerate(frames) if not (isinstance(f, np.ndarray) and f.ndim == 3 and f.shape[2] == 3 and f.dtype == np.uint8)]
    if bad:
        raise VmatteError(f"calibration frame {bad[0]} is not an H x W x 3 uint8 RGB array")
    calib = calibration_info(len(frames), long_side, sides, description)
    pipeline = Pipeline(onnx_dir, long_side)
    out = {}
    for c in components:
        fp32 = onnx_dir / f"{c}.onnx"
        meta = {"vmatte_precision": "int8", "fp32_sha256": file_sha256(fp32), "calibration": json.dumps(calib),
                "quantization": quantization_info()}
        out[c] = quantize_component(fp32, int8_path(onnx_dir, c), calibration_reader(c, frames, pipeline, sides), meta, NODE_PREFIX[c])
        log.info("quantised %s -> %s", c, out[c])
    return out


def calibration_info(n: int, long_side: int, sides: Sequence[int], description: str) -> dict:
    """The calibration record kept in each int8 file and in the model card."""
    return {"frames": n, "views": n * len(sides), "long_side": long_side,
            "framings": [f"whole frame, long side {sides[0]}"] + [f"16:9 webcam-like crop, long side {s}" for s in sides[1:]],
            "method": "MinMax", "sources": description}


def quantization_info() -> str:
    import onnxruntime

    return (f"onnxruntime {onnxruntime.__version__} quantize_static: QDQ, MinMax, activations QUInt8, weights QInt8 "
            "per channel, reduce_range (7-bit weights); refiner: patch network only (also as refiner_patches)")


def restamp(onnx_dir: str | Path, weights_sha256: str) -> None:
    """After the weights file changed in its header only (a new model card): record its sha256 in
    the FP32 files, then the FP32 files' new sha256 in the int8 files. Graphs are untouched."""
    from vmatte.weights import file_sha256

    from .onnx import _add_metadata

    from vmatte.backends.base import PAIRED

    for c in PARTS + tuple(PAIRED.values()):  # the paired files have no int8 twins
        fp32 = Path(onnx_dir) / f"{c}.onnx"
        if not fp32.is_file():  # an older export without the patch net or the paired files
            continue
        _add_metadata(fp32, {"weights_sha256": weights_sha256}, check=False)
        if int8_path(onnx_dir, c).is_file():
            _add_metadata(int8_path(onnx_dir, c), {"weights_sha256": weights_sha256, "fp32_sha256": file_sha256(fp32)}, check=False)


def default_long_side(onnx_dir: str | Path) -> int:
    """The generator long side of the model the FP32 files in `onnx_dir` were exported from (its
    shipped weights' config), for calibrating at the size the model runs at by default."""
    from vmatte.weights import read_header, shipped_weights

    from .onnx import read_metadata

    model = read_metadata(Path(onnx_dir) / "segmenter.onnx").get("vmatte_model", "")
    if not shipped_weights(model).is_file():
        raise VmatteError(f"cannot tell the long side of model {model or '?'!r} in {onnx_dir}; pass --long-side N")
    return int(json.loads(read_header(shipped_weights(model))["config"])["gen_long_side"])


def main(argv: list[str] | None = None) -> int:
    """python -m vmatte.export.quantize ONNX_DIR --calib PHOTOS_OR_VIDEOS...: write the int8 files."""
    import argparse
    import sys

    from .frames import read_frames

    p = argparse.ArgumentParser(prog="python -m vmatte.export.quantize", description=__doc__.splitlines()[0])
    p.add_argument("onnx_dir", help="folder with segmenter.onnx, generator.onnx and refiner.onnx (FP32)")
    p.add_argument("--calib", nargs="+", required=True, metavar="PATH",
                   help="folders of photos, photos or video files of people (never a validation set)")
    p.add_argument("--count", type=int, default=100, help="calibration frames, shared equally by the sources (default: 100)")
    p.add_argument("--long-side", type=int, default=None, help="generator long side (default: the model's)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        require_onnx()
        long_side = a.long_side or default_long_side(a.onnx_dir)
        frames, desc = read_frames(a.calib, a.count)
        for c, path in quantize_model(a.onnx_dir, frames, long_side, desc).items():
            print(f"wrote {path}")
    except VmatteError as e:
        print(f"vmatte: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
