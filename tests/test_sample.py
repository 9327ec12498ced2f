"""`vmatte sample`: a clip of a real person (the shipped public-domain portrait under a slow virtual
camera) that the shipped model mattes whole; bad options are one-line errors that leave nothing."""
from __future__ import annotations

import av
import numpy as np
import pytest

from vmatte.cli import main
from vmatte.sample import PHOTO, camera, load_photo, render_frame

# Boxes (x0, y0, x1, y1) in the 512x512 photo's pixels.
FACE = (185, 75, 265, 180)  # skin from the forehead to the chin
SHUTTLE = (380, 0, 470, 250)  # the model shuttle on the right: background


def _read(path):
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        return frames, bool(c.streams.audio)


def test_sample_is_a_moving_clip_of_the_photo(tmp_path, capsys):
    out = tmp_path / "s.mp4"
    assert main(["sample", str(out), "--seconds", "1", "--size", "320x180"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    frames, audio = _read(out)
    assert len(frames) == 25 and frames[0].shape == (180, 320, 3) and audio
    photo = load_photo()
    for i in (0, 12):  # the frames are the photo as the camera sees it (not a drawing)
        want = render_frame(photo, i / 25, 320, 180).astype(np.int16)
        assert np.abs(frames[i].astype(np.int16) - want).mean() < 6
    assert np.abs(frames[0].astype(np.int16) - frames[12]).mean() > 5  # the camera moves
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.mp4"]
    assert PHOTO.stat().st_size < 150_000


def test_camera_stays_inside_the_photo_for_any_aspect():
    for w, h in ((640, 360), (360, 640), (64, 64), (1920, 200)):
        for u in np.linspace(0, 1, 21):
            x0, y0, k = camera(u, w, h, 512, 512)
            assert x0 >= 0 and y0 >= 0 and x0 + k * w <= 512 + 1e-6 and y0 + k * h <= 512 + 1e-6


@pytest.mark.parametrize("case", ["zero", "negative", "nan", "too_long", "bad_size", "odd_size", "no_folder",
                                  "bad_suffix", "exists"])
def test_bad_sample_options_are_one_line_errors(tmp_path, capsys, case):
    options = {"zero": ["--seconds", "0"], "negative": ["--seconds", "-1"], "nan": ["--seconds", "nan"],
               "too_long": ["--seconds", "1e9"], "bad_size": ["--size", "big"], "odd_size": ["--size", "65x64"]}
    extra = options.get(case, [])
    out = {"no_folder": tmp_path / "nope" / "s.mp4", "bad_suffix": tmp_path / "s.avi"}.get(case, tmp_path / "s.mp4")
    if case == "exists":
        out.write_bytes(b"mine")
    assert main(["sample", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vmatte: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert {"zero": "--seconds 0 is out of range", "nan": "out of range", "too_long": "out of range",
            "no_folder": "does not exist", "exists": "--overwrite"}.get(case, "") in err
    if case == "exists":
        assert out.read_bytes() == b"mine" and sorted(p.name for p in tmp_path.iterdir()) == ["s.mp4"]
    else:
        assert list(tmp_path.iterdir()) == []


def _box(u, box, w, h):
    """`box` of the photo in the pixels of the frame the camera shows at phase u."""
    x0, y0, k = camera(u, w, h, 512, 512)
    return tuple(int(round(v)) for v in ((box[0] - x0) / k, (box[1] - y0) / k, (box[2] - x0) / k, (box[3] - y0) / k))


def test_shipped_model_mattes_the_sample_person_whole():
    """The synthetic figure this sample replaced came out headless (face alpha 0.0004): on the
    photo the face is foreground and the model shuttle beside her background, wide and zoomed in."""
    from vmatte import Matter

    m = Matter("rt", backend="onnxruntime")
    photo = load_photo()
    for u in (0.0, 0.5):
        alpha = m.matte(render_frame(photo, u, 640, 360))
        fx0, fy0, fx1, fy1 = _box(u, FACE, 640, 360)
        sx0, sy0, sx1, sy1 = _box(u, SHUTTLE, 640, 360)
        assert alpha[fy0:fy1, fx0:fx1].mean() > 0.8, u
        assert alpha[max(0, sy0):sy1, sx0:min(640, sx1)].mean() < 0.2, u
