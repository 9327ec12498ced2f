"""`vmatte bench` and vmatte.bench on the CPU: size parsing, statistics, a tiny run, JSON and plot."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vmatte import bench as B
from vmatte.errors import VmatteError


def test_parse_sizes_names_and_wxh():
    assert B.parse_sizes("480p, 4k,320x200") == [("480p", 480, 854), ("4k", 2160, 3840), ("320x200", 200, 320)]
    with pytest.raises(VmatteError, match="unknown size"):
        B.parse_sizes("8k")
    with pytest.raises(VmatteError, match="no sizes"):
        B.parse_sizes(" , ")


def test_summarize_percentiles_and_fps():
    s = B.summarize(list(range(1, 101)))
    assert s["n"] == 100 and s["p50_ms"] == pytest.approx(50.5) and s["p99_ms"] == pytest.approx(99.01)
    assert s["fps"] == pytest.approx(1000 / 50.5)
    assert B.summarize([]) == {"n": 0}


def test_random_frame_is_not_flat():
    f = B.random_frame(48, 64, seed=1)
    assert f.shape == (48, 64, 3) and f.dtype == np.uint8 and f.std() > 10
    assert not np.array_equal(f, B.random_frame(48, 64, seed=2))


@pytest.fixture(scope="module")
def tiny_result():
    pytest.importorskip("torch")
    return B.run_bench(["torch"], "rt", "96x64,128x96", frames=2, warmup=1)


def test_run_bench_torch_cpu_structure(tiny_result):
    r = tiny_result
    assert r["weights"] in ("shipped", "random") and r["system"]["python"]
    assert [x["size"] for x in r["results"]] == ["96x64", "128x96"]
    for x in r["results"]:
        assert x["backend"] == "torch"
        for stage in ("segmenter", "generator", "refiner", "total"):
            assert x["eager"][stage]["n"] == 2 and x["eager"][stage]["p50_ms"] > 0
        assert x["fused"]["fps"] > 0 and x["fused_mode"] == "eager-chain"
        assert x["full_size"] == [64, 128] if x["size"] == "96x64" else True
    table = B.format_table(r)
    assert table.count("\n| torch |") == 2


def test_plot_writes_png(tiny_result, tmp_path):
    import cv2

    out = B.plot(tiny_result, tmp_path / "p.png")
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] > 100


def test_plot_cv2_fallback(tiny_result, tmp_path):
    series = {"a": [(1_000_000, 10.0), (2_000_000, 5.0)]}
    out = B._plot_cv2(series, "t", tmp_path / "q.png")
    assert out.is_file()
    with pytest.raises(VmatteError, match="nothing to plot"):
        B._plot_cv2({}, "t", tmp_path / "r.png")


def test_cli_bench_json(tmp_path, capsys):
    pytest.importorskip("torch")
    from vmatte.cli import main

    out = tmp_path / "b.json"
    rc = main(["bench", "--backend", "torch", "--sizes", "96x64", "--frames", "2", "--warmup", "0", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["results"][0]["size"] == "96x64"
    assert "| torch | 96x64 |" in capsys.readouterr().out


def test_cli_bench_rejects_bad_args(capsys):
    from vmatte.cli import main

    assert main(["bench", "--frames", "0"]) == 2
    assert "--frames" in capsys.readouterr().err
    assert main(["bench", "--backend", "torch", "--sizes", "9k"]) == 2


def test_end_to_end_cpu(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("av")
    video = B.make_test_video(tmp_path / "v.mp4", 64, 96, frames=4)
    wpath, _ = B.resolve_weights("rt", None)
    be = B.open_backend("torch", "rt", wpath)
    r = B.bench_end_to_end_cpu(be, video, 64, out=tmp_path / "o.mp4")
    assert r["frames"] == 4 and r["fps"] > 0 and (tmp_path / "o.mp4").is_file()


# ------------------------------------------------------------------------------------------------
# --stages: the per-stage CPU profile (vmatte.profile, vmatte.graph_profile); needs no torch
# ------------------------------------------------------------------------------------------------
def test_op_groups_map_known_ops_and_send_the_rest_to_other():
    from vmatte.graph_profile import op_group

    cases = {"Conv": "convolution", "FusedConv": "convolution", "Relu": "convolution", "Resize": "upsampling",
             "Mul": "scoring", "Sub": "scoring", "AveragePool": "scoring", "TopK": "scoring",
             "GatherElements": "gather", "ScatterElements": "paste", "ReorderInput": "layout",
             "ReorderOutput": "layout", "Gather": "other", "Concat": "other", "SomeNewOp": "other"}
    assert {op: op_group(op) for op in cases} == cases
    assert op_group("Add", "/net/Add") == "convolution"  # the refiner's patch net: its skip connection
    assert op_group("Add", "/Add_3") == "scoring" and op_group("Resize", "/net/Resize") == "upsampling"


def test_split_runs_assigns_kernels_to_their_run_and_sums_groups():
    from vmatte.graph_profile import split_runs, summarize_runs

    def node(ts, dur, op, name):
        return {"cat": "Node", "ts": ts, "dur": dur, "name": f"{name}_kernel_time", "args": {"op_name": op}}

    events = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 1000},
              node(10, 300, "Conv", "/c"), node(400, 200, "GatherElements", "/g"), node(700, 100, "Odd", "/o"),
              {"cat": "Session", "name": "model_run", "ts": 2000, "dur": 2000},
              node(2100, 500, "FusedConv", "/c"), node(2700, 400, "ScatterElements", "/s"),
              {"cat": "Node", "ts": 2800, "dur": 50, "name": "/c_fence_before", "args": {"op_name": "Conv"}}]
    runs = split_runs(events)
    assert [len(r[1]) for r in runs] == [3, 2] and runs[1][0] == pytest.approx(2.0)
    s = summarize_runs(runs)
    assert s["runs"] == 2 and s["groups"]["convolution"]["median_ms"] == pytest.approx(0.4)
    assert s["groups"]["other"]["median_ms"] == pytest.approx(0.05) and "upsampling" not in s["groups"]
    assert s["outside_kernels"]["median_ms"] == pytest.approx((0.4 + 1.1) / 2)
    assert list(s["top_nodes"])[:2] == ["FusedConv /c", "ScatterElements /s"] and s["ops"]["Conv"] == pytest.approx(0.15)


def test_prepare_timed_matches_api_prepare():
    from vmatte.api import prepare
    from vmatte.profile import _Clock, prepare_timed, source_frames

    rgb = next(source_frames(90, 160, 1))
    clock = _Clock()
    full, low = prepare_timed(rgb, 128, clock)
    ref_full, ref_low = prepare(rgb, 128)
    assert np.array_equal(full, ref_full) and np.array_equal(low, ref_low)
    assert set(clock.wall) == {"pad", "resize", "low_float", "full_float"}


def test_stage_profile_small_has_every_stage(tmp_path, monkeypatch):
    from vmatte.profile import MODELS, STAGES, StageProfile, format_stage_table, profile_stages

    monkeypatch.chdir(tmp_path)  # onnxruntime's profile files must not land here
    p = profile_stages(96, 128, frames=2, warmup=1, graph_runs=2)
    names = [s.name for s in p.stages]
    for key, label, kind in STAGES:
        if key == "full_float":  # the shipped export's refiner is its patch net plus host code: no float frame
            assert label not in names
            continue
        s = p.stages[names.index(label)]
        assert s.kind == kind and s.n == 2 and s.median_ms >= 0 and s.p95_ms >= s.median_ms and s.cpu_ms >= 0
    for m in MODELS:
        parts = [s for s in p.stages if s.kind == "part" and s.name.startswith(f"{m}: ")]
        assert parts and all(s.median_ms >= 0 for s in parts)
        assert p.graphs[m]["groups"]["convolution"]["median_ms"] > 0
    assert {"upsampling", "layout"} <= set(p.graphs["refiner"]["groups"])  # the patch net's graph
    assert not {"gather", "paste"} & set(p.graphs["refiner"]["groups"])  # done by the host
    assert p.frame_ms == pytest.approx(sum(s.median_ms for s in p.stages if s.kind == "frame")) and p.frame_ms > 0
    assert list(tmp_path.iterdir()) == []
    d = json.loads(json.dumps(p.as_dict()))
    assert format_stage_table(d) == format_stage_table(p) == format_stage_table(StageProfile.from_dict(d))
    assert "| **refiner** |" in format_stage_table(p)


def test_cli_bench_stages_prints_the_table(tmp_path, capsys):
    from vmatte.cli import main

    out = tmp_path / "s.json"
    assert main(["bench", "--stages", "--sizes", "360p", "--frames", "3", "--warmup", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| stage | median ms | p95 ms |" in text and "| **sum per frame (path stages)** |" in text
    assert "refiner: patch net (Conv, Relu)" in text and "640x360" in text
    assert "refiner: host plumbing (upsample, cell choice, window gather, paste)" in text  # 640x384 refines
    data = json.loads(out.read_text())
    assert data["backend"] == "onnxruntime" and data["stage_profiles"][0]["size"] == "360p"
    assert data["stage_profiles"][0]["frame_ms"] > 0 and data["system"]["cpu"]


def test_cli_bench_stages_rejects_gpu_options(capsys):
    from vmatte.cli import main

    assert main(["bench", "--stages", "--backend", "torch"]) == 2
    assert "--stages profiles the CPU path" in capsys.readouterr().err
    assert main(["bench", "--stages", "--plot", "p.png"]) == 2


def test_stage_profile_needs_no_torch():
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys
        sys.modules["torch"] = sys.modules["onnx"] = None  # as on the light install
        from vmatte.profile import profile_stages
        p = profile_stages(64, 96, frames=1, warmup=0, graph_runs=1)
        assert p.frame_ms > 0 and p.graphs["refiner"]["runs"] == 1
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]
