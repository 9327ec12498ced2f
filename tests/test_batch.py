"""Batches on one machine (vmatte.batch, vmatte.workers): many files, one failing or its worker
killed without stopping the others, resume after an interruption, manifests, the CLI."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from vmatte.batch import (BatchInterrupted, Job, cpu_plan, expand_inputs, jobs_into_folder, read_manifest,
                          run_batch, throttled, wants_batch)
from vmatte.errors import VmatteError

from _batch_fakes import Broken, DeviceProbe, DiskFullOn, KillOnce, Slow
from _media import EllipseMatter, make_video, read_video


def clips(folder: Path, n: int = 4, bad: bool = True, frames: int = 10) -> Path:
    """`n` clips (c0.mp4 ...) and, with bad, a corrupt one (bad.mp4) in `folder`."""
    folder.mkdir(exist_ok=True)
    for i in range(n):
        make_video(folder / f"c{i}.mp4", n=frames)
    if bad:
        (folder / "bad.mp4").write_bytes(os.urandom(3000))
    return folder


def partials(*folders: Path) -> list[Path]:
    return [p for f in folders for p in f.iterdir() if ".partial" in p.name]


def check_outputs(out: Path, names: list[str], frames: int = 10) -> None:
    """Every output is a whole video."""
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    for n in names:
        assert len(read_video(out / n)[0]) == frames


def test_one_corrupt_input_does_not_stop_the_others(tmp_path):
    src, out = clips(tmp_path / "in"), tmp_path / "out"
    out.mkdir()
    rep = run_batch(jobs_into_folder(expand_inputs([str(src)]), out), matter=EllipseMatter, workers=2)
    assert rep.counts() == {"done": 4, "skipped": 0, "failed": 1, "pending": 0} and not rep.ok
    bad = next(r for r in rep.results if r.status == "failed")
    assert bad.input.endswith("bad.mp4") and "cannot open" in bad.reason and "\n" not in bad.reason
    check_outputs(out, [f"c{i}.mp4" for i in range(4)])
    assert not partials(out)
    d = json.loads(rep.write(tmp_path / "r.json").read_text())
    assert d["summary"]["failed"] == 1 and {f["status"] for f in d["files"]} == {"done", "failed"}


def test_full_disk_on_one_file(tmp_path):
    """A write failing mid-file (disk full) fails that file with the reason and its fix; its
    partial output is gone; the other files finish."""
    src, out = clips(tmp_path / "in", 3, bad=False), tmp_path / "out"
    out.mkdir()
    rep = run_batch(jobs_into_folder(expand_inputs([str(src)]), out), matter=DiskFullOn("c1.mp4"), workers=2)
    assert [r.status for r in rep.results] == ["done", "failed", "done"]
    assert "No space left on device" in rep.results[1].reason and "free space" in rep.results[1].reason
    check_outputs(out, ["c0.mp4", "c2.mp4"])
    assert not partials(out)


@pytest.mark.parametrize("retries,workers", [(1, 2), (0, 1)])
def test_killed_worker_mid_file(tmp_path, retries, workers):
    """A worker SIGKILLed while its file is half-written: the file is run again in a fresh worker
    (retries=1) or reported failed (retries=0); either way nothing partial is left (one worker: the
    partial file on disk at the kill was the killed file's own) and the other files finish."""
    src, out = clips(tmp_path / "in", 3, bad=False, frames=40), tmp_path / "out"  # long enough to be half-written
    out.mkdir()
    marker = tmp_path / "killed"
    rep = run_batch(jobs_into_folder(expand_inputs([str(src)]), out), matter=KillOnce(str(marker), str(out)),
                    workers=workers, retries=retries)
    assert marker.exists()  # a worker did die
    assert not partials(out)
    hit = [r for r in rep.results if r.attempts > 1 or r.status == "failed"]
    assert len(hit) == 1
    if retries:
        assert rep.ok and hit[0].attempts == 2 and hit[0].status == "done"
        check_outputs(out, ["c0.mp4", "c1.mp4", "c2.mp4"], 40)
    else:
        assert hit[0].status == "failed" and "killed by SIGKILL" in hit[0].reason
        assert rep.counts()["done"] == 2
        check_outputs(out, [Path(r.output).name for r in rep.results if r.status == "done"], 40)


def test_resume_after_an_interrupted_batch(tmp_path):
    src, out = clips(tmp_path / "in", 4, bad=False), tmp_path / "out"
    out.mkdir()
    jobs = jobs_into_folder(expand_inputs([str(src)]), out)

    def stop_after_first(p):
        if p.finished >= 1:
            raise KeyboardInterrupt

    with pytest.raises(BatchInterrupted) as ei:
        run_batch(jobs, matter=Slow(0.05), workers=2, progress=stop_after_first)
    rep = ei.value.report
    assert rep.interrupted and rep.counts()["done"] >= 1 and rep.counts()["pending"] >= 1 and not partials(out)
    # Every file reported done is there; a file that finished in the instant of the stop may be
    # there too, still reported not run: what is there is whole either way (resume then skips it).
    assert {str(out / p.name) for p in out.iterdir()} >= {r.output for r in rep.results if r.status == "done"}
    check_outputs(out, [p.name for p in out.iterdir()])  # what is there is whole
    first = {str(p): p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(VmatteError, match="already exists?; pass --resume"):
        run_batch(jobs, matter=EllipseMatter)
    rep2 = run_batch(jobs, matter=EllipseMatter, resume=True, workers=2)
    assert rep2.ok and rep2.counts()["skipped"] == len(first) and rep2.counts()["done"] == 4 - len(first)
    assert all(os.stat(o).st_mtime_ns == t for o, t in first.items())  # kept, not redone
    check_outputs(out, [f"c{i}.mp4" for i in range(4)])
    (out / "c0.mp4").write_bytes(b"")  # an output that is not complete is made again
    rep3 = run_batch(jobs, matter=EllipseMatter, resume=True)
    assert rep3.counts() == {"done": 1, "skipped": 3, "failed": 0, "pending": 0}
    check_outputs(out, [f"c{i}.mp4" for i in range(4)])


def test_manifests_text_and_jsonl(tmp_path):
    clips(tmp_path / "in", 2, bad=False)
    (tmp_path / "out").mkdir()
    cv2.imwrite(str(tmp_path / "bg.png"), np.full((8, 8, 3), (0, 0, 255), np.uint8))
    text = tmp_path / "jobs.txt"
    text.write_text("# clips\n\nin/c0.mp4 -> out/a.mp4\n  in/c1.mp4->out/b.mkv  \n")
    jobs = read_manifest(text)
    assert [(j.input, j.output) for j in jobs] == [(tmp_path / "in/c0.mp4", tmp_path / "out/a.mp4"),
                                                  (tmp_path / "in/c1.mp4", tmp_path / "out/b.mkv")]
    jl = tmp_path / "jobs.jsonl"
    jl.write_text('{"input": "in/c0.mp4", "output": "out/m.mp4", "output_kind": "alpha"}\n'
                  '{"input": "in/c1.mp4", "output": "out/r.mp4", "background": "bg.png"}\n')
    rep = run_batch(read_manifest(jl), matter=EllipseMatter, background="green", workers=1)
    assert rep.ok
    m, _, _ = read_video(tmp_path / "out/m.mp4")
    r, _, _ = read_video(tmp_path / "out/r.mp4")
    assert abs(int(m[0][0][1, -2, 0]) - int(m[0][0][1, -2, 1])) < 8 and m[0][0][1, -2, 0] < 30  # alpha: grey, 0 outside
    assert r[0][0][1, -2, 0] > 200 and r[0][0][1, -2, 1] < 60  # the file's own red background, not the default green


@pytest.mark.parametrize("body,match", [
    ("in/c0.mp4 out/a.mp4\n", "line 1: expected 'INPUT -> OUTPUT'"),
    ("# only a comment\n", "lists no files"),
    ('{"input": "in/c0.mp4", "outptu": "o.mp4"}\n', "line 1: a JSON line needs keys input and output"),
    ('{"input": "in/c0.mp4", \n', "line 1: not valid JSON"),
    ('{"input": 5, "output": "x.mp4"}\n', "m.txt line 1: input must be a path"),
    ('# jobs\n{"input": "a.mp4", "output": "b.mp4"}\n{"input": "c.mp4", "output": null}\n', "m.txt line 3: output must be a path"),
    ('{"input": "", "output": "x.mp4"}\n', "line 1: input must be a path"),
    ('{"input": "a.mp4", "output": "x.mp4", "background": 3}\n', "line 1: background must be a string or null"),
    ('{"input": "a.mp4", "output": "x.mp4", "output_kind": ["alpha"]}\n', "line 1: output_kind must be a string or null"),
])
def test_bad_manifest_lines_are_one_line_errors(tmp_path, body, match):
    (tmp_path / "m.txt").write_text(body)
    with pytest.raises(VmatteError, match=match) as ei:
        read_manifest(tmp_path / "m.txt")
    assert "\n" not in str(ei.value)


@pytest.mark.parametrize("case", ["same_output", "output_is_input", "bad_kind", "bad_background", "alpha_in_mp4",
                                  "resume_and_overwrite", "broken_model"])
def test_batch_is_checked_before_any_work(tmp_path, case):
    """What would make every file fail alike, or files clobber each other, stops the batch before
    it starts: one line, nothing written."""
    src = clips(tmp_path / "in", 2, bad=False)
    out = tmp_path / "out"
    out.mkdir()
    a, b = src / "c0.mp4", src / "c1.mp4"
    jobs, kw = [Job(a, out / "a.mp4"), Job(b, out / "b.mp4")], {}
    if case == "same_output":
        jobs[1] = Job(b, out / "a.mp4")
    elif case == "output_is_input":
        jobs[1] = Job(b, a)
    elif case == "bad_kind":
        jobs[1] = Job(b, out / "b.mp4", output_kind="sparkles", where="m.jsonl line 2")
    elif case == "bad_background":
        kw["background"] = "nosuchfile.jpg"
    elif case == "alpha_in_mp4":
        kw["background"] = "transparent"
    elif case == "resume_and_overwrite":
        kw.update(resume=True, overwrite=True)
    elif case == "broken_model":
        kw["matter"] = Broken()
    kw.setdefault("matter", EllipseMatter)
    with pytest.raises(VmatteError) as ei:
        run_batch(jobs, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and {"bad_kind": "m.jsonl line 2: unknown output kind", "broken_model": "ships no weights",
                                "same_output": "would both write"}.get(case, "") in msg
    assert list(out.iterdir()) == []


def test_missing_input_fails_before_any_work(tmp_path):
    """An input of a manifest that does not exist (a typo) stops the batch before it starts, naming
    the line; with --resume, a file whose output is complete needs no input."""
    src = clips(tmp_path / "in", 1, bad=False)
    (tmp_path / "out").mkdir()
    (tmp_path / "m.txt").write_text("in/c0.mp4 -> out/a.mp4\nin/typo.mp4 -> out/b.mp4\n")
    jobs = read_manifest(tmp_path / "m.txt")
    with pytest.raises(VmatteError, match=r"^m.txt line 2: input not found: .*typo.mp4; check the path") as ei:
        run_batch(jobs, matter=EllipseMatter, workers=1)
    assert "\n" not in str(ei.value) and list((tmp_path / "out").iterdir()) == []
    make_video(tmp_path / "out" / "b.mp4")  # already made; its input since removed
    rep = run_batch(jobs, matter=EllipseMatter, workers=1, resume=True)
    assert rep.ok and [r.status for r in rep.results] == ["done", "skipped"]
    assert len(read_video(tmp_path / "out" / "a.mp4")[0]) == len(read_video(src / "c0.mp4")[0])


def test_throttled_progress():
    sent = []
    f = throttled(lambda d, t: sent.append((d, t)), 3600)
    for d in (1, 2, 3, 10):
        f(d, 10)
    f(1, None)
    f(2, None)
    assert sent == [(1, 10), (10, 10)]  # the first, then nothing within the hour but the last frame
    f = throttled(lambda d, t: sent.append((d, t)), 0)
    f(1, None)
    f(2, None)
    assert sent[2:] == [(1, None), (2, None)]


def test_inputs_globs_folders_and_output_names(tmp_path):
    src = clips(tmp_path / "in", 2, bad=False)
    (src / "notes.txt").write_text("not media")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    cv2.imwrite(str(imgs / "p.png"), np.zeros((20, 20, 3), np.uint8))
    assert not wants_batch([str(src / "c0.mp4")]) and not wants_batch([str(imgs)])  # the single-input path
    assert wants_batch([str(src)]) and wants_batch([str(tmp_path / "in" / "*.mp4")]) and wants_batch(["a", "b"])
    assert expand_inputs([str(src)]) == [src / "c0.mp4", src / "c1.mp4"]  # a folder of videos: its videos
    assert expand_inputs([str(tmp_path / "in" / "*")]) == [src / "c0.mp4", src / "c1.mp4"]  # not notes.txt
    assert expand_inputs([str(imgs)]) == [imgs]  # a folder of images stays one input (an image sequence)
    names = [j.output.name for j in jobs_into_folder([src / "c0.mp4", imgs], tmp_path / "o", needs_alpha=True)]
    assert names == ["c0.mov", "imgs"]  # transparent: a container with alpha
    assert [j.output.name for j in jobs_into_folder([src / "c0.mp4"], tmp_path / "o", output_ext="mkv")] == ["c0.mkv"]
    for bad, match in (([str(tmp_path / "nope.mp4")], "input not found"), ([str(tmp_path / "*.avi")], "no video or image matches")):
        with pytest.raises(VmatteError, match=match):
            expand_inputs(bad)
    with pytest.raises(VmatteError, match="-o must be a folder"):
        jobs_into_folder([src / "c0.mp4", src / "c1.mp4"], tmp_path / "o.mp4")
    other = tmp_path / "other"
    other.mkdir()
    make_video(other / "c0.mp4")
    with pytest.raises(VmatteError, match="would both write"):  # the same name from two folders
        run_batch(jobs_into_folder(expand_inputs([str(src), str(other)]), tmp_path), matter=EllipseMatter)


def test_cpu_plan():
    assert cpu_plan(2, 10) == (1, 2) and cpu_plan(16, 10) == (8, 2) and cpu_plan(3, 10) == (1, 3)
    assert cpu_plan(16, 3) == (3, 5)  # no more workers than files; the cores shared among them
    assert cpu_plan(8, 10, threads=1) == (8, 1)
    assert cpu_plan(8, 10, workers=3) == (3, 2)
    assert cpu_plan(1, 10) == (1, 1)


def test_devices_one_worker_per_gpu(tmp_path):
    """--devices 0,1: two workers, each seeing only its own GPU (CUDA_VISIBLE_DEVICES) before any
    model is built; the report says which file ran on which."""
    src, out, probes = clips(tmp_path / "in", 4, bad=False), tmp_path / "out", tmp_path / "probes"
    out.mkdir()
    probes.mkdir()
    rep = run_batch(jobs_into_folder(expand_inputs([str(src)]), out), matter=DeviceProbe(str(probes)), devices=["0", "1"])
    assert rep.ok and "one per GPU (0, 1)" in rep.workers
    assert sorted(p.read_text() for p in probes.iterdir()) == ["0", "1"]
    assert {r.worker for r in rep.results} <= {"GPU 0", "GPU 1"}
    with pytest.raises(VmatteError, match="one worker per GPU"):
        run_batch(jobs_into_folder(expand_inputs([str(src)]), tmp_path / "o2"), matter=EllipseMatter,
                  devices=["0", "1"], workers=3)


def test_gpu_backends_default_to_one_worker_per_visible_gpu(monkeypatch):
    """Without --devices or --workers, a GPU backend gets one worker per visible GPU (not one per
    core, all on GPU 0); CPU backends and machines without NVIDIA devices keep the CPU plan."""
    import vmatte.backends as B
    import vmatte.workers as W
    from vmatte.batch import MatterSpec

    torch = pytest.importorskip("torch")
    monkeypatch.setattr(B, "resolve_backend", lambda name: "torch-cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(W.glob, "glob", lambda pattern: [])  # no /dev/nvidia*
    assert W.default_devices(MatterSpec(backend="onnxruntime")) is None and W.default_devices(EllipseMatter) is None
    assert W.default_devices(MatterSpec(backend="auto")) is None
    assert W.default_devices(MatterSpec(backend="torch-cuda")) == ["0", "1"]
    monkeypatch.setattr(W.glob, "glob", lambda pattern: ["/dev/nvidia0", "/dev/nvidia1"])
    assert W.default_devices(MatterSpec(backend="auto")) == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert W.default_devices(MatterSpec(backend="tensorrt")) == ["3", "5"]
    monkeypatch.setattr(B, "resolve_backend", lambda name: "onnxruntime")  # auto found no GPU backend
    assert W.default_devices(MatterSpec(backend="auto")) is None


def test_task_resources_ask_for_gpus_only_for_gpu_backends():
    from vmatte.distributed import task_resources

    assert task_resources("onnxruntime", 2, {"CPU": 8, "GPU": 2}) == {"num_cpus": 2, "num_gpus": 0}
    assert task_resources("torch-cuda", 1, {"CPU": 8}) == {"num_cpus": 1, "num_gpus": 1}
    assert task_resources("auto", 1, {"CPU": 8, "GPU": 1}) == {"num_cpus": 1, "num_gpus": 1}
    assert task_resources("auto", 1, {"CPU": 8}) == {"num_cpus": 1, "num_gpus": 0}
    assert task_resources("tensorrt", 1, {"GPU": 4}, gpus_per_task=0.5)["num_gpus"] == 0.5


def test_cli_batch_with_the_shipped_model(tmp_path, capsys):
    """`vmatte process FOLDER -o OUT --report R`: the real model (onnxruntime) in worker processes;
    the corrupt file is named in the summary and the report, the exit code is 1, the rest done;
    a second run with --resume skips them all."""
    from vmatte.cli import main

    src = clips(tmp_path / "in", 2)
    out, report = tmp_path / "out", tmp_path / "r.json"
    assert main(["process", str(src), "-o", str(out), "--report", str(report), "-q"]) == 1
    err = capsys.readouterr().err
    assert "2 done, 0 skipped, 1 failed" in err and f"failed: {src / 'bad.mp4'}: cannot open" in err
    assert "Traceback" not in err
    d = json.loads(report.read_text())
    assert d["summary"] == {"done": 2, "skipped": 0, "failed": 1, "pending": 0}
    check_outputs(out, ["c0.mp4", "c1.mp4"])
    (src / "bad.mp4").unlink()
    assert main(["process", str(src / "*.mp4"), "-o", str(out), "--resume"]) == 0
    assert "0 done, 2 skipped, 0 failed" in capsys.readouterr().err


@pytest.mark.parametrize("args,match", [
    ([], "give an input and -o"),
    (["{src}/c0.mp4", "{src}/c1.mp4"], "-o/--output is required"),
    (["{src}", "-o", "{tmp}/o.mp4"], "-o must be a folder"),
    (["--manifest", "{tmp}/m.txt", "-o", "{tmp}/x"], "--manifest names every input and output"),
    (["--manifest", "{tmp}/m.txt", "--output-ext", "mov"], "--manifest names every input and output"),
    (["{src}/c0.mp4", "-o", "{tmp}/o.mp4", "--output-ext", "mov"], "--output-ext sets the extension of outputs written "
                                                                   "into the -o folder, but -o"),
    (["{src}", "-o", "{tmp}/o", "--report", "{tmp}/m.txt"], "the report {tmp}/m.txt already exists; pass --overwrite"),
    (["{src}", "-o", "{tmp}/o", "--report", "{tmp}/m.txt", "--resume"], "(--resume cannot be combined with --overwrite)"),
    (["{src}", "-o", "{tmp}/o", "--report", "{tmp}", "--overwrite"], "is a folder; give the path of a file"),
    (["{src}", "-o", "{tmp}/o", "--workers", "0"], "--workers 0 must be 1 or more"),
    (["{src}", "-o", "{tmp}/o", "--devices", "0,0"], "not a list of distinct GPU ids"),
    (["{src}", "-o", "{tmp}/o", "--devices", "0", "--backend", "onnxruntime"], "--devices runs one worker per GPU"),
    (["{src}", "-o", "{tmp}/o", "--report", "{tmp}/no/r.json"], "--report"),
    (["{src}", "-o", "{tmp}/o", "--resume", "--overwrite"], "pass one of the two"),
    (["{src}", "-o", "{tmp}/o", "--ray-gpus", "1"], "--ray-gpus 1 needs --ray"),
])
def test_cli_batch_usage_errors(tmp_path, capsys, args, match):
    from vmatte.cli import main

    src = clips(tmp_path / "in", 2, bad=False)
    (tmp_path / "m.txt").write_text("in/c0.mp4 -> a.mp4\n")
    argv = ["process"] + [a.format(src=src, tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vmatte: error: ") and err.count("\n") == 1 and match.format(tmp=tmp_path) in err, err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.mp4").exists() and not (tmp_path / "a.mp4").exists()
    assert (tmp_path / "m.txt").read_text() == "in/c0.mp4 -> a.mp4\n"  # an existing --report is kept


def test_cli_single_input_with_a_batch_option_is_a_batch_of_one(tmp_path, capsys):
    from vmatte.cli import main

    make_video(tmp_path / "a.mp4")
    assert main(["process", str(tmp_path / "a.mp4"), "-o", str(tmp_path / "b.mp4"), "--report", str(tmp_path / "r.json"),
                 "-q"]) == 0
    assert len(read_video(tmp_path / "b.mp4")[0]) == 10
    assert json.loads((tmp_path / "r.json").read_text())["files"][0]["output"] == str(tmp_path / "b.mp4")


def test_cli_single_input_with_output_ext_goes_into_the_folder(tmp_path, capsys):
    """--output-ext names the extension of outputs written into the -o folder, for one input too;
    an existing --report is replaced only with --overwrite."""
    from vmatte.cli import main

    make_video(tmp_path / "a.mp4")
    out, report = tmp_path / "o", tmp_path / "r.json"
    report.write_text("keep")
    argv = ["process", str(tmp_path / "a.mp4"), "-o", str(out), "--output-ext", ".mov", "--report", str(report), "-q"]
    assert main(argv) == 2 and "already exists" in capsys.readouterr().err
    assert report.read_text() == "keep" and not out.exists()
    assert main(argv + ["--overwrite"]) == 0
    assert [p.name for p in out.iterdir()] == ["a.mov"] and len(read_video(out / "a.mov")[0]) == 10
    assert json.loads(report.read_text())["files"][0]["output"] == str(out / "a.mov")


def test_ray_missing_is_a_one_line_error_naming_the_extra(tmp_path):
    from test_no_torch import _cli_without

    src = clips(tmp_path / "in", 2, bad=False)
    rc, out, err = _cli_without(["ray", "torch"], ["process", str(src), "-o", str(tmp_path / "o"), "--ray", "auto"], tmp_path)
    assert rc == 2 and err.count("\n") == 1 and 'pip install "vmatte[ray]"' in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()


def test_batch_on_the_light_install(tmp_path):
    """A batch with neither torch nor Ray importable, in the driver and in every worker process
    (a sitecustomize on PYTHONPATH blocks them in each interpreter the batch starts)."""
    import subprocess
    import sys

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nfor m in ('torch', 'onnx', 'ray'):\n    sys.modules[m] = None\n")
    src, out = clips(tmp_path / "in", 2, bad=False), tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    run = subprocess.run([sys.executable, "-m", "vmatte", "process", str(src), "-o", str(out), "--report", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "2 done, 0 skipped, 0 failed" in run.stderr
    check_outputs(out, ["c0.mp4", "c1.mp4"])
    run = subprocess.run([sys.executable, "-m", "vmatte", "process", str(src), "-o", str(out), "--ray", "auto"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and 'pip install "vmatte[ray]"' in run.stderr, run.stderr
