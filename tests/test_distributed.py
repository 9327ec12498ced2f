"""Batches through Ray (vmatte.distributed) on a local two-CPU cluster that these tests start and
stop: a corrupt input, a worker killed mid-file, resume after an interrupted batch."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vmatte[ray]')")

from vmatte.batch import BatchInterrupted, expand_inputs, jobs_into_folder, run_batch  # noqa: E402

from _batch_fakes import KillOnce, Slow  # noqa: E402
from _media import EllipseMatter, make_video, read_video  # noqa: E402
from test_batch import check_outputs, clips, partials  # noqa: E402

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def cluster():
    """A private local Ray cluster: 2 CPUs; its workers import the test fakes from this folder."""
    path = os.pathsep.join([str(TESTS)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        yield
    finally:
        ray.shutdown()


def test_one_corrupt_input_cli(cluster, tmp_path, capsys):
    """`vmatte process FOLDER -o OUT --ray auto`, the shipped model in Ray tasks: the corrupt file
    is failed and named, the others are complete, exit 1, the report says where each file ran."""
    from vmatte.cli import main

    src, out, report = clips(tmp_path / "in", 3), tmp_path / "out", tmp_path / "r.json"
    assert main(["process", str(src), "-o", str(out), "--ray", "auto", "--threads", "1", "--report", str(report), "-q"]) == 1
    err = capsys.readouterr().err
    assert "3 done, 0 skipped, 1 failed" in err and "bad.mp4: cannot open" in err and "Traceback" not in err
    check_outputs(out, ["c0.mp4", "c1.mp4", "c2.mp4"])
    d = json.loads(report.read_text())
    assert d["workers"].startswith("Ray at auto: 1 node, 1 CPU per file")
    assert all(f["worker"].startswith("Ray node ") and f["attempts"] == 1 for f in d["files"])


def test_killed_worker_is_retried(cluster, tmp_path):
    """A Ray worker SIGKILLed while its file is half-written: Ray runs the task again, the file
    is complete, nothing partial is left, no file is lost."""
    src, out = clips(tmp_path / "in", 3, bad=False, frames=40), tmp_path / "out"
    out.mkdir()
    marker = tmp_path / "killed"
    frames = []
    rep = run_batch(jobs_into_folder(expand_inputs([str(src)]), out), matter=KillOnce(str(marker), str(out)),
                    ray="auto", threads=1, retries=2, progress=lambda p: frames.append(p.frames))
    assert marker.exists() and rep.ok, rep.to_dict()
    assert sorted(r.attempts for r in rep.results) == [1, 1, 2]
    check_outputs(out, ["c0.mp4", "c1.mp4", "c2.mp4"], 40)
    assert not partials(out)
    assert frames[-1] == 120


def test_resume_after_an_interrupted_batch(cluster, tmp_path):
    """Stopped once the short clip is done and another is well into its frames (as streamed
    back): the running tasks are killed, their partial files removed; --resume does the rest."""
    src, out = clips(tmp_path / "in", 4, bad=False, frames=40), tmp_path / "out"
    make_video(src / "c0.mp4", n=10)  # the short one, done first
    out.mkdir()
    jobs = jobs_into_folder(expand_inputs([str(src)]), out)

    def stop_after_first(p):
        if p.finished >= 1 and any(d >= 15 for d, _ in p.running.values()):
            raise KeyboardInterrupt

    with pytest.raises(BatchInterrupted) as ei:
        run_batch(jobs, matter=Slow(0.05), ray="auto", threads=1, progress=stop_after_first)
    rep = ei.value.report
    assert rep.interrupted and rep.counts()["done"] >= 1 and rep.counts()["pending"] >= 1 and not partials(out)
    # Every file reported done is there; a file that finished in the instant of the stop may be
    # there too, still reported not run: what is there is whole either way (resume then skips it).
    assert {str(out / p.name) for p in out.iterdir()} >= {r.output for r in rep.results if r.status == "done"}
    whole(src, out, [p.name for p in out.iterdir()])
    first = {str(p): p.stat().st_mtime_ns for p in out.iterdir()}
    rep2 = run_batch(jobs, matter=EllipseMatter, ray="auto", resume=True)
    assert rep2.ok and rep2.counts()["skipped"] == len(first) and rep2.counts()["done"] == 4 - len(first)
    assert all(os.stat(o).st_mtime_ns == t for o, t in first.items())
    whole(src, out, [f"c{i}.mp4" for i in range(4)])


def whole(src: Path, out: Path, names: list[str]) -> None:
    """Each output has all the frames of its input."""
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    for n in names:
        assert len(read_video(out / n)[0]) == len(read_video(src / n)[0])


def test_tracker_holds_only_running_files():
    """The driver drops finished files from the progress actor: its snapshot stays the size of the
    files running, and an update that arrives after the file was dropped does not bring it back."""
    from vmatte.distributed import _Tracker

    t = _Tracker()
    t.started(0, "n1")
    t.started(1, "n2")
    t.update(0, 5, 10)
    assert t.snapshot() == ({0: (5, 10), 1: (0, None)}, {0: 1, 1: 1}, {0: "n1", 1: "n2"})
    t.forget([0])
    t.update(0, 10, 10)  # late
    assert t.snapshot() == ({1: (0, None)}, {1: 1}, {1: "n2"})


def test_a_task_no_node_can_hold_is_refused(cluster, tmp_path):
    from vmatte.errors import VmatteError

    src = clips(tmp_path / "in", 1, bad=False)
    with pytest.raises(VmatteError, match="asks for 4 CPUs but no node of the Ray cluster has more than 2"):
        run_batch(jobs_into_folder(expand_inputs([str(src)]), tmp_path), matter=EllipseMatter, ray="auto", threads=4)
