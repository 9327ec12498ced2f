"""The temporal filter of mattes (vmatte.ops.temporal) on a synthetic clip with known alpha, and
its use by `vmatte process` on every route (host, GPU route with CPU tensors, CLI)."""
import tracemalloc

import cv2
import numpy as np
import pytest

from vmatte.ops import temporal as T

H, W = 72, 128


def texture(seed: int, h: int = H, w: int = W, lo: int = 40, hi: int = 200) -> np.ndarray:
    """A smooth random RGB texture uint8 [h,w,3]."""
    rng = np.random.default_rng(seed)
    small = rng.integers(lo, hi, (h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    return np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def disc(cx: float, cy: float, r: float, h: int = H, w: int = W) -> np.ndarray:
    """A disc's alpha float32 [h,w] with a 3-pixel soft edge."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.clip((r - np.hypot(xx - cx, yy - cy)) / 3.0 + 0.5, 0.0, 1.0)


def clip(n_still: int = 12, n_move: int = 12, step: float = 2.0, seed: int = 0):
    """A foreground layer (a textured disc) over a still background, still for n_still frames then
    moving `step` px a frame; sensor noise on every frame. The 'model' sees the true alpha plus
    noise of its own per frame around the subject's edge (flicker).
    Returns frames uint8 [N,H,W,3], true alpha [N,H,W], predicted alpha [N,H,W]."""
    rng = np.random.default_rng(seed)
    bg, fg = texture(seed + 1).astype(np.float32), texture(seed + 2, lo=150, hi=255).astype(np.float32)
    frames, true, pred = [], [], []
    for t in range(n_still + n_move):
        a = disc(40 + step * max(0, t - n_still + 1), 36, 18)
        img = a[..., None] * fg + (1 - a[..., None]) * bg + rng.normal(0, 2.0, (H, W, 3))
        frames.append(np.clip(img + 0.5, 0, 255).astype(np.uint8))
        band = cv2.dilate(((a > 0) & (a < 1)).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(np.float32)
        noise = cv2.GaussianBlur(rng.normal(0, 0.15, (H, W)).astype(np.float32), (0, 0), 1.0) * band
        true.append(a)
        pred.append(np.clip(a + noise, 0, 1).astype(np.float32))
    return np.stack(frames), np.stack(true), np.stack(pred)


def run(frames, alphas, params=T.DEFAULT):
    items = ((i, T.guide(f, params.work_side), a) for i, (f, a) in enumerate(zip(frames, alphas)))
    out = list(T.smooth_stream(items, params))
    assert [i for i, _ in out] == list(range(len(frames)))  # every frame once, in order
    return np.stack([a for _, a in out])


def flicker_x1e3(frames, alphas) -> float:
    s = c = 0
    for t in range(1, len(frames)):
        x, k = T.flicker(alphas[t - 1], alphas[t], T.changed_mask(frames[t - 1], frames[t]))
        s, c = s + x, c + k
    return s / c * 1e3


@pytest.mark.parametrize("params", [T.DEFAULT, T.TemporalParams(work_side=64)])  # cells of 1 and of 2 px
def test_cuts_flicker_where_still_and_keeps_moving_frames_right(params):
    frames, true, pred = clip()
    out = run(frames, pred, params)
    still = slice(0, 12)
    raw, filt = flicker_x1e3(frames[still], pred[still]), flicker_x1e3(frames[still], out[still])
    assert raw > 2 and filt < raw / 3, (raw, filt)
    moving = range(13, 24)
    err = lambda al: np.mean([np.abs(al[t] - true[t]).mean() for t in moving])  # noqa: E731
    assert err(out) <= 1.02 * err(pred), (err(out), err(pred))
    # A plain mean over the window (no colour gate) drags the moving edge: the gate is what keeps it.
    smear = run(frames, pred, T.TemporalParams(tolerance=1e6, work_side=params.work_side))
    assert err(smear) > 1.02 * err(pred)


def test_scene_cut_does_not_smear_one_shot_into_the_next():
    """Shot B is a plain wall of the colour shot A's subject had, so a pixel-by-pixel colour gate
    alone would mix A's subject into B's first frames; the cut detector stops the window."""
    _, _, pred_a = clip(6, 0, seed=3)
    frames_a = np.stack([np.full((H, W, 3), 90, np.uint8)] * 6)
    frames_a[:, 18:54, 22:58] = 200  # the subject, where shot B's wall is 200 too
    frames_b = np.full((6, H, W, 3), 200, np.uint8)
    pred_b = np.stack([disc(100, 36, 10)] * 6)
    frames, pred = np.concatenate([frames_a, frames_b]), np.concatenate([pred_a, pred_b])
    out = run(frames, pred)
    np.testing.assert_array_equal(out[6:], run(frames_b, pred_b))  # B as if A never was
    np.testing.assert_array_equal(out[:6], run(frames_a, pred_a))
    no_cut = run(frames, pred, T.TemporalParams(cut=1e6))
    assert np.abs(no_cut[6] - pred_b[0]).max() > 0.1  # the smear the cut prevents


def test_size_change_starts_a_new_shot():
    f1, _, p1 = clip(5, 0)
    f2 = np.stack([cv2.resize(f, (W // 2, H // 2)) for f in f1])
    p2 = np.stack([cv2.resize(p, (W // 2, H // 2)) for p in p1])
    items = [(i, T.guide(f), a) for i, (f, a) in enumerate(list(zip(f1, p1)) + list(zip(f2, p2)))]
    out = list(T.smooth_stream(items))
    assert [i for i, _ in out] == list(range(10)) and [a.shape for _, a in out] == [(H, W)] * 5 + [(H // 2, W // 2)] * 5


def test_look_ahead_is_bounded_and_memory_flat():
    r = T.DEFAULT.radius
    frames, _, pred = clip(10, 10)
    f = T.TemporalFilter()
    got = 0
    for n, (fr, a) in enumerate(zip(frames, pred), 1):
        got += len(f.push(n, T.guide(fr), a))
        assert got == max(0, n - r) and len(f._buf) <= 2 * r + 1  # frame t leaves once t+r is in
    assert len(f.flush()) == r

    def peak(n: int) -> int:
        tracemalloc.start()
        for _ in T.smooth_stream((i, T.guide(frames[i % 20]), pred[i % 20].copy()) for i in range(n)):
            pass
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return top

    short, long = peak(30), peak(300)
    assert long < 1.2 * short + 100_000, (short, long)


def test_first_and_last_frames_use_the_frames_they_have():
    r = T.DEFAULT.radius
    frames, _, pred = clip(12, 0)
    out = run(frames, pred)
    k = T.cell_size(H, W)
    g = [T.guide(f) for f in frames]
    s = [T.cell_state(a, k) for a in pred]
    np.testing.assert_array_equal(out[0], T.filter_window(pred[:r + 1], g[:r + 1], s[:r + 1], 0, k))
    np.testing.assert_array_equal(out[-1], T.filter_window(pred[-r - 1:], g[-r - 1:], s[-r - 1:], r, k))
    assert np.abs(out[0] - pred[0]).max() > 0.01  # they are filtered, not copied


def test_radius_zero_or_a_changed_picture_leave_the_matte_alone():
    frames, _, pred = clip(6, 0)
    np.testing.assert_array_equal(run(frames, pred, T.TemporalParams(radius=0)), pred)
    lit = np.stack([np.full((H, W, 3), 20 + 40 * t, np.uint8) for t in range(6)])  # every pixel changes a lot
    np.testing.assert_array_equal(run(lit, pred, T.TemporalParams(cut=1e6)), pred)


def dense_reference(alphas, guides, centre, k, tol):
    """filter_window written out over the whole frame (weights upsampled whole)."""
    h, w = guides[centre].shape[:2]
    ws = [np.ones((h, w), np.float32) if s == centre else T.neighbour_weight(g, guides[centre], tol)
          for s, g in enumerate(guides)]
    total = sum(ws)
    Hh, Ww = alphas[centre].shape
    return sum(cv2.resize(x / total, (w * k, h * k), interpolation=cv2.INTER_LINEAR)[:Hh, :Ww] * a
               for x, a in zip(ws, alphas))


@pytest.mark.parametrize("h,w,side", [(72, 128, 32), (75, 131, 40), (40, 50, 320), (97, 61, 12)])
def test_strips_equal_the_whole_frame_sum(h, w, side):
    """Only cells that are not flat are computed, strip by strip; the result equals the plain
    whole-frame weighted sum there, and is within FLAT of it elsewhere."""
    rng = np.random.default_rng(h)
    k = T.cell_size(h, w, side)
    base = np.zeros((h, w), np.float32)
    base[h // 3:, w // 4: 3 * w // 4] = 1.0  # a flat subject on a flat background
    edge = cv2.dilate((cv2.Laplacian(base, -1) != 0).astype(np.uint8), np.ones((3, 3), np.uint8))
    alphas = [np.clip(base + rng.normal(0, 0.1, (h, w)) * edge + (rng.random((h, w)) < 0.01) * 0.3, 0, 1)
              .astype(np.float32) for _ in range(5)]  # noisy edge, a few specks
    g0 = cv2.resize(texture(1, 40, 60), T.grid(h, w, k)[::-1])
    guides = [np.clip(g0 + rng.integers(-12, 13, g0.shape), 0, 255).astype(np.uint8) for _ in range(5)]
    states = [T.cell_state(a, k) for a in alphas]
    got = T.filter_window(alphas, guides, states, 2, k)
    ref = dense_reference(alphas, guides, 2, k, T.DEFAULT.tolerance)
    assert got.shape == (h, w) and got.dtype == np.float32
    assert np.abs(got - ref).max() < T.FLAT


def test_cell_state_sees_a_single_pixel():
    for k in (1, 3, 16):
        a = np.zeros((2 * k + 1, 3 * k), np.float32)
        assert (T.cell_state(a, k) == 0).all()
        a[k + k // 2, 2 * k + k // 2] = 2 * T.FLAT  # one pixel in cell (1, 2)
        st = T.cell_state(a, k)
        assert st.shape == (3, 3) and st[1, 2] == 1 and (st.sum() == 1)
        a[:] = 1.0
        assert (T.cell_state(a, k) == 2).all()
        a[2 * k, 0] = 0.5  # in the last, partial row of cells
        assert T.cell_state(a, k)[2, 0] == 1


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
@pytest.mark.parametrize("h", [64, 62])  # 62: the chroma planes do not fill whole rows of the I420 array
def test_guide_from_i420_close_to_guide_from_rgb(matrix, h):
    torch = pytest.importorskip("torch")
    from vmatte.gpu_runner import hwc_to_nchw, rgb_to_yuv420

    rgb = texture(5, h, 96)
    planes = rgb_to_yuv420(hwc_to_nchw(torch.from_numpy(rgb)), matrix)[0].numpy()  # as a decoder gives them
    a, b = T.guide(rgb, 32).astype(int), T.guide_i420(planes, 32, matrix).astype(int)
    assert a.shape == b.shape and np.abs(a - b).mean() < 2 and np.abs(a - b).max() <= 6


def test_bad_parameters_and_mismatched_guides_are_errors():
    with pytest.raises(ValueError, match="radius"):
        T.TemporalParams(radius=-1)
    f = T.TemporalFilter()
    with pytest.raises(ValueError, match="guide"):
        f.push(0, np.zeros((5, 5, 3), np.uint8), np.zeros((H, W), np.float32))


# -- vmatte process ---------------------------------------------------------------------------------
N = 16


def marked_clip(tmp_path):
    """A still scene (clip()'s first frames) as a lossless H.264 file with the frame index in the
    top-left block (10 + 12 i), so a matter can tell the frames apart."""
    import av

    frames, true, _ = clip(N, 0)
    frames[:, :8, :8] = (10 + 12 * np.arange(N))[:, None, None, None]
    path = tmp_path / "still.mp4"
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=10, options={"qp": "0"})
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv444p"
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            for p in vs.encode(vf):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
    return path, true[0]


class FlickerMatter:
    """A fake model: the true disc plus noise of its own each frame around the edge, and the frame
    index (read from the marker) written into the matte's top-left block as i / 100."""

    def __init__(self, true):
        self.true, self.seen = true, []
        band = cv2.dilate(((true > 0) & (true < 1)).astype(np.uint8), np.ones((7, 7), np.uint8))
        self.band = band.astype(np.float32)

    def index(self, rgb):
        return int(round((float(rgb[:8, :8, 0].mean()) - 10) / 12))

    def matte(self, rgb):
        i = self.index(rgb)
        self.seen.append(i)
        noise = np.random.default_rng(i).normal(0, 0.15, self.true.shape).astype(np.float32) * self.band
        a = np.clip(self.true + noise, 0, 1)
        a[:8, :8] = i / 100
        return a


def read_pngs(folder):
    return np.stack([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.iterdir())])


def test_process_steadies_the_matte_and_keeps_every_frame_in_order(tmp_path):
    from vmatte.process import process

    video, true = marked_clip(tmp_path)
    outs = {}
    for on in (True, False):
        m = FlickerMatter(true)
        res = process(video, tmp_path / f"a{on}", matter=m, output_kind="alpha", temporal=on)
        assert res.frames == N and sorted(m.seen) == list(range(N))
        a = read_pngs(tmp_path / f"a{on}").astype(np.float32) / 255  # [N,H,W]
        assert a.shape == (N, H, W)
        np.testing.assert_allclose(a[:, 2, 2], np.arange(N) / 100, atol=0.5 / 255)  # order kept
        outs[on] = a[:, 8:]
    d = lambda x: np.abs(np.diff(x, axis=0)).mean()  # noqa: E731 - the scene is still: any change is flicker
    assert d(outs[True]) < d(outs[False]) / 3, (d(outs[True]), d(outs[False]))


def test_every_output_kind_gets_the_filtered_matte(tmp_path):
    from vmatte.process import process

    video, true = marked_clip(tmp_path)
    alpha = {}
    for on in (True, False):
        process(video, tmp_path / f"alpha{on}", matter=FlickerMatter(true), output_kind="alpha", temporal=on)
        alpha[on] = read_pngs(tmp_path / f"alpha{on}")
    rgba = read_pngs(process(video, tmp_path / "rgba", matter=FlickerMatter(true), output_kind="rgba").output)
    np.testing.assert_array_equal(rgba[..., 3], alpha[True])  # RGBA carries the filtered matte
    for kind in ("composite", "foreground"):
        on = read_pngs(process(video, tmp_path / f"{kind}1", matter=FlickerMatter(true), output_kind=kind,
                               background="green").output)
        off = read_pngs(process(video, tmp_path / f"{kind}0", matter=FlickerMatter(true), output_kind=kind,
                                background="green", temporal=False).output)
        assert on.shape == off.shape == (N, H, W, 3)
        moved = np.abs(alpha[True].astype(int) - alpha[False]) > 2  # where the filter moved the matte
        diff = np.abs(on.astype(int) - off).max(-1)
        assert diff[moved].mean() > 4 and diff[alpha[True] == alpha[False]].max() <= 2  # there, and only there


def test_cli_temporal_switch(tmp_path, monkeypatch, capsys):
    import vmatte.api
    from vmatte.cli import main

    video, true = marked_clip(tmp_path)
    monkeypatch.setattr(vmatte.api, "Matter", lambda **kw: FlickerMatter(true))
    for flag in ("on", "off"):
        assert main(["process", str(video), "-o", str(tmp_path / flag), "--output-kind", "alpha", "-q",
                     "--temporal", flag]) == 0
    assert (read_pngs(tmp_path / "on") != read_pngs(tmp_path / "off")).any()
    with pytest.raises(SystemExit) as e:
        main(["process", str(video), "-o", str(tmp_path / "x"), "--temporal", "maybe"])
    assert e.value.code == 2 and "invalid choice: 'maybe'" in capsys.readouterr().err


class FlickerDeviceBackend:
    """FlickerMatter as a torch device backend (`_chain` on [N,3,H,W] tensors) that claims to be a
    CUDA backend, so process() takes its GPU route; here it runs on CPU tensors."""

    device = "cuda"
    channels_last = False

    def __init__(self, true):
        import torch

        self.torch, self.dtype, self.host, self.calls = torch, torch.float32, FlickerMatter(true), []

    def _device(self):
        return "cpu"

    def _chain(self, full, low):
        self.calls.append(tuple(full.shape))
        out = self.torch.zeros((full.shape[0], 1, *full.shape[2:]), dtype=full.dtype)
        for n in range(full.shape[0]):
            rgb = (full[n, :, :H, :W].permute(1, 2, 0) * 255).round().clamp(0, 255).to(self.torch.uint8).numpy()
            out[n, 0, :H, :W] = self.torch.from_numpy(self.host.matte(rgb))
        return out


@pytest.mark.parametrize("kind", ["alpha", "composite"])
def test_gpu_route_filters_like_the_host_route(tmp_path, monkeypatch, kind):
    """On the GPU route the device mattes (batches), the host filters, the device composites the
    filtered matte (a second program with alpha_in); the result matches the host route's."""
    pytest.importorskip("torch")
    import vmatte.process as P

    video, true = marked_clip(tmp_path)
    seen, real = [], P.gpu_program
    monkeypatch.setattr(P, "gpu_program", lambda *a, **k: seen.append((a[3:5], k)) or real(*a, **k))
    dev = FlickerDeviceBackend(true)
    gpu = type("M", (), {"backend": dev, "long_side": 32, "matte": None})()
    P.process(video, tmp_path / "gpu", matter=gpu, output_kind=kind, background="green")
    assert dev.calls and all(c[0] == P.GPU_BATCH for c in dev.calls) and sorted(dev.host.seen) == list(range(N))
    second = [k for _, k in seen if k.get("alpha_in")]
    assert len(second) == (kind == "composite") and seen[-1][0][1] == "alpha"  # the matting pass outputs alpha
    P.process(video, tmp_path / "gpu0", matter=type(gpu)(), output_kind=kind, background="green", temporal=False)
    for on in (True, False):
        P.process(video, tmp_path / f"cpu{on:d}", matter=FlickerMatter(true), output_kind=kind, background="green",
                  temporal=on)
    g, g0, c, c0 = (read_pngs(tmp_path / n).astype(int) for n in ("gpu", "gpu0", "cpu1", "cpu0"))
    assert g.shape == c.shape and len(g) == N
    # The routes differ by the device's colour conversions (g0 vs c0); filtering adds little to that.
    assert np.abs(g - c).mean() < np.abs(g0 - c0).mean() + 0.15
    band = FlickerMatter(true).band > 0  # where the fake model flickers
    assert np.abs(g - g0)[:, band].mean() > 3 * np.abs(g - c)[:, band].mean() + 1  # and the filter did something


def test_program_with_alpha_in_composites_the_given_matte():
    torch = pytest.importorskip("torch")
    from vmatte.gpu_runner import MattingProgram, hwc_to_nchw, rgb_to_yuv420

    dev = FlickerDeviceBackend(disc(60, 30, 20))
    rgb = texture(7)
    a8 = (disc(40, 40, 15) * 255).round().astype(np.uint8)
    want = (a8[..., None] / 255 * rgb + (1 - a8[..., None] / 255) * np.array([0, 255, 0])).round()
    prog = MattingProgram(dev, 32, background=(0, 255, 0), alpha_in=True)
    out = prog(torch.from_numpy(np.dstack([rgb, a8]))).numpy()
    assert out.shape == (H, W, 3) and np.abs(out - want).max() <= 1 and not dev.calls  # the model never ran
    planes = rgb_to_yuv420(hwc_to_nchw(torch.from_numpy(rgb)))[0].numpy()
    prog = MattingProgram(dev, 32, background=None, in_format="yuv420p", out_format="rgba", alpha_in=True)
    packed = torch.from_numpy(np.concatenate([planes, a8]))
    assert prog.out_shape(packed.shape) == (H, W, 4)
    np.testing.assert_array_equal(prog(packed).numpy()[..., 3], a8)


# -- the live smoother (causal) ---------------------------------------------------------------------
def test_live_smoother_steadies_still_frames_and_follows_motion():
    from vmatte.live import MatteSmoother

    frames, true, pred = clip()
    sm = MatteSmoother()  # the webcam's defaults
    out = np.stack([sm(f, a).copy() for f, a in zip(frames, pred)])
    assert flicker_x1e3(frames[:12], out[:12]) < 0.4 * flicker_x1e3(frames[:12], pred[:12])
    err = lambda al: np.mean([np.abs(al[t] - true[t]).mean() for t in range(13, 24)])  # noqa: E731
    assert err(out) < 1.06 * err(pred)  # causal: a little lag on the moving edge, bounded
    plain = MatteSmoother(sm.smoothing, motion_adaptive=False)
    assert err(np.stack([plain(f, a).copy() for f, a in zip(frames, pred)])) > 3 * err(pred)


def test_live_smoother_follows_a_slow_fade_that_a_plain_ema_lags():
    """Colour and matte change a little each frame (a slow fade): each step is far below the
    motion gate, but the smoother compares the frame with the colour its running matte stands
    for, so the change adds up and the gate opens; a plain EMA lags several frames behind."""
    from vmatte.live import MatteSmoother

    def last_error(sm):
        for i in range(30):
            out = sm(np.full((H, W, 3), 60 + 4 * i, np.uint8), np.full((H, W), i / 29, np.float32))
        return float(np.abs(out - 1.0).mean())

    assert last_error(MatteSmoother()) < 0.03 and last_error(MatteSmoother(0.8, motion_adaptive=False)) > 0.1


def test_ordered_map_keeps_order_bounds_work_and_raises():
    """The host route's matting stage with the filter: results in input order, at most `ahead`
    items submitted ahead of the consumer, the first error raised at its item."""
    import threading
    import time

    from vmatte.runner import ordered_map

    read, lock = [], threading.Lock()

    def items():
        for i in range(40):
            with lock:
                read.append(i)
            yield i

    def slow(i):
        time.sleep(0.002 * (i % 3))  # finish out of order
        return i * i

    got = []
    for j, x in enumerate(ordered_map(slow, items(), 3, 5)):
        got.append(x)
        assert len(read) <= j + 5  # never more than `ahead` read beyond what was taken
    assert got == [i * i for i in range(40)]

    def bad(i):
        if i == 7:
            raise ValueError("frame 7")
        return i

    out = []
    with pytest.raises(ValueError, match="frame 7"):
        for x in ordered_map(bad, range(20), 2, 4):
            out.append(x)
    assert out == list(range(7))
