import os

import numpy as np
import pytest

from vmatte.errors import VmatteError
from vmatte.io import FolderSink, FolderSource, ImageSink, VideoSink, VideoSource, open_source

from _media import make_video, read_video


def _copy_through(src_path, out_path, *, alpha=False, fill=128):
    with VideoSource(src_path) as src, VideoSink(out_path, rate=src.rate, time_base=src.time_base, alpha=alpha,
                                                 audio_from=src_path if src.has_audio else None) as sink:
        n = 0
        for fr in src:
            img = np.dstack([fr.rgb, np.full(fr.rgb.shape[:2], fill, np.uint8)]) if alpha else fr.rgb
            sink.write(img, fr.pts, fr.time_base)
            n += 1
    return n


def test_mp4_roundtrip_keeps_frames_pts_and_audio(tmp_path):
    src = make_video(tmp_path / "in.mp4", audio=True)
    n = _copy_through(src, tmp_path / "out.mp4")
    frames, vcodec, acodec = read_video(tmp_path / "out.mp4")
    orig, _, _ = read_video(src)
    assert n == 10 and len(frames) == 10 and vcodec == "h264" and acodec == "aac"
    assert [f[1] for f in frames] == [f[1] for f in orig]
    # frame order and content survive (index marker in the top-left block)
    assert np.abs(frames[3][0][5, 5].astype(int) - orig[3][0][5, 5].astype(int)).max() < 8
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no partial left


@pytest.mark.parametrize("ext", [".mov", ".webm"])
def test_alpha_video_has_real_alpha(tmp_path, ext):
    src = make_video(tmp_path / "in.mp4", audio=True)
    out = tmp_path / f"out{ext}"
    _copy_through(src, out, alpha=True, fill=100)
    with VideoSource(out) as vs:
        frames = list(vs)
    assert len(frames) == 10
    a = frames[0].alpha_in
    assert a is not None and abs(float(a.mean()) - 100) < 3
    _, vcodec, acodec = read_video(out)
    assert vcodec == ("prores" if ext == ".mov" else "vp9")
    assert acodec == ("aac" if ext == ".mov" else "opus")


def test_mp4_refuses_alpha(tmp_path):
    with pytest.raises(VmatteError, match="alpha"):
        VideoSink(tmp_path / "x.mp4", alpha=True)


def test_rotation_is_applied(tmp_path):
    src = make_video(tmp_path / "rot.mp4", rotation=90)
    with VideoSource(src) as vs:
        frames = list(vs)
        assert vs.rotation == 90
    assert frames[0].rgb.shape == (64, 48, 3)  # upright portrait
    # the bright index block (top-left of the coded frame) moves to the bottom-left after a CCW turn
    assert frames[5].rgb[-5, 5, 0] == pytest.approx(110, abs=10)


def test_odd_size_is_padded(tmp_path):
    src = make_video(tmp_path / "in.mp4")
    out = tmp_path / "odd.mp4"
    with VideoSink(out, rate=10) as sink:
        for i in range(3):
            sink.write(np.zeros((33, 47, 3), np.uint8))
    frames, _, _ = read_video(out)
    assert len(frames) == 3 and frames[0][0].shape == (34, 48, 3)
    assert src.exists()


def test_atomic_write_on_failure_leaves_nothing(tmp_path):
    out = tmp_path / "fail.mp4"
    with pytest.raises(RuntimeError):
        with VideoSink(out, rate=10) as sink:
            sink.write(np.zeros((16, 16, 3), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyboardInterrupt):
        with FolderSink(tmp_path / "frames") as sink:
            sink.write(np.zeros((8, 8, 4), np.uint8))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_no_overwrite_without_flag(tmp_path):
    out = tmp_path / "x.png"
    out.write_bytes(b"keep")
    with pytest.raises(VmatteError, match="exists"):
        with ImageSink(out) as s:
            s.write(np.zeros((4, 4, 3), np.uint8))
    assert out.read_bytes() == b"keep"
    with ImageSink(out, overwrite=True) as s:
        s.write(np.zeros((4, 4, 4), np.uint8))
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_png_folder_roundtrip_rgba(tmp_path):
    import cv2

    with FolderSink(tmp_path / "seq") as sink:
        for i in range(3):
            img = np.zeros((6, 5, 4), np.uint8); img[..., 3] = 50 * i
            sink.write(img)
    files = sorted((tmp_path / "seq").iterdir())
    assert [f.name for f in files] == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    assert cv2.imread(str(files[2]), cv2.IMREAD_UNCHANGED)[..., 3].max() == 100
    with FolderSource(tmp_path / "seq") as fs:
        assert [f.name for f in fs] == ["frame_000000", "frame_000001", "frame_000002"]


def test_jpg_refuses_rgba(tmp_path):
    with pytest.raises(VmatteError, match="transparency"):
        with ImageSink(tmp_path / "a.jpg") as s:
            s.write(np.zeros((4, 4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_open_source_errors(tmp_path):
    with pytest.raises(VmatteError, match="not found"):
        open_source(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(2000))
    with pytest.raises(VmatteError):
        with open_source(bad) as s:
            list(s)


def test_untagged_hd_is_read_as_bt709_and_written_tagged(tmp_path):
    """Untagged HD video is BT.709 by convention; reading it as BT.601 (swscale's default) shifts colours."""
    import av

    from vmatte.io.sinks import VideoSink
    from vmatte.io.sources import VideoSource, frame_to_array

    f = av.VideoFrame(1280, 720, "yuv420p")
    for plane, v in zip(f.planes, (100, 90, 180)):
        plane.update(np.full(plane.buffer_size, v, np.uint8))
    # Exact conversions of Y,U,V = 100,90,180 (limited range): BT.709 -> 191,78,17.5; BT.601 -> 181,70,21.
    assert abs(frame_to_array(f)[0, 0].astype(int) - (191, 78, 17)).max() <= 1
    f.colorspace = 6  # a tag wins over the HD guess
    assert abs(frame_to_array(f)[0, 0].astype(int) - (181, 70, 21)).max() <= 1
    rgb = np.zeros((720, 1280, 3), np.uint8)
    rgb[...] = (190, 77, 16)
    rgb[:, :640] = (30, 140, 220)
    for w, h, tag in ((1280, 720, 1), (320, 240, 6)):  # HD: BT.709, SD: SMPTE 170M (BT.601)
        out = tmp_path / f"c{w}.mp4"
        with VideoSink(out) as sink:
            for _ in range(2):
                sink.write(np.ascontiguousarray(rgb[:h, -w:] if w < 1280 else rgb))
        with av.open(str(out)) as c:
            fr = next(c.decode(video=0))
            assert (fr.colorspace, fr.color_range, c.streams.video[0].codec_context.color_primaries) == (tag, 1, tag)
        with VideoSource(out) as src:
            back = next(iter(src)).rgb.astype(int)
        want = rgb[:h, -w:] if w < 1280 else rgb
        assert np.abs(back[8:-8, 8:-8].mean(axis=(0, 1)) - want[8:-8, 8:-8].mean(axis=(0, 1))).max() < 1.5
