"""Where the time goes inside each ONNX graph on the CPU: onnxruntime's own profiler, its kernel
times summed per op group (convolutions, upsampling, patch scoring, gather, paste, layout
reorders, other). For the refiner that is its patch net's graph when the export has one (the
onnxruntime backend then does the upsample, cell choice, gather and paste on the host), else the
whole refiner graph. The host-side stage timer (vmatte.profile) sees a component as one call; this
says which ops in it to make cheaper.

The profiled sessions take the onnxruntime backend's options (all graph optimisations, one
intra-op thread), so the ops are the ones the backend runs, fused the same way (FusedConv,
ReorderInput/ReorderOutput around NCHWc convolutions). The profiler's JSON goes to a temporary
folder and is deleted once read.
"""
from __future__ import annotations

import bisect
import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

log = logging.getLogger(__name__)

GROUPS = ("convolution", "upsampling", "scoring", "gather", "paste", "layout", "other")

# onnxruntime op name (after its graph optimisations) -> group; anything else is "other".
OP_GROUPS: dict[str, str] = {
    **dict.fromkeys(("Conv", "FusedConv", "NhwcFusedConv", "ConvTranspose", "QLinearConv", "BatchNormalization",
                     "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu"), "convolution"),
    **dict.fromkeys(("Resize", "Upsample"), "upsampling"),
    **dict.fromkeys(("Mul", "Sub", "Add", "Div", "AveragePool", "GlobalAveragePool", "MaxPool", "ReduceMean",
                     "ReduceSum", "TopK"), "scoring"),
    "GatherElements": "gather",
    **dict.fromkeys(("ScatterElements", "ScatterND"), "paste"),
    **dict.fromkeys(("ReorderInput", "ReorderOutput", "Transpose"), "layout"),
}

# The refiner's patch network is exported under this node-name scope (vmatte/models/refiner.py's
# `self.net`): its elementwise ops (the skip connection's Add) are convolution work, not scoring.
PATCH_NET_SCOPE = "/net/"

_LABELS = {"convolution": "convolutions", "upsampling": "upsampling (Resize)",
           "scoring": "elementwise (Mul/Sub/Add, pooling)", "gather": "gather (GatherElements)",
           "paste": "paste (ScatterElements)", "layout": "layout reorders (ReorderInput/Output, Transpose)",
           "other": "other ops (shape arithmetic, Concat, Pad, ...)"}
_REFINER_LABELS = {"convolution": "patch net (Conv, Relu)",
                   "scoring": "elementwise (patch net: normalise, residual add; whole graph: cell scoring, TopK)",
                   "gather": "patch gather (GatherElements)", "paste": "patch paste (ScatterElements)"}


def op_group(op: str, node: str = "") -> str:
    """The group of an op, given its op_name and (optionally) its node name."""
    group = OP_GROUPS.get(op, "other")
    if group == "scoring" and PATCH_NET_SCOPE in node:
        return "convolution"
    return group


def group_label(component: str, group: str) -> str:
    """A table label for a group: the refiner's say what its ops do there (patch scoring...)."""
    if component == "refiner" and group in _REFINER_LABELS:
        return _REFINER_LABELS[group]
    return _LABELS.get(group, group)


def split_runs(events: Sequence[dict[str, Any]]) -> list[tuple[float, list[tuple[str, str, float]]]]:
    """An onnxruntime profile (the end_profiling() JSON) -> per run, in order: (the run's wall ms,
    [(op_name, node name, kernel ms), ...]). Kernel events are the "Node" events named
    `<node>_kernel_time`; each belongs to the model_run event it falls in."""
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    starts = [r[0] for r in runs]
    out: list[tuple[float, list[tuple[str, str, float]]]] = [((b - a) / 1e3, []) for a, b in runs]
    for e in events:
        name = e.get("name", "")
        if e.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        i = bisect.bisect_right(starts, e["ts"]) - 1
        if i >= 0 and e["ts"] <= runs[i][1]:
            out[i][1].append((e.get("args", {}).get("op_name", "?"), name[: -len("_kernel_time")], e["dur"] / 1e3))
    return out


