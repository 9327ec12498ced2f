"""Second TensorRT route: Torch-TensorRT (dynamo IR), saved as ExportedPrograms (.ep).

Useful where the ONNX parser lacks an op or to stay inside PyTorch: the saved programs load with
torch_tensorrt.load / torch.export.load after `import torch_tensorrt`.

Dynamic shapes: each component is exported here with torch.export and explicit, *shared*
torch.export.Dim objects (one batch Dim for all inputs, one low-res H/W pair shared by the
generator's image and mask), then compiled with torch_tensorrt.dynamo.compile. Letting
Torch-TensorRT infer Dims from Input(min/opt/max) does not work for vmatte: it names them
`<input name>_<axis>`, so unnamed inputs collide ("Found different definitions ... for the same
symbolic dimension" for the refiner's image vs coarse) and named ones are separate symbols that
torch.export rejects when the model forces them equal (generator image/mask).
FP16 is explicit: the module and inputs are half (`use_explicit_typing`, the default in current
Torch-TensorRT, where enabled_precisions is deprecated); older releases get enabled_precisions."""
from __future__ import annotations

import copy
import inspect
import logging
from pathlib import Path
from typing import Any

from vmatte.backends.base import COMPONENT_IO
from vmatte.errors import VmatteError
from vmatte.ops.sizes import PATCH, SEG_STRIDE

log = logging.getLogger(__name__)

SUFFIX = ".ep"
# Which size family each input's H, W belong to: "low" = lowres_size, "full" = padded frame.
_FAMILY = {"segmenter": ("low",), "generator": ("low", "low"), "refiner": ("full", "low")}
_MULTIPLE = {"low": SEG_STRIDE, "full": PATCH}  # what each family's sides are whole multiples of


def require_torch_tensorrt():
    """The torch_tensorrt module, or a VmatteError naming the fix."""
    try:
        import torch_tensorrt
    except ImportError as e:
        raise VmatteError(f"torch-tensorrt is not installed ({e}); pip install torch-tensorrt (matching your torch version; needs an NVIDIA GPU), or use --format tensorrt/onnx") from None
    except OSError as e:
        raise VmatteError(f"torch-tensorrt cannot load TensorRT/CUDA libraries ({e}); install the NVIDIA driver and a CUDA build of torch") from None
    return torch_tensorrt


def _params(fn) -> dict[str, inspect.Parameter] | None:
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return None


def _names(fn, name: str) -> bool:
    """Whether `fn` has a parameter literally called `name` (not merely **kwargs)."""
    params = _params(fn)
    return params is not None and name in params


