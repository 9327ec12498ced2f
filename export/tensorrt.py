"""TensorRT engines from the ONNX components, cached by vmatte.engine_cache.

Follows the TensorRT 10.x / 11.x Python API (named I/O tensors, build_serialized_network,
memory pool limits, timing caches). Precision:
- TensorRT >= 9 (STRONGLY_TYPED exists; always on in 11.x, where BuilderFlag.FP16 is gone): FP16
  engines are built from an FP16 ONNX export parsed into a strongly typed network, so the engine's
  inputs and outputs are FP16 (the runtime casts).
- TensorRT 8.6: FP32 ONNX + BuilderFlag.FP16 (weak typing), FP32 I/O.
One optimisation profile per engine spans the requested frame sizes: segmenter and generator see
the low-resolution shapes (frame_sizes: the padded frame downscaled), the refiner the full frames padded to whole 64 px cells."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

from vmatte.backends.base import COMPONENT_IO
from vmatte.engine_cache import EngineSpec, atomic_write, engine_dir, get_or_build, gpu_info, timing_cache_path
from vmatte.errors import VmatteError
from vmatte.ops.sizes import frame_sizes

log = logging.getLogger(__name__)

INSTALL_HINT = ('pip install "vmatte[trt]" (needs an NVIDIA GPU and driver); without TensorRT, vmatte process and webcam '
                "run with --backend torch-cuda or onnxruntime")
DEFAULT_WORKSPACE_GB = 4.0
# Typical camera/video frames (H, W); the first is the profile's opt shape.
DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((720, 1280), (480, 640), (1080, 1920))


def require_tensorrt():
    """The tensorrt module, or a VmatteError naming the fix."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise VmatteError(f"TensorRT is not installed ({e}); {INSTALL_HINT}") from None
    except OSError as e:  # the wheel is there but libnvinfer or the CUDA runtime cannot be loaded
        raise VmatteError(f"TensorRT cannot load its libraries ({e}); install an NVIDIA driver and matching CUDA runtime (vmatte process and webcam also run with --backend torch-cuda or onnxruntime)") from None
    return trt


