"""What a new user reads: help texts that name the right options, errors that are one line with
the fix (exit 2, no traceback, nothing written), the summary's grammar, the foreground output."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from vmatte.cli import build_parser, main
from vmatte.process import process
from vmatte.registry import list_models

from _media import EllipseMatter, make_video


def _help(command: str) -> str:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return " ".join(sub.choices[command].format_help().split())  # argparse wraps lines


def test_help_texts_name_real_options():
    text = _help("process")
    assert "--output-kind rgba" in text and "--output rgba" not in text
    assert "64 to 8192" in text
    assert "length of the clip" in _help("sample")  # --seconds has a help text


def test_list_models_marks_the_shipped_ones():
    shipped = list_models(shipped=True)
    assert "rt" in shipped and "paper" not in shipped and set(shipped) < set(list_models())


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("vmatte: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("model", sorted(set(list_models()) - set(list_models(shipped=True))))
def test_model_without_weights_points_at_one_with_weights(tmp_path, capsys, model):
    video = make_video(tmp_path / "in.mp4")
    assert main(["process", str(video), "-o", str(tmp_path / "o.mp4"), "-q", "--model", model]) == 2
    err = _one_line_error(capsys)
    assert f"model {model!r} ships no weights (models that do: rt)" in err
    assert "pass --weights PATH" not in err  # process has no --weights
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


@pytest.mark.parametrize("size", ["0", "17", "100000", "-3"])
def test_size_out_of_range_is_refused(tmp_path, capsys, size):
    video = make_video(tmp_path / "in.mp4")
    assert main(["process", str(video), "-o", str(tmp_path / "o.mp4"), "-q", "--size", size]) == 2
    assert f"--size {size} is out of range; use 64 to 8192" in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


@pytest.mark.parametrize("extra,message", [
    (["--refine-patches", "-1"], "--refine-patches -1 is out of range; use 0 to 4096"),
    (["--refine-patches", "8", "--backend", "torch"], "--refine-patches needs the onnxruntime backend"),
    (["--refine-patches", "8", "--backend", "torch", "--workers", "2"], "--refine-patches needs the onnxruntime backend"),
])
def test_refine_patches_the_model_cannot_take_fails_before_any_work(tmp_path, capsys, extra, message):
    video = make_video(tmp_path / "in.mp4")
    assert main(["process", str(video), "-o", str(tmp_path / "o.mp4"), "-q", *extra]) == 2
    assert message in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_refine_patches_reaches_the_model(tmp_path, monkeypatch):
    """process builds its Matter, and batch workers their MatterSpec, with the budget."""
    import vmatte.api
    from vmatte.batch import MatterSpec

    assert MatterSpec(refine_patches=0)().refine_patches == 0  # the real model, on onnxruntime
    seen = []
    monkeypatch.setattr(vmatte.api, "Matter", lambda **kw: seen.append(kw) or EllipseMatter())
    video = make_video(tmp_path / "in.mp4")
    assert main(["process", str(video), "-o", str(tmp_path / "o.mp4"), "-q", "--refine-patches", "4"]) == 0
    assert seen and seen[0]["refine_patches"] == 4


def test_summary_counts_one_frame(tmp_path, capsys, monkeypatch):
    import vmatte.api

    monkeypatch.setattr(vmatte.api, "Matter", lambda **kw: EllipseMatter())
    cv2.imwrite(str(tmp_path / "a.png"), np.full((32, 48, 3), 120, np.uint8))
    assert main(["process", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png")]) == 0
    err = capsys.readouterr().err
    assert ": 1 frame in " in err and "1 frames" not in err


def test_foreground_is_premultiplied_where_there_is_no_alpha(tmp_path):
    """--output-kind foreground shows the person over black: under alpha 0 the straight estimate
    holds blocky local means of the background (the ghosts a new user saw), here it is 0."""
    h, w = 96, 128
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[...] = (30, 160, 220)  # background
    img[(yy // 8 + xx // 8) % 2 == 0] = (230, 60, 20)  # a busy background pattern
    inside = ((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2 <= 1  # EllipseMatter's alpha
    img[inside] = (200, 170, 140)  # the subject
    cv2.imwrite(str(tmp_path / "in.png"), img[..., ::-1])
    for out in (tmp_path / "fg.png", tmp_path / "fg.jpg"):
        process(tmp_path / "in.png", out, matter=EllipseMatter(), output_kind="foreground")
        fg = cv2.imread(str(out))[..., ::-1].astype(int)
        lossy = out.suffix == ".jpg"
        assert (fg[~inside].mean() < 6) if lossy else (fg[~inside].max() == 0)
        core = cv2.erode(inside.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        assert np.abs(fg[core] - img[core]).mean() < (8 if lossy else 2)



@pytest.mark.parametrize("command", ["eval", "webcam"])
def test_bad_refine_patches_on_eval_and_webcam_is_one_line(tmp_path, capsys, command):
    """eval and webcam build their Matter in this process: the budget's own check answers, in one
    line, and the webcam's recording is not left behind."""
    if command == "eval":
        img, alpha = tmp_path / "set" / "image", tmp_path / "set" / "alpha"
        img.mkdir(parents=True), alpha.mkdir()
        cv2.imwrite(str(img / "a.png"), np.full((64, 64, 3), 128, np.uint8))
        cv2.imwrite(str(alpha / "a.png"), np.full((64, 64), 255, np.uint8))
        argv = ["eval", str(tmp_path / "set"), "--refine-patches", "-1"]
    else:
        video = make_video(tmp_path / "in.mp4")
        argv = ["webcam", "--file", str(video), "--no-vcam", "--record", str(tmp_path / "rec.mp4"), "--max-seconds", "2",
                "--refine-patches", "-1"]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 2
    assert "refine_patches -1 (--refine-patches) is out of range; use 0 to 4096" in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
