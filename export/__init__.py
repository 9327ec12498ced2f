"""Export trained vmatte weights: one `export()` entry point over a format table (ultralytics style).

    from vmatte.export import export
    export("rt", format="onnx")                                  # ./rt_onnx/{segmenter,generator,refiner}.onnx
    export("rt", format="tensorrt", sizes=[(720, 1280), (1080, 1920)])   # engines in the engine cache

Formats: see export_formats(). Sizes are (H, W) frames; TensorRT profiles span them."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from vmatte.errors import VmatteError

log = logging.getLogger(__name__)

__all__ = ["export", "export_formats", "check_requirements", "ExportFormat", "FORMATS"]


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str
    gpu: bool  # needs an NVIDIA GPU to export
    half: bool  # FP16 weights/graph
    requirements: tuple[str, ...]
    description: str


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("onnx", ".onnx", False, False, ("torch", "onnx"), "FP32 ONNX (opset 17, dynamic shapes) for onnxruntime"),
        ExportFormat("onnx-fp16", ".onnx", False, True, ("torch", "onnx"), "FP16 ONNX for strongly typed TensorRT builds"),
        ExportFormat("tensorrt", ".engine", True, True, ("torch", "onnx", "tensorrt"), "TensorRT FP16 engines in the engine cache"),
        ExportFormat("torch-tensorrt", ".ep", True, True, ("torch", "torch_tensorrt"), "Torch-TensorRT ExportedPrograms (dynamo IR, FP16)"),
    )
}


# The vmatte extra that carries each requirement of a format (torch_tensorrt is in none).
EXTRA_OF = {"torch": "torch", "onnx": "torch", "tensorrt": "trt"}


def check_requirements(format: str) -> None:
    """Raise a one-line VmatteError naming the install command when a package `format` needs is
    missing (the light install, `pip install vmatte`, has no torch), before any work starts."""
    from importlib.util import find_spec

    fmt = FORMATS.get(format)
    if fmt is None:
        raise VmatteError(f"unknown export format {format!r}; valid formats: {', '.join(FORMATS)}")
    missing = []
    for mod in fmt.requirements:
        try:
            if find_spec(mod) is None:
                missing.append(mod)
        except (ImportError, ValueError):  # a parent package missing, or a module without a spec
            missing.append(mod)
    if not missing:
        return
    extras = list(dict.fromkeys(EXTRA_OF[m] for m in missing if m in EXTRA_OF))
    fixes = [f'pip install "vmatte[{",".join(extras)}]"' + (" (needs an NVIDIA GPU and driver)" if "trt" in extras else "")] if extras else []
    if "torch_tensorrt" in missing:
        fixes.append("pip install torch-tensorrt (the build matching your torch; needs an NVIDIA GPU)")
    names = ", ".join(missing[:-1]) + " and " + missing[-1] if len(missing) > 1 else missing[0]
    raise VmatteError(f"export format {format!r} needs {names}, which {'is' if len(missing) == 1 else 'are'} not installed; "
                      + " and ".join(fixes))


def export_formats() -> list[dict[str, object]]:
    """The format table: one row per format (format, suffix, gpu, half, requirements, description)."""
    return [{"format": f.name, "suffix": f.suffix, "gpu": f.gpu, "half": f.half, "requirements": list(f.requirements), "description": f.description} for f in FORMATS.values()]


def _resolve_weights(model: str, weights: str | Path | None) -> Path:
    from vmatte.weights import read_header, shipped_weights

    path = Path(weights) if weights is not None else shipped_weights(model)
    if weights is None and not path.is_file():
        raise VmatteError(f"model {model!r} has no shipped weights; pass --weights PATH to a trained .safetensors file")
    read_header(path, model)  # raises VmatteError for missing/damaged/other-model files
    return path


def _load_model(model: str, weights: Path):
    from vmatte.registry import create_model
    from vmatte.weights import load_weights

    m = create_model(model)
    load_weights(m, weights)
    return m.eval()


def export(
    model: str = "rt",
    weights: str | Path | None = None,
    format: str = "onnx",
    sizes: Sequence[tuple[int, int]] | str | None = None,
    batch: int = 1,
    out_dir: str | Path | None = None,
    workspace_gb: float | None = None,
    force: bool = False,
    long_side: int | None = None,
) -> dict[str, Path]:
    """Export `model` (shipped weights unless `weights`) to `format`; returns {component: path}.

    onnx/onnx-fp16 write to out_dir (default ./<weights stem>_onnx[_fp16]); tensorrt writes cached
    engines (default: the engine cache the TensorRT backend reads, so a later run starts at once);
    torch-tensorrt writes <component>.ep files (default ./<weights stem>_torch_tensorrt)."""
    from vmatte.registry import list_models

    fmt = FORMATS.get(format)
    if fmt is None:
        raise VmatteError(f"unknown export format {format!r}; valid formats: {', '.join(FORMATS)}")
    if model not in list_models():
        raise VmatteError(f"unknown model {model!r}; valid models: {', '.join(list_models())}")
    if batch < 1:
        raise VmatteError(f"batch {batch} must be at least 1")
    if fmt.gpu and sizes is not None:
        from .tensorrt import parse_sizes

        parse_sizes(sizes)  # a typo is reported before a missing package
    check_requirements(format)
    wpath = _resolve_weights(model, weights)
    stem = wpath.stem if weights is not None else model
    from vmatte.weights import file_sha256

    sha = file_sha256(wpath)

    if fmt.name in ("onnx", "onnx-fp16"):
        from .onnx import export_onnx, onnx_parts

        out = Path(out_dir) if out_dir is not None else Path.cwd() / (f"{stem}_onnx" + ("_fp16" if fmt.half else ""))
        parts = onnx_parts(fmt.half)
        if not force and all((out / f"{c}.onnx").is_file() for c in parts) and _onnx_matches(out, sha, fmt.half):
            log.info("ONNX files in %s are up to date (pass force=True to re-export)", out)
            return {c: out / f"{c}.onnx" for c in _present_parts(out, fmt.half)}
        return export_onnx(_load_model(model, wpath), out, half=fmt.half, metadata={"weights_sha256": sha})

    from .tensorrt import DEFAULT_SIZES, DEFAULT_WORKSPACE_GB, parse_sizes

    size_list = parse_sizes(sizes) if sizes is not None else list(DEFAULT_SIZES)
    ws = workspace_gb or DEFAULT_WORKSPACE_GB
    if fmt.name == "tensorrt":
        from .tensorrt import ensure_engines

        built = ensure_engines(model, wpath, sizes=size_list, batch=batch, precision="fp16", long_side=long_side, workspace_gb=ws, out_dir=out_dir, force=force)
        return {c: p for c, (p, _) in built.items()}

    # torch-tensorrt
    import json

    from vmatte.weights import read_header

    from .tensorrt import profile_for
    from .torch_tensorrt import export_torch_tensorrt, require_torch_tensorrt

    require_torch_tensorrt()
    ls = int(long_side or json.loads(read_header(wpath)["config"])["gen_long_side"])
    profiles = {c: profile_for(c, size_list, ls, batch) for c in ("segmenter", "generator", "refiner")}
    out = Path(out_dir) if out_dir is not None else Path.cwd() / f"{stem}_torch_tensorrt"
    return export_torch_tensorrt(_load_model(model, wpath), out, profiles, half=True, workspace_gb=ws)


def _present_parts(out: Path, half: bool) -> tuple[str, ...]:
    """The parts every export has, and the paired files this one has (a model may not pair; an
    export made before them has none, and runs the plain files until re-exported with force)."""
    from vmatte.backends.base import PAIRED

    from .onnx import onnx_parts

    paired = () if half else tuple(c for c in PAIRED.values() if (out / f"{c}.onnx").is_file())
    return onnx_parts(half) + paired


def _onnx_matches(out: Path, sha: str, half: bool) -> bool:
    """Whether the ONNX files in `out` were exported from weights `sha` at this precision, by this
    vmatte's graphs (GRAPH_VERSION)."""
    from vmatte.backends.base import GRAPH_VERSION

    from .onnx import read_metadata

    try:
        metas = [read_metadata(out / f"{c}.onnx") for c in _present_parts(out, half)]
    except Exception:  # unreadable file: re-export
        return False
    want = "fp16" if half else "fp32"
    return all(m.get("weights_sha256") == sha and m.get("vmatte_precision") == want
               and m.get("vmatte_graph_version", "1") == str(GRAPH_VERSION) for m in metas)