def require_gpu(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability), or a VmatteError naming the fix."""
    try:
        return gpu_info(device)
    except RuntimeError as e:
        raise VmatteError(f"TensorRT needs an NVIDIA GPU: {e}; install the NVIDIA driver (nvidia-smi must list a GPU); without one, vmatte process and webcam run with --backend onnxruntime") from None


def trt_major(trt: Any) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError:
        return 0


def strongly_typed_supported(trt: Any) -> bool:
    """True when networks can (>= 9) or must (>= 11) be strongly typed."""
    return trt_major(trt) >= 11 or hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")


def onnx_half_for(trt: Any, precision: str) -> bool:
    """Whether the ONNX to parse should be the FP16 export for `precision` on this TensorRT."""
    return precision == "fp16" and strongly_typed_supported(trt)


def parse_sizes(text: str | Sequence) -> list[tuple[int, int]]:
    """'1280x720,1920x1080' (W x H, as people write frame sizes) or [(H, W), ...] -> [(H, W), ...]."""
    if isinstance(text, str):
        out = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            try:
                w, h = (int(v) for v in part.lower().split("x"))
            except ValueError:
                raise VmatteError(f"frame size {part!r} is not WIDTHxHEIGHT; pass e.g. --sizes 1280x720,1920x1080") from None
            out.append((h, w))
    else:
        out = [(int(h), int(w)) for h, w in text]
    if not out:
        raise VmatteError("no frame sizes given; pass e.g. --sizes 1280x720")
    for h, w in out:
        if h < 8 or w < 8:
            raise VmatteError(f"frame size {w}x{h} is too small; frames need at least 8x8 pixels")
    return out


def component_shapes(component: str, size: tuple[int, int], long_side: int, batch: int = 1) -> dict[str, tuple[int, ...]]:
    """Input shapes of `component` for one H x W frame: {input name: NCHW shape}."""
    H, W = size
    (Hp, Wp), (h, w) = frame_sizes(H, W, long_side)
    if component == "segmenter":
        return {"image": (batch, 3, h, w)}
    if component == "generator":
        return {"image": (batch, 3, h, w), "mask": (batch, 1, h, w)}
    if component == "refiner":
        return {"image": (batch, 3, Hp, Wp), "coarse": (batch, 1, h, w)}
    raise ValueError(f"unknown component {component!r}; expected one of {', '.join(COMPONENT_IO)}")


def profile_for(component: str, sizes: Iterable[tuple[int, int]], long_side: int, batch: int = 1, min_batch: int = 1) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """One optimisation profile {input: (min, opt, max)} covering every frame size in `sizes`:
    min/max are the element-wise extremes, opt is the first size at batch `batch`."""
    per = [component_shapes(component, s, long_side, batch) for s in sizes]
    if not per:
        raise ValueError("profile_for needs at least one frame size")
    prof = {}
    for name in per[0]:
        shapes = [p[name] for p in per]
        lo = tuple(min(s[i] for s in shapes) for i in range(4))
        hi = tuple(max(s[i] for s in shapes) for i in range(4))
        prof[name] = ((min(min_batch, batch),) + lo[1:], shapes[0], hi)
    return prof


def trt_logger(trt: Any):
    """One TensorRT logger per process (forwarding to Python logging), shared by builders and
    runtimes: TensorRT keeps a pointer to the logger, so it must outlive every Builder/Runtime
    that used it (a garbage-collected Python logger crashes the next TensorRT log call)."""
    cached = getattr(trt, "_vmatte_logger", None)  # stored on the module: lives as long as it does
    if cached is not None:
        return cached
    try:

        class _Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)

            def log(self, severity, msg):
                S = trt.ILogger.Severity
                level = {S.INTERNAL_ERROR: logging.ERROR, S.ERROR: logging.ERROR, S.WARNING: logging.WARNING, S.INFO: logging.DEBUG}.get(severity, logging.DEBUG)
                log.log(level, "TensorRT: %s", msg)

        logger = _Logger()
    except Exception:  # older bindings or fakes
        logger = trt.Logger(trt.Logger.WARNING)
    trt._vmatte_logger = logger
    return logger


def _parser_error_text(err: Any) -> str:
    """Readable text of an OnnxParser error (IParserError: desc(), node(), node_name()...)."""
    try:
        text = str(err.desc())
        node = err.node_name() if hasattr(err, "node_name") else err.node() if hasattr(err, "node") else None
        return f"{text} (node {node})" if node not in (None, "", -1) else text
    except Exception:
        return str(err)


def build_serialized_engine(onnx_path: str | Path, profile: dict[str, tuple], precision: str = "fp16", workspace_gb: float = DEFAULT_WORKSPACE_GB, timing_cache: str | Path | None = None, trt: Any = None) -> bytes:
    """Parse `onnx_path` and build a serialized engine with one optimisation profile.

    precision 'fp16' expects an FP16 ONNX when TensorRT supports strong typing (see onnx_half_for),
    else an FP32 ONNX built with the FP16 builder flag. The timing cache file is loaded when present
    and saved after the build."""
    trt = trt or require_tensorrt()
    major = trt_major(trt)
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    strong = strongly_typed_supported(trt)
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):  # needed on 9.x/10.x; 11.x accepts and ignores it
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if major < 10 and hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "; ".join(_parser_error_text(parser.get_error(i)) for i in range(parser.num_errors))
        raise VmatteError(f"TensorRT {trt.__version__} cannot parse {onnx_path} ({errs or 'no details'}); re-export it with `vmatte export --format onnx` or update TensorRT")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if precision == "fp16" and not strong:
        config.set_flag(trt.BuilderFlag.FP16)  # TensorRT 8.6 weak typing
    elif precision not in ("fp16", "fp32"):
        raise ValueError(f"precision {precision!r} is not supported; use 'fp16' or 'fp32'")

    opt_profile = builder.create_optimization_profile()
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    missing = sorted(set(inputs) ^ set(profile))
    if missing:
        raise VmatteError(f"ONNX inputs {inputs} of {onnx_path} do not match the shape profile {sorted(profile)}; re-export the ONNX with this vmatte version")
    for name in inputs:
        lo, opt, hi = profile[name]
        opt_profile.set_shape(name, tuple(lo), tuple(opt), tuple(hi))
    config.add_optimization_profile(opt_profile)

    if timing_cache is not None:
        _load_timing_cache(config, Path(timing_cache))

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise VmatteError(f"TensorRT failed to build an engine from {onnx_path}; rerun with -vv for the TensorRT log, or try a larger --workspace")
    if timing_cache is not None:
        try:
            atomic_write(Path(timing_cache), bytes(memoryview(config.get_timing_cache().serialize())))
        except OSError as e:
            log.warning("could not save the timing cache %s (%s)", timing_cache, e)
    return bytes(memoryview(serialized))


def _load_timing_cache(config: Any, path: Path) -> None:
    """Attach the timing cache in `path` to `config`, or a fresh one when the file is missing,
    unreadable or from another GPU/TensorRT (set_timing_cache(..., ignore_mismatch=False) -> False)."""
    try:
        blob = path.read_bytes() if path.is_file() else b""
    except OSError as e:
        log.warning("cannot read the timing cache %s (%s); starting a new one", path, e)
        blob = b""
    if blob:
        try:
            cache = config.create_timing_cache(blob)
        except Exception as e:  # a damaged file: TensorRT may raise instead of returning None
            log.debug("create_timing_cache failed: %s", e)
            cache = None
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return
        log.warning("timing cache %s is damaged or does not fit this GPU/TensorRT; starting a new one", path)
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def engine_specs(model: str, weights_sha256: str, sizes: Sequence[tuple[int, int]], long_side: int, batch: int, precision: str, trt_version: str, gpu_name: str, compute_capability: str) -> dict[str, EngineSpec]:
    """The EngineSpec of each component for these settings."""
    return {
        c: EngineSpec(model=model, component=c, weights_sha256=weights_sha256, profile=profile_for(c, sizes, long_side, batch), precision=precision, trt_version=trt_version, gpu_name=gpu_name, compute_capability=compute_capability, batch=batch)
        for c in COMPONENT_IO
    }


def _model_long_side(weights: Path) -> int:
    import json

    from vmatte.weights import read_header

    return int(json.loads(read_header(weights)["config"])["gen_long_side"])


def ensure_engines(
    model: str,
    weights: str | Path,
    sizes: Sequence[tuple[int, int]] | None = None,
    batch: int = 1,
    precision: str = "fp16",
    long_side: int | None = None,
    workspace_gb: float = DEFAULT_WORKSPACE_GB,
    out_dir: str | Path | None = None,
    force: bool = False,
    device: int = 0,
    onnx_dir: str | Path | None = None,
    builder=None,
) -> dict[str, tuple[Path, bytes]]:
    """{component: (engine path, serialized engine)} for `weights`, from the engine cache or built now.

    ONNX files are exported (from the weights, in a temporary folder) only when an engine has to be
    built; `onnx_dir` may name existing exports of the right precision instead. `builder` replaces
    build_serialized_engine (tests use a fake)."""
    from vmatte.weights import file_sha256

    trt = require_tensorrt()
    gpu_name, cc = require_gpu(device)
    weights = Path(weights)
    sizes = list(sizes or DEFAULT_SIZES)
    long_side = int(long_side or _model_long_side(weights))
    out = Path(out_dir) if out_dir is not None else engine_dir()
    specs = engine_specs(model, file_sha256(weights), sizes, long_side, batch, precision, str(trt.__version__), gpu_name, cc)
    tcache = timing_cache_path(str(trt.__version__), gpu_name, cc, out)
    build = builder or build_serialized_engine
    half = onnx_half_for(trt, precision)
    result: dict[str, tuple[Path, bytes]] = {}
    with tempfile.TemporaryDirectory(prefix="vmatte-onnx-") as tmp:
        onnx_paths: dict[str, Path] = {}

        def onnx_for(component: str) -> Path:
            if onnx_dir is not None:
                return Path(onnx_dir) / f"{component}.onnx"
            if not onnx_paths:
                onnx_paths.update(_export_onnx_from_weights(weights, Path(tmp), half))
            return onnx_paths[component]

        for comp, spec in specs.items():
            result[comp] = get_or_build(
                spec,
                lambda comp=comp, spec=spec: build(onnx_for(comp), dict(spec.profile), precision=precision, workspace_gb=workspace_gb, timing_cache=tcache, trt=trt),
                out,
                force=force,
            )
    return result


def _export_onnx_from_weights(weights: Path, out_dir: Path, half: bool) -> dict[str, Path]:
    from vmatte.registry import create_model
    from vmatte.weights import file_sha256, load_weights, read_header

    from vmatte.backends.base import COMPONENT_IO

    from .onnx import export_component

    meta = read_header(weights)
    m = create_model(meta["model"]).eval()
    load_weights(m, weights)
    sha = {"weights_sha256": file_sha256(weights)}  # the three components only: engines run the one-graph refiner
    return {c: export_component(m, c, out_dir / f"{c}.onnx", half=half, metadata=sha) for c in COMPONENT_IO}