def _stats(ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(ms, np.float64)
    return {"median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95))} if a.size else \
        {"median_ms": 0.0, "p95_ms": 0.0}


def _medians(per_run: dict[str, list[float]], runs: int, top: int | None = None) -> dict[str, float]:
    """{key: median ms per run (0 in runs without it)}, heaviest first, the `top` heaviest."""
    keys = sorted(per_run, key=lambda k: -sum(per_run[k]))[:top]
    return {k: round(float(np.median(per_run[k] + [0.0] * (runs - len(per_run[k])))), 4) for k in keys}


def summarize_runs(runs: Sequence[tuple[float, list[tuple[str, str, float]]]], top_nodes: int = 8) -> dict[str, Any]:
    """Per group the median and p95 over runs of the ms spent in it per run; per op and for the
    `top_nodes` heaviest nodes ("op node") the median; the run's wall, the kernels' sum and what
    lies outside the kernels (executor, allocation, copies)."""
    per_group: dict[str, list[float]] = {g: [] for g in GROUPS}
    per_op: dict[str, list[float]] = {}
    per_node: dict[str, list[float]] = {}
    walls, kernels = [], []
    for wall, nodes in runs:
        sums = dict.fromkeys(GROUPS, 0.0)
        ops: dict[str, float] = {}
        named: dict[str, float] = {}
        for op, node, ms in nodes:
            sums[op_group(op, node)] += ms
            ops[op] = ops.get(op, 0.0) + ms
            named[f"{op} {node}"] = named.get(f"{op} {node}", 0.0) + ms
        for g in GROUPS:
            per_group[g].append(sums[g])
        for d, acc in ((ops, per_op), (named, per_node)):
            for k, ms in d.items():
                acc.setdefault(k, []).append(ms)
        walls.append(wall)
        kernels.append(sum(sums.values()))
    return {"runs": len(runs), "run": _stats(walls), "kernels": _stats(kernels),
            "outside_kernels": _stats([w - k for w, k in zip(walls, kernels)]),
            "groups": {g: _stats(v) for g, v in per_group.items() if max(v, default=0.0) > 0},
            "ops": _medians(per_op, len(runs)), "top_nodes": _medians(per_node, len(runs), top_nodes)}


def _session(path: Path, prefix: Path, threads: int):
    """An InferenceSession as the onnxruntime backend opens it, with the profiler on."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    opts.enable_profiling = True
    opts.profile_file_prefix = str(prefix)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def profile_graphs(onnx_dir: str | Path, inputs: Iterable[tuple[np.ndarray, np.ndarray]], warmup: int = 2,
                   threads: int = 1) -> dict[str, dict[str, Any]]:
    """Run segmenter -> generator -> refiner with the profiler over `inputs` ((full, low) pairs
    as vmatte.api.prepare makes them) -> {component: summarize_runs(...)} over the runs after the
    first `warmup`. When the export has the refiner's patch net alone (PATCH_NET), the backend runs
    that around host code (vmatte.ops.patches), so "refiner" profiles the patch net's graph."""
    from .backends.base import PATCH_NET, part_file, patch_plan, window_multiple
    from .ops.patches import in_multiples, refine_alpha

    patch_file = part_file(Path(onnx_dir), PATCH_NET)  # the files the backend would run here
    files_of = {c: part_file(Path(onnx_dir), c) or Path(onnx_dir) / f"{c}.onnx" for c in ("segmenter", "generator", "refiner")}
    if patch_file is not None:
        files_of["refiner"] = patch_file
    with tempfile.TemporaryDirectory(prefix="vmatte-ortprof-") as tmp:
        sessions = {c: _session(f, Path(tmp) / c, threads) for c, f in files_of.items()}
        plan, multiple = None, 1
        if patch_file is not None:
            meta = sessions["refiner"].get_modelmeta().custom_metadata_map
            plan, multiple = patch_plan(meta, patch_file), window_multiple(meta)

        def run_net(img: np.ndarray, base: np.ndarray) -> np.ndarray:
            return sessions["refiner"].run(None, {"image": img, "alpha": base})[0]

        patch_net = in_multiples(run_net, multiple)

        try:
            for full, low in inputs:
                mask = sessions["segmenter"].run(None, {"image": low})[0]
                coarse = sessions["generator"].run(None, {"image": low, "mask": mask})[0]
                if plan is None:
                    sessions["refiner"].run(None, {"image": full, "coarse": coarse})
                else:
                    refine_alpha(full[0].transpose(1, 2, 0), coarse[0, 0], full.shape[2:], *plan, patch_net)
        finally:
            files = {c: s.end_profiling() for c, s in sessions.items()}
        result = {}
        for c in files_of:
            with open(files[c]) as f:
                runs = split_runs(json.load(f))
            result[c] = summarize_runs(runs[warmup:])
        log.debug("onnxruntime profiles read from %s (deleted)", tmp)
    return result
