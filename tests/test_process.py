import os
import threading

import cv2
import numpy as np
import pytest

from vmatte.errors import VmatteError
from vmatte.process import process
from vmatte.runner import Pipeline, Stage

from _media import EllipseMatter, frame_pattern, make_audio_only, make_video, read_video


@pytest.fixture
def video(tmp_path):
    return make_video(tmp_path / "in.mp4", audio=True)


def test_video_green_keeps_frames_order_audio(tmp_path, video):
    m = EllipseMatter()
    calls = []
    res = process(video, tmp_path / "out.mp4", matter=m, background="green",
                  progress=lambda d, t: calls.append((d, t)))
    assert res.frames == 10 and calls[-1] == (10, 10)
    frames, vcodec, acodec = read_video(tmp_path / "out.mp4")
    assert len(frames) == 10 and acodec == "aac"
    assert len(m.seen) == 10 and len(set(m.seen)) == 10  # every frame matted once (workers run in parallel)
    for i, (img, _, _) in enumerate(frames):  # corners are background -> green
        assert img[1, -2, 1] > 200 and img[1, -2, 0] < 60
        assert abs(int(img[20, 20, 0]) - int(frame_pattern(i, 48, 64)[20, 20, 0])) < 12  # inside ellipse: order kept


@pytest.mark.parametrize("ext,kind,bg", [(".mov", "rgba", "blur"), (".webm", "composite", "transparent"),
                                         (".mp4", "alpha", "blur"), ("", "foreground", "blur"),
                                         (".mp4", "composite", "blur:4")])
def test_output_kinds(tmp_path, video, ext, kind, bg):
    out = tmp_path / f"out{ext}"
    res = process(video, out, matter=EllipseMatter(), background=bg, output_kind=kind)
    assert res.frames == 10 and out.exists()
    if ext == "":
        assert len(list(out.iterdir())) == 10


def test_image_and_folder(tmp_path):
    img = frame_pattern(3, 30, 41)
    cv2.imwrite(str(tmp_path / "a.jpg"), img[..., ::-1])
    res = process(tmp_path / "a.jpg", tmp_path / "a_out.png", matter=EllipseMatter(), background="transparent")
    out = cv2.imread(str(tmp_path / "a_out.png"), cv2.IMREAD_UNCHANGED)
    assert res.frames == 1 and out.shape == (30, 41, 4) and out[0, 0, 3] == 0 and out[15, 20, 3] == 255
    folder = tmp_path / "imgs"; folder.mkdir()
    for i in (1, 2, 10):
        cv2.imwrite(str(folder / f"im{i}.png"), img)
    res = process(folder, tmp_path / "outs", matter=EllipseMatter(), background="0,0,255")
    assert res.frames == 3 and sorted(p.name for p in (tmp_path / "outs").iterdir()) == ["im1.png", "im10.png", "im2.png"]


def test_background_image_and_video(tmp_path, video):
    bgimg = tmp_path / "bg.png"
    cv2.imwrite(str(bgimg), np.full((10, 20, 3), (0, 0, 255), np.uint8))  # red in BGR
    process(video, tmp_path / "o1.mp4", matter=EllipseMatter(), background=str(bgimg))
    frames, _, _ = read_video(tmp_path / "o1.mp4")
    assert frames[0][0][1, -2, 0] > 200
    bgvid = make_video(tmp_path / "bgv.mp4", n=3)  # shorter than the input: it loops
    assert process(video, tmp_path / "o2.mp4", matter=EllipseMatter(), background=str(bgvid)).frames == 10


def test_vfr_pts_kept(tmp_path):
    pts = [0, 100, 150, 400, 420, 700]
    src = make_video(tmp_path / "vfr.mp4", n=6, pts=pts)
    process(src, tmp_path / "o.mp4", matter=EllipseMatter())
    frames, _, _ = read_video(tmp_path / "o.mp4")
    orig, _, _ = read_video(src)
    assert [f[1] for f in frames] == [f[1] for f in orig]


