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
