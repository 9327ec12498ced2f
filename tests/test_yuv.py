"""I420 <-> RGB with OpenCV (vmatte.ops.yuv) against swscale's conversions, which they replace on
the CPU file route."""
from __future__ import annotations

import numpy as np
import pytest

from vmatte.ops.yuv import i420_to_rgb, planes_view, rgb_to_i420

av = pytest.importorskip("av")


def smooth_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like RGB image: smooth colour gradients and a few soft blobs, uint8 [h,w,3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([40 + 170 * xx / w, 60 + 150 * yy / h, 200 - 120 * (xx + yy) / (h + w)], -1)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(6, 20)
        img += rng.uniform(-60, 60, 3) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _sws_accurate(vf) -> np.ndarray:
    from av.video.reformatter import Interpolation as I

    cs = 5 if int(vf.colorspace) in (5, 6) else int(vf.colorspace)
    return vf.to_ndarray(format="rgb24", src_colorspace=cs, interpolation=I.BILINEAR | I.FULL_CHR_H_INT | I.ACCURATE_RND)


def _i420_frame(rgb: np.ndarray, matrix: int):
    """swscale's own RGB -> yuv420p of `rgb` (limited range, `matrix`), as a tagged frame."""
    vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuv420p", dst_colorspace=5 if matrix == 6 else matrix, dst_color_range=1)
    vf.colorspace, vf.color_range = matrix, 1
    return vf


@pytest.mark.parametrize("matrix", [1, 6])  # BT.709, BT.601
@pytest.mark.parametrize("shape", [(48, 64), (46, 70)])  # H % 4 == 2: U and V do not fill whole rows
def test_i420_to_rgb_matches_swscale_accurate(matrix, shape):
    vf = _i420_frame(smooth_rgb(*shape), matrix)
    want = _sws_accurate(vf).astype(int)
    got = i420_to_rgb(vf.to_ndarray(format="yuv420p"), matrix).astype(int)
    assert got.shape == want.shape == (*shape, 3)
    assert np.abs(got - want).mean() < 0.6 and abs((got - want).mean()) < 0.3
    assert np.abs(got - want).max() <= 8
    other = i420_to_rgb(vf.to_ndarray(format="yuv420p"), 6 if matrix == 1 else 1).astype(int)
    assert np.abs(other - want).mean() > 2 * np.abs(got - want).mean()  # the matrix matters


def test_full_range_frames():
    rgb = smooth_rgb(48, 64)
    vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuvj420p", dst_colorspace=1, dst_color_range=2)
    planes = vf.to_ndarray()  # [H*3/2, W]
    got = i420_to_rgb(planes, 1, full_range=True).astype(int)
    assert np.abs(got - rgb.astype(int)).mean() < 1.5
    assert np.abs(i420_to_rgb(planes, 1).astype(int) - rgb.astype(int)).mean() > 3  # read as limited: off


@pytest.mark.parametrize("matrix", [1, 6])
def test_rgb_to_i420_matches_swscale(matrix):
    rgb = smooth_rgb(46, 70, seed=1)
    want = _i420_frame(rgb, matrix).to_ndarray(format="yuv420p").astype(int)
    got = rgb_to_i420(rgb, matrix)
    assert got.shape == want.shape == (69, 70)
    gy, gu, gv = planes_view(got)
    wy, wu, wv = planes_view(want)
    assert np.abs(gy.astype(int) - wy).max() <= 1
    for g, w in ((gu, wu), (gv, wv)):
        assert np.abs(g.astype(int) - w).mean() < 1.0
    back = i420_to_rgb(got, matrix).astype(int)  # round trip
    assert np.abs(back - rgb.astype(int)).mean() < 2.0


def test_rgb_to_i420_rejects_what_it_cannot_write():
    with pytest.raises(ValueError, match="uint8"):
        rgb_to_i420(np.zeros((4, 4, 3), np.int16), 1)
    with pytest.raises(ValueError, match="even"):
        rgb_to_i420(np.zeros((5, 4, 3), np.uint8), 1)
    out = np.empty((6, 4), np.uint8)
    assert rgb_to_i420(np.zeros((4, 4, 3), np.uint8), 1, out=out) is out


def test_frame_to_array_takes_the_opencv_route_for_i420(monkeypatch):
    """A decoded 4:2:0 frame converts through vmatte.ops.yuv, as close to swscale's accurate path
    as the test above; a frame of another layout still goes through swscale."""
    import vmatte.io.sources as S

    calls = []
    monkeypatch.setattr(S, "i420_to_rgb", lambda *a, _f=S.i420_to_rgb: calls.append(a[1:]) or _f(*a))
    vf = _i420_frame(smooth_rgb(48, 64), 1)
    got = S.frame_to_array(vf).astype(int)
    assert calls == [(1, False)]
    assert np.abs(got - _sws_accurate(vf).astype(int)).mean() < 0.6
    vf444 = av.VideoFrame.from_ndarray(smooth_rgb(48, 64), format="rgb24").reformat(format="yuv444p", dst_colorspace=1)
    vf444.colorspace = 1
    assert np.abs(S.frame_to_array(vf444).astype(int) - _sws_accurate(vf444).astype(int)).mean() < 0.6
    assert len(calls) == 1


@pytest.mark.parametrize("range_tag", [0, 2])  # yuvj420p untagged or tagged full: full range either way
def test_full_range_frames_through_frame_to_array(range_tag):
    from vmatte.io.sources import frame_to_array

    rgb = smooth_rgb(46, 64, seed=2)
    vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuvj420p", dst_colorspace=1, dst_color_range=2)
    vf.colorspace, vf.color_range = 1, range_tag
    got = frame_to_array(vf).astype(int)
    assert got.shape == rgb.shape and np.abs(got - rgb.astype(int)).mean() < 1.5


def test_sink_converts_rgb_with_opencv_for_yuv420p_only(tmp_path, monkeypatch):
    """VideoSink.write: RGB frames for a yuv420p encoder go through ops.yuv; an alpha (VP9 with
    alpha) sink still through swscale; non-uint8 frames are a ValueError, not a silent cast."""
    import vmatte.io.sinks as K

    calls = []
    monkeypatch.setattr(K, "rgb_to_i420", lambda *a, _f=K.rgb_to_i420: calls.append(1) or _f(*a))
    frames = [smooth_rgb(48, 64, seed=i) for i in range(3)]
    with K.VideoSink(tmp_path / "a.mp4", rate=10) as s:
        for f in frames:
            s.write(f)
        with pytest.raises(ValueError, match="uint8"):
            s.write(frames[0].astype(np.float32))
    assert len(calls) == 3
    with K.VideoSink(tmp_path / "b.webm", rate=10, alpha=True) as s:
        s.write(frames[0])
    assert len(calls) == 3
    with av.open(str(tmp_path / "a.mp4")) as c:
        back = [frame.to_ndarray(format="rgb24") for frame in c.decode(video=0)]
    assert len(back) == 3 and np.abs(back[1].astype(int) - frames[1].astype(int)).mean() < 4