def test_rotated_and_odd_sizes(tmp_path):
    src = make_video(tmp_path / "rot.mp4", rotation=90)
    process(src, tmp_path / "o.mp4", matter=EllipseMatter())
    frames, _, _ = read_video(tmp_path / "o.mp4")
    assert frames[0][0].shape == (64, 48, 3) and frames[0][2] == 0  # upright, no rotation flag left
    cv2.imwrite(str(tmp_path / "odd.png"), np.zeros((33, 47, 3), np.uint8))
    process(tmp_path / "odd.png", tmp_path / "odd_out.png", matter=EllipseMatter())
    assert cv2.imread(str(tmp_path / "odd_out.png")).shape == (33, 47, 3)


@pytest.mark.parametrize("case", ["missing", "not_media", "audio_only", "same_as_input", "exists", "bad_bg",
                                  "tiny", "jpg_alpha", "mp4_rgba", "bad_kind", "bad_ext", "video_to_image",
                                  "empty", "truncated", "truncated_jpg", "empty_bg", "unwritable"])
def test_bad_inputs_are_one_line_errors(tmp_path, video, case):
    m, out, kw, inp = EllipseMatter(), tmp_path / "out.mp4", {}, video
    if case == "missing":
        inp = tmp_path / "nope.mp4"
    elif case == "not_media":
        inp = tmp_path / "notes.mp4"; inp.write_text("hello, not a video")
    elif case == "audio_only":
        inp = make_audio_only(tmp_path / "sound.m4a")
    elif case == "same_as_input":
        out = video
    elif case == "exists":
        out.write_bytes(b"old")
    elif case == "bad_bg":
        kw["background"] = str(tmp_path / "nothere.jpg")
    elif case == "tiny":
        inp = tmp_path / "tiny.png"; cv2.imwrite(str(inp), np.zeros((4, 4, 3), np.uint8)); out = tmp_path / "t.png"
    elif case == "jpg_alpha":
        inp = tmp_path / "a.png"; cv2.imwrite(str(inp), np.zeros((16, 16, 3), np.uint8))
        out, kw["background"] = tmp_path / "a.jpg", "transparent"
    elif case == "mp4_rgba":
        kw["output_kind"] = "rgba"
    elif case == "bad_kind":
        kw["output_kind"] = "sparkles"
    elif case == "bad_ext":
        out = tmp_path / "out.xyz"
    elif case == "video_to_image":
        out = tmp_path / "out.png"
    elif case == "empty":
        inp = tmp_path / "empty.mp4"; inp.write_bytes(b"")
    elif case == "truncated":  # index first (faststart), then cut in half: decodes fine, ends early
        inp = _faststart_half(make_video(tmp_path / "long.mp4", n=40), tmp_path / "cut.mp4")
    elif case == "truncated_jpg":  # decodes partly (grey below the cut) without the check
        data = cv2.imencode(".jpg", frame_pattern(0, 96, 64))[1].tobytes()
        inp = tmp_path / "cut.jpg"; inp.write_bytes(data[: len(data) // 2]); out = tmp_path / "cut_out.png"
    elif case == "empty_bg":
        (tmp_path / "bg.mp4").write_bytes(b"")
        kw["background"] = str(tmp_path / "bg.mp4")
    elif case == "unwritable":  # os.access says yes to root here; the write itself fails
        if not os.path.isdir("/proc/self"):
            pytest.skip("needs Linux /proc")
        out = type(tmp_path)("/proc/vmatte_out.mp4")
    before = out.read_bytes() if out.exists() else None
    with pytest.raises(VmatteError) as ei:
        process(inp, out, matter=m, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and len(msg) > 10
    assert {"empty": "empty (0 bytes)", "truncated": "truncated", "truncated_jpg": "truncated", "empty_bg": "background",
            "unwritable": "cannot write"}.get(case, "") in msg
    assert video.exists()
    if before is not None:
        assert out.read_bytes() == before
    else:
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def _faststart_half(src, dst):
    """Remux `src` with its index first, then keep only the first half of the bytes."""
    import av

    full = dst.with_name("fs_" + dst.name)
    with av.open(str(src)) as i, av.open(str(full), "w", options={"movflags": "faststart"}) as o:
        vo = o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(video=0):
            if p.dts is not None:
                p.stream = vo
                o.mux(p)
    data = full.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    full.unlink()
    return dst


def test_write_failure_is_one_line_error_and_leaves_nothing(tmp_path, video, monkeypatch):
    from vmatte.io.sinks import VideoSink

    def full_disk(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(VideoSink, "write", full_disk)
    with pytest.raises(VmatteError, match="No space left"):
        process(video, tmp_path / "o.mp4", matter=EllipseMatter())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_cli_checks_the_job_before_loading_the_model(tmp_path, video, monkeypatch, capsys):
    """A typo in a path fails at once with its own message: the model is only built for a valid job."""
    import vmatte.api
    from vmatte.cli import main

    built = []

    class Recording(EllipseMatter):
        def __init__(self, **kw):
            built.append(kw)
            super().__init__()

    monkeypatch.setattr(vmatte.api, "Matter", Recording)
    assert main(["process", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "o.mp4"), "-q"]) != 0
    assert "input not found" in capsys.readouterr().err and built == []
    assert main(["process", str(video), "-o", str(tmp_path / "o.mp4"), "-q", "--model", "rt"]) == 0
    assert built == [{"model": "rt", "backend": "auto", "size": None, "precision": "fp32", "refine_patches": None}]


def test_cli_sigterm_cleans_up_like_ctrl_c(tmp_path, video, monkeypatch, capsys):
    """`kill PID` mid-run: exit 130, no output or partial file, the old SIGTERM handler restored."""
    import signal

    import vmatte.api
    from vmatte.cli import main

    class Killer(EllipseMatter):
        def __init__(self, **kw):
            super().__init__()

        sent = False
        lock = threading.Lock()

        def matte(self, rgb):
            # Several matte workers run at once: send the signal exactly once, after a few frames.
            with self.lock:
                send = len(self.seen) >= 3 and not self.sent
                self.sent = self.sent or send
            if send:
                os.kill(os.getpid(), signal.SIGTERM)
            return super().matte(rgb)

    monkeypatch.setattr(vmatte.api, "Matter", Killer)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["process", str(video), "-o", str(tmp_path / "o.mp4"), "-q"]) == 130
    assert signal.getsignal(signal.SIGTERM) is before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    assert "interrupted" in capsys.readouterr().err


def test_corrupt_middle_is_skipped(tmp_path):
    src = make_video(tmp_path / "in.mp4", n=30, w=64, h=48)
    data = bytearray(src.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 200] = os.urandom(200)
    bad = tmp_path / "corrupt.mp4"; bad.write_bytes(bytes(data))
    try:
        res = process(bad, tmp_path / "o.mp4", matter=EllipseMatter())
        assert 0 < res.frames <= 30
    except VmatteError as e:  # failing cleanly is also acceptable, but with nothing left behind
        assert "\n" not in str(e)
        assert not (tmp_path / "o.mp4").exists()


class _Boom:
    def __init__(self, at, exc):
        self.at, self.exc, self.n = at, exc, 0

    def matte(self, rgb):
        self.n += 1
        if self.n == self.at:
            raise self.exc
        return np.ones(rgb.shape[:2], np.float32)


@pytest.mark.parametrize("exc", [RuntimeError("model exploded"), KeyboardInterrupt()])
def test_error_or_ctrl_c_mid_run_writes_nothing(tmp_path, video, exc):
    with pytest.raises(type(exc)):
        process(video, tmp_path / "o.mp4", matter=_Boom(4, exc))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_pipeline_order_with_many_workers_and_errors():
    import random
    import time

    def slow(x):
        time.sleep(random.random() * 0.002)
        return x * 2

    got = []
    n = Pipeline(range(200), [Stage(slow, 3), Stage(lambda x: x + 1, 2)], got.append, queue_size=2).run()
    assert n == 200 and got == [2 * i + 1 for i in range(200)]

    def bad(x):
        if x == 50:
            raise ValueError("bad item")
        return x

    got = []
    with pytest.raises(ValueError, match="bad item"):
        Pipeline(range(10**6), [Stage(bad, 2)], got.append).run()
    assert len(got) <= 60

    def gen():
        yield 1
        raise OSError("decode failed")

    with pytest.raises(OSError):
        Pipeline(gen(), [lambda x: x], lambda x: None).run()


def test_real_matter_integration(tmp_path, video):
    try:
        from vmatte.api import Matter
        matter = Matter()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"real Matter unavailable: {e}")
    res = process(video, tmp_path / "o.mp4", matter=matter)
    assert res.frames == 10


class RedMatter:
    """A fake matter: alpha 1 where the red channel is above half."""

    def matte(self, rgb):
        return (rgb[..., 0] > 127).astype(np.float32)


class RedDeviceBackend:
    """The same rule as RedMatter as a torch device backend (`_chain` on [N,3,H,W] tensors) that
    claims to be a CUDA backend, so process() takes its GPU route; on the CPU it runs through the
    runner's host layer."""

    device = "cuda"
    channels_last = False

    def __init__(self):
        import torch

        self.torch, self.dtype, self.calls = torch, torch.float32, []

    def _device(self):
        return "cpu"

    def _chain(self, full, low):
        self.calls.append(tuple(full.shape))
        return (full[:, :1] > 0.5).to(full.dtype)  # [N,1,Hp,Wp]


@pytest.mark.parametrize("kind,bg", [("composite", "blur"), ("composite", "green"), ("alpha", "blur"),
                                     ("composite", "image")])
def test_gpu_route_matches_host_route(tmp_path, video, kind, bg):
    """With a CUDA torch backend, process() runs model and compositing as one device program in
    batches (GpuRunner); the output matches the host route's, audio and timestamps included."""
    pytest.importorskip("torch")
    from vmatte.process import GPU_BATCH

    if bg == "image":
        cv2.imwrite(str(tmp_path / "bg.png"), np.full((10, 20, 3), (0, 0, 255), np.uint8))
        bg = str(tmp_path / "bg.png")
    dev = RedDeviceBackend()
    gpu = type("M", (), {"backend": dev, "long_side": 32, "matte": None})()
    r_gpu = process(video, tmp_path / "gpu.mp4", matter=gpu, background=bg, output_kind=kind)
    r_cpu = process(video, tmp_path / "cpu.mp4", matter=RedMatter(), background=bg, output_kind=kind)
    assert r_gpu.frames == r_cpu.frames == 10
    assert dev.calls and all(c[0] == GPU_BATCH for c in dev.calls)  # batched, the tail padded
    assert len(dev.calls) == -(-10 // GPU_BATCH)
    fg, _, ag = read_video(tmp_path / "gpu.mp4")
    fc, _, ac = read_video(tmp_path / "cpu.mp4")
    assert ag == ac == "aac" and [f[1] for f in fg] == [f[1] for f in fc]
    diff = np.mean([np.abs(a[0].astype(int) - b[0].astype(int)).mean() for a, b in zip(fg, fc)])
    assert diff < 2.0, diff


def test_gpu_route_folder_with_size_changes(tmp_path):
    """Images of several sizes: batches are cut at size changes, every image comes out once."""
    pytest.importorskip("torch")
    folder = tmp_path / "imgs"
    folder.mkdir()
    sizes = [(30, 41), (30, 41), (17, 23), (30, 41), (30, 41), (30, 41)]
    for i, (h, w) in enumerate(sizes):
        cv2.imwrite(str(folder / f"im{i}.png"), frame_pattern(i, h, w)[..., ::-1])
    gpu = type("M", (), {"backend": RedDeviceBackend(), "long_side": 32, "matte": None})()
    res = process(folder, tmp_path / "out", matter=gpu, background="0,0,255")
    assert res.frames == 6
    for i, (h, w) in enumerate(sizes):
        assert cv2.imread(str(tmp_path / "out" / f"im{i}.png")).shape == (h, w, 3)


@pytest.mark.parametrize("name,rotation,ext,kind,formats", [
    ("plain", 0, ".mp4", "composite", ("yuv420p", "yuv420p")),  # decoder planes in, encoder planes out
    ("rotated", 90, ".mp4", "composite", ("yuv420p", "yuv420p")),  # upright frames converted on the host
    ("prores", 0, ".mov", "composite", ("yuv420p", "rgb24")),  # ProRes 4:2:2 10-bit: RGB out
    ("alpha", 0, ".webm", "alpha", ("yuv420p", "alpha")),
])
def test_gpu_route_io_formats(tmp_path, monkeypatch, name, rotation, ext, kind, formats):
    """The GPU route hands I420 planes to and from the device where decoder and encoder take them,
    and its output still matches the host route's."""
    pytest.importorskip("torch")
    import vmatte.process as P

    seen = []
    real = P.gpu_program

    def spy(*a, **k):
        prog = real(*a, **k)
        if prog is not None:
            seen.append((prog.in_format, prog.out_format))
        return prog

    monkeypatch.setattr(P, "gpu_program", spy)
    src = make_video(tmp_path / "in.mp4", rotation=rotation)
    gpu = type("M", (), {"backend": RedDeviceBackend(), "long_side": 32, "matte": None})()
    process(src, tmp_path / f"gpu{ext}", matter=gpu, background="green", output_kind=kind, temporal=False)
    process(src, tmp_path / f"cpu{ext}", matter=RedMatter(), background="green", output_kind=kind, temporal=False)
    assert seen == [formats]  # one pass (the temporal route's two: tests/test_temporal.py)
    fg, _, _ = read_video(tmp_path / f"gpu{ext}")
    fc, _, _ = read_video(tmp_path / f"cpu{ext}")
    assert len(fg) == len(fc) == 10 and fg[0][0].shape == fc[0][0].shape
    assert np.mean([np.abs(a[0].astype(int) - b[0].astype(int)).mean() for a, b in zip(fg, fc)]) < 2.0


def test_sink_write_i420_matches_rgb_write(tmp_path):
    """VideoSink.write_i420 (planes from the GPU) gives the video write() gives from RGB."""
    torch = pytest.importorskip("torch")
    from vmatte.gpu_runner import hwc_to_nchw, rgb_to_yuv420, yuv_matrix
    from vmatte.io.sinks import VideoSink

    frames = [frame_pattern(i, 48, 64) for i in range(5)]
    with VideoSink(tmp_path / "rgb.mp4", rate=10) as s:
        for f in frames:
            s.write(f)
    with VideoSink(tmp_path / "yuv.mp4", rate=10) as s:
        assert s.takes_i420(64, 48) and not s.takes_i420(63, 48)
        for f in frames:
            s.write_i420(rgb_to_yuv420(hwc_to_nchw(torch.from_numpy(f)), yuv_matrix(64, 48))[0].numpy())
    a, _, _ = read_video(tmp_path / "rgb.mp4")
    b, _, _ = read_video(tmp_path / "yuv.mp4")
    assert [x[1] for x in a] == [x[1] for x in b]
    assert np.mean([np.abs(x[0].astype(int) - y[0].astype(int)).mean() for x, y in zip(a, b)]) < 1.5
    with VideoSink(tmp_path / "p.mov", rate=10) as s:
        assert not s.takes_i420(64, 48)  # ProRes is fed 4:2:2 10-bit
        with pytest.raises(VmatteError, match="I420"):
            s.write_i420(np.zeros((72, 64), np.uint8))
        s.write(frames[0])


def test_grey_frames_skip_the_rgb_round_trip(tmp_path, monkeypatch):
    """An alpha matte (grey [H,W]) goes to a yuv420p encoder as I420 directly: luma as swscale
    gives it from the grey RGB frame (to 1 level), flat chroma; the decoded video matches the RGB
    route's; .mov and odd sizes keep the RGB route."""
    import av

    from vmatte.io import sinks as S

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (48, 64)).astype(np.uint8)
    grey[0] = [0, 255] * 32  # both ends of the range
    ref = av.VideoFrame.from_ndarray(np.repeat(grey[..., None], 3, 2), format="rgb24").reformat(
        format="yuv420p", dst_colorspace=5, dst_color_range=1).to_ndarray()
    planes = S.grey_to_i420(grey)
    assert planes.shape == (72, 64) and np.array_equal(planes[48:], ref[48:])
    assert np.abs(planes[:48].astype(int) - ref[:48].astype(int)).max() <= 1
    assert planes[0, 0] == 16 and planes[0, 1] == 235  # limited range
    calls = []
    monkeypatch.setattr(S.VideoSink, "write_i420", lambda self, *a, _w=S.VideoSink.write_i420: calls.append(1) or _w(self, *a))
    mattes = [np.clip(frame_pattern(i, 48, 64)[..., 1], 0, 255) for i in range(5)]
    with S.VideoSink(tmp_path / "grey.mp4", rate=10) as s:
        for m in mattes:
            s.write(m)
    assert len(calls) == 5
    with S.VideoSink(tmp_path / "rgb.mp4", rate=10) as s:
        for m in mattes:
            s.write(np.repeat(m[..., None], 3, 2))
    assert len(calls) == 5  # RGB frames take the RGB route
    a, _, _ = read_video(tmp_path / "grey.mp4")
    b, _, _ = read_video(tmp_path / "rgb.mp4")
    assert len(a) == len(b) == 5
    assert np.mean([np.abs(x[0].astype(int) - y[0].astype(int)).mean() for x, y in zip(a, b)]) < 1.5
    with S.VideoSink(tmp_path / "g.mov", rate=10) as s:  # ProRes: 4:2:2 10-bit, the RGB route
        s.write(mattes[0])
    with S.VideoSink(tmp_path / "odd.mp4", rate=10) as s:  # odd size: padded on the RGB route
        s.write(mattes[0][:47, :63])
        for wrong in (mattes[0][:47, :63].astype(np.int16) - 1, mattes[0] > 128):  # not bytes: an error, not a silent wrap
            with pytest.raises(ValueError, match="uint8"):
                s.write(wrong)
    assert len(calls) == 5


def test_sink_hw_encode_falls_back_to_libx264(tmp_path, caplog):
    """hw_encode asks for NVENC first; without an NVIDIA GPU the sink falls back to libx264 and
    the file is complete."""
    import logging

    from vmatte.io.sinks import VideoSink

    caplog.set_level(logging.INFO, logger="vmatte.io.sinks")
    with VideoSink(tmp_path / "o.mp4", rate=10, hw_encode=True) as s:
        for i in range(3):
            s.write(frame_pattern(i, 48, 64))
    frames, vcodec, _ = read_video(tmp_path / "o.mp4")
    assert len(frames) == 3
    if s.codec == "libx264":  # no NVENC here: the fallback was taken and said so
        assert vcodec == "h264" and "h264_nvenc unavailable" in caplog.text
    else:
        assert s.codec == "h264_nvenc"


def test_host_i420_matches_the_device_conversion_and_refuses_odd_frames():
    """A frame the decoder gives as RGB on the planar route is converted as the GPU program would;
    an odd-sized one (a mid-video size change) is a one-line error, not a crash in the encoder."""
    torch = pytest.importorskip("torch")
    from vmatte.gpu_runner import hwc_to_nchw, rgb_to_yuv420, yuv_matrix
    from vmatte.process import _host_i420

    rgb = frame_pattern(2, 48, 64)
    want = rgb_to_yuv420(hwc_to_nchw(torch.from_numpy(rgb)), yuv_matrix(64, 48))[0].numpy()
    assert np.array_equal(_host_i420(rgb), want) and want.shape == (72, 64)
    with pytest.raises(VmatteError, match="odd.*write to a folder"):
        _host_i420(frame_pattern(2, 47, 64))
