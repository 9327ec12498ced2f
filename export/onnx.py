"""ONNX export of the three components (opset 17, dynamic batch and spatial axes), FP32 or FP16.

Each file carries metadata props (vmatte version, model, component, precision, graph version,
weights sha256) and
passes onnx.checker before it replaces an older file."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from vmatte.backends.base import COMPONENT_IO, GRAPH_VERSION, PAIRED, PATCH_NET, PATCH_NET_IO, PATCH_NET_PAIRS

PATCH_NETS = (PATCH_NET, PATCH_NET_PAIRS)

log = logging.getLogger(__name__)

OPSET = 17


def example_inputs(component: str, batch: int = 1, low: tuple[int, int] = (192, 320), full: tuple[int, int] = (384, 640)):
    """Random example inputs for tracing one component."""
    g = torch.Generator().manual_seed(0)
    h, w = low
    H, W = full
    if component == "segmenter":
        return (torch.rand(batch, 3, h, w, generator=g),)
    if component == "generator":
        return (torch.rand(batch, 3, h, w, generator=g), torch.rand(batch, 1, h, w, generator=g))
    return (torch.rand(batch, 3, H, W, generator=g), torch.rand(batch, 1, h, w, generator=g))


def _add_metadata(path: Path, metadata: dict[str, str], check: bool) -> None:
    """Write metadata props into the ONNX file at `path` and run the ONNX checker on it."""
    import onnx

    m = onnx.load(str(path))
    if metadata:
        existing = {p.key: p for p in m.metadata_props}
        for k, v in metadata.items():
            if k in existing:
                existing[k].value = str(v)
            else:
                m.metadata_props.add(key=str(k), value=str(v))
        onnx.save(m, str(path))
    if check:
        onnx.checker.check_model(str(path))  # path form also handles >2 GB models


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata props of an ONNX file (e.g. weights_sha256, precision)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in m.metadata_props}


def _patch_net_parts(model, component: str):
    """The patch net's module, example windows and metadata (vmatte.backends.base.PATCH_NET, or
    PATCH_NET_PAIRS: the same net with windows in pairs, vmatte.models.pairs)."""
    from vmatte.models.refiner import PATCH, PatchRefiner

    cfg = model.refiner.cfg
    S = PATCH + 2 * cfg.context
    g = torch.Generator().manual_seed(0)
    meta = {"vmatte_patches": str(cfg.patches), "vmatte_context": str(cfg.context)}
    if component == PATCH_NET_PAIRS:
        from vmatte.models.pairs import PAIRS, PairedPatchNet

        module, K = PairedPatchNet(model.refiner), 2 * PAIRS
        meta["vmatte_window_multiple"] = str(PAIRS)
    else:
        module, K = PatchRefiner(model.refiner), max(1, cfg.patches)
    args = (torch.rand(K, 3, S, S, generator=g), torch.rand(K, 1, S, S, generator=g))
    return module, args, meta


def export_component(model, component: str, path: str | Path, half: bool = False, opset: int = OPSET, metadata: dict[str, str] | None = None, check: bool = True) -> Path:
    """Export model.<component> (or the refiner's patch net, PATCH_NETS) to `path` with named inputs
    (see COMPONENT_IO, PATCH_NET_IO) and dynamic axes. half=True exports an FP16 graph (FP16 inputs
    and outputs) for strongly typed TensorRT builds."""
    if opset < 17:
        raise ValueError(f"opset {opset} is too old; vmatte needs opset >= 17 (pass opset=17 or newer)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra: dict[str, str] = {}
    if component in PATCH_NETS:
        names, out = PATCH_NET_IO
        module, args, extra = _patch_net_parts(model, component)
        module = module.eval()
    elif component == PAIRED["generator"]:  # the generator's encoders side by side (vmatte.models.pairs)
        from vmatte.models.pairs import PairedGenerator

        names, out = COMPONENT_IO["generator"]
        module, args = PairedGenerator(model.generator).eval(), example_inputs("generator")
    else:
        names, out = COMPONENT_IO[component]
        module = getattr(model, component).eval()
        args = example_inputs(component)
    if half:
        import copy

        module = copy.deepcopy(module).half()  # never turn the caller's model to half
        args = tuple(a.half() for a in args)
    if component in PATCH_NETS:  # fixed window size, any number of windows (of pairs)
        axes = {n: {0: "windows"} for n in (*names, out)}
    else:
        axes = {n: {0: "batch", 2: f"{n}_h", 3: f"{n}_w"} for n in names}
        if component in ("generator", PAIRED["generator"]):  # image and mask share their size
            axes["mask"] = {0: "batch", 2: "image_h", 3: "image_w"}
        axes[out] = {0: "batch", 2: "out_h", 3: "out_w"}
    tmp = path.with_name(path.name + ".partial")
    meta = {"vmatte_component": component, "vmatte_precision": "fp16" if half else "fp32",
            "vmatte_graph_version": str(GRAPH_VERSION)}
    try:
        from vmatte import __version__

        meta["vmatte_version"] = __version__
    except ImportError:
        pass
    cfg = getattr(model, "cfg", None)
    if cfg is not None and getattr(cfg, "name", None):
        meta["vmatte_model"] = cfg.name
    meta.update(extra)
    meta.update(metadata or {})
    try:
        with torch.no_grad():
            torch.onnx.export(module, args, str(tmp), input_names=list(names), output_names=[out], dynamic_axes=axes, opset_version=opset, dynamo=False)
        _add_metadata(tmp, meta, check)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s -> %s", component, path)
    return path


def onnx_parts(half: bool = False) -> tuple[str, ...]:
    """The files every ONNX export writes (<part>.onnx): the three components, and for FP32 (the
    onnxruntime CPU path) the refiner's patch net too. FP32 exports add the paired files
    (PAIRED, vmatte.models.pairs) where the model allows them."""
    return tuple(COMPONENT_IO) + (() if half else (PATCH_NET,))


def export_onnx(model, out_dir: str | Path, half: bool = False, opset: int = OPSET, metadata: dict[str, str] | None = None) -> dict[str, Path]:
    """Export the three components to out_dir/{segmenter,generator,refiner}.onnx, and for FP32 the
    refiner's patch net (refiner_patches.onnx) and the paired files (generator_pairs.onnx,
    refiner_patches_pairs.onnx; skipped, with a log line, for a model whose shape does not pair)."""
    out = {c: export_component(model, c, Path(out_dir) / f"{c}.onnx", half=half, opset=opset, metadata=metadata) for c in onnx_parts(half)}
    for c in () if half else PAIRED.values():
        try:
            out[c] = export_component(model, c, Path(out_dir) / f"{c}.onnx", half=half, opset=opset, metadata=metadata)
        except ValueError as e:  # e.g. a refiner context under its decoder's reach
            (Path(out_dir) / f"{c}.onnx").unlink(missing_ok=True)  # never a stale one beside fresh files
            log.info("no %s.onnx for this model (%s); onnxruntime runs the plain file", c, e)
    return out
