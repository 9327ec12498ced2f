"""GPU runner: ordering, back-pressure and error propagation on CPU (HostLayer), the device
program's maths against the host pipeline, and real-CUDA checks marked `cuda`."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vmatte.gpu_runner import (GpuRunner, HostLayer, MattingProgram, blur_background_torch, hwc_to_nchw,  # noqa: E402
                               nchw_to_hwc_uint8, prepare_torch, rgb_to_yuv420, yuv420_to_rgb)

cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")


def frames(n, h=8, w=10):
    return [np.full((h, w, 3), i % 256, np.uint8) for i in range(n)]


def test_order_kept_and_nothing_lost_with_jittery_program():
    rng = np.random.default_rng(0)

    def prog(x):
        time.sleep(float(rng.uniform(0, 0.003)))
        return x + 1

    got = []
    stats = GpuRunner(prog, slots=3, layer=HostLayer()).run(frames(40), lambda i, out, meta: got.append((i, int(out[0, 0, 0]))))
    assert [g[0] for g in got] == list(range(40))
    assert [g[1] for g in got] == [(i + 1) % 256 for i in range(40)]
    assert stats.frames == 40 and len(stats.stage_ms["compute"]) == 40


def test_in_flight_bounded_by_slots_under_slow_sink():
    seen = []

    def sink(i, out, meta):
        time.sleep(0.002)  # slow consumer: the submitter must wait for free slots
        seen.append(i)

    runner = GpuRunner(lambda x: x, slots=2, layer=HostLayer(), decode_queue=1)
    stats = runner.run(frames(25), sink)
    assert seen == list(range(25))
    assert 1 <= stats.max_in_flight <= 2


def test_source_is_throttled_by_back_pressure():
    produced = []
    release = threading.Event()

    def source():
        for i, f in enumerate(frames(30)):
            produced.append(i)
            yield f

    def sink(i, out, meta):
        if i == 0:
            release.wait(0.3)  # hold the first frame: the decoder may run ahead only by slots + queues
            assert len(produced) <= 2 + 1 + 3  # slots + the one being submitted + decode queue + generator step
    GpuRunner(lambda x: x, slots=2, layer=HostLayer(), decode_queue=1).run(source(), sink)
    assert len(produced) == 30


def test_metadata_travels_with_frames_and_copy_out():
    items = [(f, {"pts": 10 * i}) for i, f in enumerate(frames(6))]
    outs = []
    GpuRunner(lambda x: x, slots=2, layer=HostLayer(), copy_out=True).run(items, lambda i, o, m: outs.append((o, m)))
    assert [m["pts"] for _, m in outs] == [0, 10, 20, 30, 40, 50]
    assert [int(o[0, 0, 0]) for o, _ in outs] == list(range(6))  # copies, not the reused buffer


@pytest.mark.parametrize("where", ["program", "sink", "source"])
def test_errors_propagate(where):
    def prog(x):
        if where == "program" and int(x[0, 0, 0, 0]) == 5:
            raise ValueError("boom in program")
        return x

    def sink(i, out, meta):
        if where == "sink" and i == 3:
            raise ValueError("boom in sink")

    def source():
        for i, f in enumerate(frames(20)):
            if where == "source" and i == 7:
                raise ValueError("boom in source")
            yield f

    with pytest.raises(ValueError, match=f"boom in {where}"):
        GpuRunner(prog, slots=3, layer=HostLayer()).run(source(), sink)


def test_bad_items_and_shapes_are_errors():
    with pytest.raises(TypeError, match="source item"):
        GpuRunner(lambda x: x, layer=HostLayer()).run(["not a frame"], lambda *a: None)
    with pytest.raises(ValueError, match="returned shape"):
        GpuRunner(lambda x: x[..., :2], layer=HostLayer()).run(frames(2), lambda *a: None)
    with pytest.raises(ValueError, match="batch"):
        GpuRunner(lambda x: x, batch=0, layer=HostLayer())
    with pytest.raises(ValueError, match="slots"):
        GpuRunner(lambda x: x, slots=0, layer=HostLayer())


def test_frame_size_change_reallocates():
    items = frames(3, 8, 10) + frames(3, 16, 6)
    shapes = []
    GpuRunner(lambda x: x, slots=2, layer=HostLayer()).run(items, lambda i, o, m: shapes.append(o.shape))
    assert shapes == [(8, 10, 3)] * 3 + [(16, 6, 3)] * 3


@pytest.mark.parametrize("batch,pad", [(2, False), (4, False), (4, True)])
def test_batches_keep_order_metadata_and_size_changes(batch, pad):
    """Batched calls: every frame once, in order, with its metadata; a size change or the end of
    the source cuts a batch short (padded to the full batch size when pad_batches)."""
    items = [(f, {"k": i}) for i, f in enumerate(frames(7, 8, 10) + frames(5, 6, 4))]
    calls, got = [], []

    def prog(x):
        calls.append(tuple(x.shape))
        return x + 1

    stats = GpuRunner(prog, slots=2, layer=HostLayer(), batch=batch, copy_out=True, pad_batches=pad).run(
        items, lambda i, o, m: got.append((i, m["k"], o.shape, int(o[0, 0, 0]))))
    assert [g[0] for g in got] == list(range(12)) and [g[1] for g in got] == list(range(12))
    assert [g[2] for g in got] == [(8, 10, 3)] * 7 + [(6, 4, 3)] * 5
    assert [g[3] for g in got] == [(i % 7 if i < 7 else i - 7) + 1 for i in range(12)]
    if pad:
        assert all(c[0] == batch for c in calls) and len(calls) == 2 + 2  # 7 = 4+3, 5 = 4+1
    else:
        assert all(c[0] <= batch for c in calls) and sum(c[0] for c in calls) == 12
    assert calls[0] == (batch, 8, 10, 3)  # full batches while frames keep coming
    assert stats.frames == 12 and stats.batches == len(calls)


def test_batched_program_equals_frame_by_frame(cpu_backend):
    """MattingProgram on a batch gives what it gives one frame at a time."""
    items = [np.random.default_rng(i).integers(16, 235, (48, 64, 3), dtype=np.uint8) for i in range(3)]
    prog = MattingProgram(cpu_backend, 64, background="blur")
    one = [prog(torch.from_numpy(f)).numpy() for f in items]
    many = prog(torch.from_numpy(np.stack(items))).numpy()
    assert many.shape == (3, 48, 64, 3) and prog.out_shape((3, 48, 64, 3)) == (3, 48, 64, 3)
    for a, b in zip(one, many):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_yuv_roundtrip_close():
    rng = np.random.default_rng(1)
    rgb = torch.from_numpy(rng.uniform(0.1, 0.9, (1, 3, 16, 20)).astype(np.float32))
    rgb = torch.nn.functional.interpolate(rgb[:, :, ::2, ::2], scale_factor=2, mode="nearest")  # flat 2x2 chroma
    planes = rgb_to_yuv420(rgb)
    assert planes.shape == (1, 24, 20) and planes.dtype == torch.uint8
    back = yuv420_to_rgb(planes, 16, 20)
    assert float((back - rgb).abs().max()) < 0.02


def test_yuv_matches_ffmpeg_conversion():
    av = pytest.importorskip("av")
    rgb = (np.random.default_rng(2).uniform(20, 235, (16, 24, 3))).astype(np.uint8)
    rgb[:, :12] = (200, 40, 90)  # a flat block: swscale's chroma filter is not a 2x2 box, so compare there
    planes = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
    ours = rgb_to_yuv420(hwc_to_nchw(torch.from_numpy(rgb)))[0].numpy()
    assert np.abs(ours[:16].astype(int) - planes[:16].astype(int)).max() <= 1  # luma everywhere
    u_ours, u_ff = ours[16:20].reshape(8, 12), planes[16:20].reshape(8, 12)
    assert np.abs(u_ours[:, :4].astype(int) - u_ff[:, :4].astype(int)).max() <= 1  # chroma on the flat block
    flat = np.ascontiguousarray(rgb[:, :12])
    flat_planes = av.VideoFrame.from_ndarray(flat, format="rgb24").reformat(format="yuv420p").to_ndarray()
    back = nchw_to_hwc_uint8(yuv420_to_rgb(torch.from_numpy(flat_planes), 16, 12))[0].numpy()
    assert np.abs(back.astype(int) - flat.astype(int)).max() <= 3


def test_prepare_torch_matches_host_prepare():
    from vmatte.api import prepare

    from vmatte.bench import random_frame

    rgb = random_frame(100, 150, seed=3)  # image-like: smooth field, an ellipse, mild noise
    full_h, low_h = prepare(rgb, 64)
    full_t, low_t = prepare_torch(hwc_to_nchw(torch.from_numpy(rgb)), 64)
    assert tuple(full_t.shape) == full_h.shape and tuple(low_t.shape) == low_h.shape
    assert np.abs(full_t.numpy() - full_h).max() < 1e-6
    assert np.abs(low_t.numpy() - low_h).mean() < 0.006  # same halvings + area step; the host rounds to uint8 each halving


def test_blur_background_keeps_person_and_blurs_background():
    x = torch.rand(1, 3, 64, 80)
    alpha = torch.zeros(1, 1, 64, 80)
    alpha[..., 16:48, 20:60] = 1.0
    y = blur_background_torch(x, alpha, sigma=8.0)
    assert torch.allclose(y[..., 16:48, 20:60], x[..., 16:48, 20:60])
    assert float(y[..., :8, :].std()) < 0.5 * float(x[..., :8, :].std())


@pytest.fixture(scope="module")
def cpu_backend():
    from vmatte.backends.torch import TorchBackend
    from vmatte.registry import create_model

    torch.manual_seed(0)
    return TorchBackend(None, model=create_model("rt").eval())


def test_program_alpha_matches_host_chain(cpu_backend):
    from vmatte.api import prepare

    rgb = (np.random.default_rng(4).uniform(0, 255, (72, 120, 3))).astype(np.uint8)
    prog = MattingProgram(cpu_backend, 64, background=None, out_format="alpha")
    a_dev = prog(torch.from_numpy(rgb)).numpy().astype(np.float32) / 255
    full, low = prepare(rgb, 64)
    a_host = cpu_backend.run_all(full, low)[0, 0, :72, :120]
    assert a_dev.shape == (72, 120)
    assert np.abs(a_dev - a_host).mean() < 0.02


@pytest.mark.parametrize("in_fmt,out_fmt,bg", [("rgb24", "rgb24", "blur"), ("yuv420p", "yuv420p", (0, 255, 0)),
                                                ("rgb24", "rgba", None), ("nv12", "rgb24", "blur")])
def test_program_formats_through_runner(cpu_backend, in_fmt, out_fmt, bg):
    prog = MattingProgram(cpu_backend, 64, background=bg, in_format=in_fmt, out_format=out_fmt)
    shape = (48, 64, 3) if in_fmt == "rgb24" else (72, 64)
    items = [np.random.default_rng(i).integers(16, 235, shape, dtype=np.uint8) for i in range(3)]
    outs = []
    GpuRunner(prog, slots=2, layer=HostLayer(), copy_out=True, batch=2).run(items, lambda i, o, m: outs.append(o))
    assert len(outs) == 3 and outs[0].shape == prog.out_shape(shape) and outs[0].dtype == np.uint8


def test_program_rejects_bad_options(cpu_backend):
    with pytest.raises(ValueError, match="in_format"):
        MattingProgram(cpu_backend, in_format="bgr")
    with pytest.raises(ValueError, match="background"):
        MattingProgram(cpu_backend, background="sparkles")


@cuda
@needs_cuda
@pytest.mark.parametrize("batch", [1, 4])
def test_cuda_runner_graph_program_matches_eager(batch):
    from vmatte.backends.torch import TorchCudaBackend
    from vmatte.gpu_runner import CudaLayer
    from vmatte.registry import create_model

    import copy

    torch.manual_seed(0)
    model = create_model("rt").eval()
    e = TorchCudaBackend(None, model=copy.deepcopy(model), cuda_graphs=False)
    g = TorchCudaBackend(None, model=model)
    items = [np.random.default_rng(i).integers(0, 255, (360, 640, 3), dtype=np.uint8) for i in range(6)]
    outs = {}
    for name, be in (("graph", g), ("eager", e)):
        res = []
        GpuRunner(MattingProgram(be, 256, background="blur"), slots=3, layer=CudaLayer(), copy_out=True,
                  batch=batch).run(
            items, lambda i, o, m: res.append(o))
        outs[name] = res
    for a, b in zip(outs["graph"], outs["eager"]):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.0


def test_fold_batchnorm_keeps_outputs():
    import copy

    from vmatte.backends.torch import fold_batchnorm
    from vmatte.registry import create_model

    torch.manual_seed(1)
    m = create_model("rt").eval()
    for mod in m.modules():  # non-trivial statistics, as after training
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.1, 0.1)
    f = fold_batchnorm(copy.deepcopy(m))
    assert not any(isinstance(q, torch.nn.BatchNorm2d) for q in f.modules())
    x, lo = torch.rand(1, 3, 128, 192), torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert float((m(x, lo) - f(x, lo)).abs().max()) < 1e-4


@pytest.mark.parametrize("matrix,sws", [("bt601", 5), ("bt709", 1)])
def test_yuv_matrices_match_swscale(matrix, sws):
    """Our GPU colour maths agree with FFmpeg's swscale for both matrices (flat colours, so chroma
    subsampling plays no part)."""
    av = pytest.importorskip("av")
    colour = torch.tensor([0.8, 0.3, 0.2]).view(1, 3, 1, 1)
    planes = rgb_to_yuv420(torch.zeros(1, 3, 16, 20) + colour, matrix)[0].numpy()
    ref = av.VideoFrame.from_ndarray(planes, format="yuv420p").to_ndarray(format="rgb24", src_colorspace=sws)
    ours = yuv420_to_rgb(torch.from_numpy(planes), 16, 20, matrix=matrix)[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(ours - ref).max() < 3
    assert np.abs(ref[0, 0] - colour.flatten().numpy() * 255).max() < 3


def test_yuv_matrix_rule():
    from vmatte.gpu_runner import yuv_matrix

    assert yuv_matrix(1920, 1080) == "bt709" and yuv_matrix(640, 360) == "bt601"
