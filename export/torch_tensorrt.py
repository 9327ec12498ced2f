"""Second TensorRT route: Torch-TensorRT (dynamo IR), saved as ExportedPrograms (.ep).

Useful where the ONNX parser lacks an op or to stay inside PyTorch: the saved programs load with
torch.export.load after `import torch_tensorrt`. FP16 is explicit: the module and its inputs are
cast to half (recent Torch-TensorRT respects dtypes, `use_explicit_typing`); older releases get
enabled_precisions={torch.half} as well."""
from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Sequence

from vmatte.backends.base import COMPONENT_IO
from vmatte.errors import VmatteError

log = logging.getLogger(__name__)

SUFFIX = ".ep"


def require_torch_tensorrt():
    """The torch_tensorrt module, or a VmatteError naming the fix."""
    try:
        import torch_tensorrt
    except ImportError as e:
        raise VmatteError(f"torch-tensorrt is not installed ({e}); pip install torch-tensorrt (matching your torch version; needs an NVIDIA GPU), or use --format tensorrt/onnx") from None
    except OSError as e:
        raise VmatteError(f"torch-tensorrt cannot load TensorRT/CUDA libraries ({e}); install the NVIDIA driver and a CUDA build of torch") from None
    return torch_tensorrt


def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def compile_component(module, component: str, profile: dict[str, tuple], half: bool = True, workspace_gb: float = 4.0, device: str = "cuda", tt: Any = None):
    """torch_tensorrt.compile(ir='dynamo') of one component with dynamic shapes from `profile`
    ({input: (min, opt, max)}). Returns (compiled module, example inputs at the opt shapes)."""
    import torch

    tt = tt or require_torch_tensorrt()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VmatteError("torch-tensorrt needs a CUDA GPU visible to torch; install the NVIDIA driver and a CUDA build of torch")
    dtype = torch.half if half else torch.float32
    module = module.eval().to(device, dtype)
    names, _ = COMPONENT_IO[component]
    inputs = [tt.Input(min_shape=profile[n][0], opt_shape=profile[n][1], max_shape=profile[n][2], dtype=dtype) for n in names]
    kwargs: dict[str, Any] = {"ir": "dynamo", "inputs": inputs, "workspace_size": int(workspace_gb * (1 << 30)), "min_block_size": 1}
    if half:
        if _accepts(tt.compile, "use_explicit_typing") or not _accepts(tt.compile, "enabled_precisions"):
            kwargs["use_explicit_typing"] = True  # the module and inputs are already half
        else:
            kwargs["enabled_precisions"] = {torch.half}
    try:
        trt_mod = tt.compile(module, **kwargs)
    except TypeError:  # option names differ between releases: retry with the classic set
        kwargs.pop("use_explicit_typing", None)
        kwargs["enabled_precisions"] = {torch.half} if half else {torch.float32}
        trt_mod = tt.compile(module, **kwargs)
    examples = [torch.rand(profile[n][1], device=device, dtype=dtype) for n in names]
    return trt_mod, examples


def export_torch_tensorrt(model, out_dir: str | Path, profiles: dict[str, dict[str, tuple]], half: bool = True, workspace_gb: float = 4.0) -> dict[str, Path]:
    """Compile and save each component to out_dir/<component>.ep with torch_tensorrt.save."""
    tt = require_torch_tensorrt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for comp in COMPONENT_IO:
        trt_mod, examples = compile_component(getattr(model, comp), comp, profiles[comp], half=half, workspace_gb=workspace_gb, tt=tt)
        path = out_dir / f"{comp}{SUFFIX}"
        tmp = path.with_name(path.name + ".partial" + SUFFIX)  # save picks the format from options, keep the suffix
        if _accepts(tt.save, "arg_inputs"):
            tt.save(trt_mod, str(tmp), output_format="exported_program", arg_inputs=examples)
        else:
            tt.save(trt_mod, str(tmp), output_format="exported_program", inputs=examples)
        tmp.replace(path)
        log.info("saved Torch-TensorRT %s -> %s", comp, path)
        paths[comp] = path
    return paths