def dynamic_shapes_for(component: str, profile: dict[str, tuple]) -> tuple[dict[int, Any], ...]:
    """torch.export dynamic_shapes for `profile` ({input: (min, opt, max)}): a tuple with one
    {axis: Dim} per input (positional, so it does not depend on forward()'s argument names). Axes
    whose min == max stay static; a Dim is shared by every input that must agree on it.

    H and W are declared as whole multiples of what the model needs (`_MULTIPLE`: refiner cells
    for the padded frame, the generator's stride for the low resolution), i.e. `64 * Dim(...)`:
    newer torch.export releases reject a plain range whose values the graph's guards restrict to
    multiples ("Not all values of full_h ... satisfy the generated guard")."""
    from torch.export import Dim

    names, _ = COMPONENT_IO[component]
    dims: dict[str, Any] = {}
    ranges: dict[str, tuple[int, int]] = {}
    out = []
    for name, fam in zip(names, _FAMILY[component]):
        lo, _, hi = profile[name]
        spec = {}
        for axis in (0, 2, 3):
            if lo[axis] == hi[axis]:
                continue
            key = "batch" if axis == 0 else f"{fam}_{'h' if axis == 2 else 'w'}"
            rng = (int(lo[axis]), int(hi[axis]))
            if ranges.setdefault(key, rng) != rng:
                raise ValueError(f"profile of {component} gives {key} ranges {ranges[key][0]}..{ranges[key][1]} and {rng[0]}..{rng[1]}; inputs sharing a dimension need one range (build the profile with export.tensorrt.profile_for)")
            if key not in dims:
                m = 1 if axis == 0 else _MULTIPLE[fam]
                if rng[0] % m or rng[1] % m:
                    raise ValueError(f"profile of {component} gives {key} range {rng[0]}..{rng[1]}, not multiples of {m}; build the profile with export.tensorrt.profile_for")
                dims[key] = Dim(key, min=rng[0], max=rng[1]) if m == 1 else m * Dim(f"{key}_{m}", min=rng[0] // m, max=rng[1] // m)
            spec[axis] = dims[key]
        out.append(spec)
    return tuple(out)


def compile_component(module, component: str, profile: dict[str, tuple], half: bool = True, workspace_gb: float = 4.0, device: str = "cuda", tt: Any = None):
    """torch.export (shared dynamic Dims from `profile`) + torch_tensorrt.dynamo.compile of one
    component. Returns (compiled module, example inputs at the opt shapes, dynamic_shapes)."""
    import torch

    tt = tt or require_torch_tensorrt()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VmatteError("torch-tensorrt needs a CUDA GPU visible to torch; install the NVIDIA driver and a CUDA build of torch")
    dtype = torch.half if half else torch.float32
    module = copy.deepcopy(module).eval().to(device, dtype)  # never change the caller's model
    names, _ = COMPONENT_IO[component]
    examples = tuple(torch.rand(profile[n][1], device=device, dtype=dtype) for n in names)  # [B,C,H,W] at opt
    dyn = dynamic_shapes_for(component, profile)
    with torch.no_grad():
        ep = torch.export.export(module, examples, dynamic_shapes=dyn, strict=False)
    inputs = [tt.Input(min_shape=tuple(profile[n][0]), opt_shape=tuple(profile[n][1]), max_shape=tuple(profile[n][2]), dtype=dtype) for n in names]
    compile_fn = tt.dynamo.compile
    kwargs: dict[str, Any] = {"workspace_size": int(workspace_gb * (1 << 30)), "min_block_size": 1}
    if half:
        if _names(compile_fn, "use_explicit_typing"):
            kwargs["use_explicit_typing"] = True  # module and inputs are already half
        else:
            kwargs["enabled_precisions"] = {torch.half}
    try:
        trt_mod = compile_fn(ep, inputs, **kwargs)  # `inputs` is positional in every 2.x release
    except TypeError:  # option names differ between releases: retry with the classic set
        kwargs.pop("use_explicit_typing", None)
        kwargs["enabled_precisions"] = {torch.half} if half else {torch.float32}
        trt_mod = compile_fn(ep, inputs, **kwargs)
    return trt_mod, examples, dyn


def save_compiled(trt_mod, path: str | Path, examples: tuple, dynamic_shapes: tuple, tt: Any) -> None:
    """torch_tensorrt.save as an ExportedProgram that keeps the dynamic shapes: explicit
    dynamic_shapes where save() takes them (current releases re-export), else retrace=False (older
    releases serialise the compiled graph with its symbolic shapes as is)."""
    kw: dict[str, Any] = {"output_format": "exported_program"}
    if _names(tt.save, "arg_inputs"):
        kw["arg_inputs"] = list(examples)
    else:
        kw["inputs"] = list(examples)
    if _names(tt.save, "dynamic_shapes"):
        kw["dynamic_shapes"] = dynamic_shapes
    elif _names(tt.save, "retrace"):
        kw["retrace"] = False
    tt.save(trt_mod, str(path), **kw)


def export_torch_tensorrt(model, out_dir: str | Path, profiles: dict[str, dict[str, tuple]], half: bool = True, workspace_gb: float = 4.0, device: str = "cuda", tt: Any = None) -> dict[str, Path]:
    """Compile and save each component to out_dir/<component>.ep."""
    tt = tt or require_torch_tensorrt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for comp in COMPONENT_IO:
        trt_mod, examples, dyn = compile_component(getattr(model, comp), comp, profiles[comp], half=half, workspace_gb=workspace_gb, device=device, tt=tt)
        path = out_dir / f"{comp}{SUFFIX}"
        tmp = path.with_name(path.name + ".partial" + SUFFIX)  # keep the .ep suffix on the temp file
        try:
            save_compiled(trt_mod, tmp, examples, dyn, tt)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        log.info("saved Torch-TensorRT %s -> %s", comp, path)
        paths[comp] = path
    return paths
