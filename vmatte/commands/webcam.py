"""`vmatte webcam`: live camera -> background replaced -> virtual camera for video calls."""
from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading

from ..errors import VmatteError
from . import add_precision_arg, add_refine_patches_arg

HELP = "live camera with the background blurred or replaced, sent to a virtual camera for video calls"
LIVE_CPU_SIZE = 224  # generator long side for live video on a CPU backend (docs/benchmarks.md, Live)


def live_size(size: int | None, backend: str) -> int | None:
    """--size, else LIVE_CPU_SIZE when the backend runs on the CPU (rt's own default since the
    eighth session; it keeps a model with a larger default, such as paper's 1280, inside the live
    latency budget), else the model's own."""
    if size is not None:
        return size
    from ..backends import get_backend_class, resolve_backend

    name = resolve_backend(backend) if backend == "auto" else backend  # availability: Matter says
    return LIVE_CPU_SIZE if get_backend_class(name).device == "cpu" else None


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "webcam", help=HELP, description=HELP.capitalize() + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  vmatte webcam                              # camera 0 -> virtual camera, blurred background\n"
               "  vmatte webcam --background office.jpg --preview\n"
               "  vmatte webcam --file demo.mp4 --no-vcam --preview   # a video file as the camera\n"
               "  vmatte webcam --record call.mp4 --max-seconds 60\n\n"
               "Linux needs a loopback camera first:\n"
               '  sudo modprobe v4l2loopback devices=1 video_nr=10 card_label="vmatte" exclusive_caps=1\n'
               "then pick the 'vmatte' camera in the call app. Preview keys: b blur, c colour, i image,\n"
               "t transparent (chroma green on the virtual camera), +/- smoothing, q quit.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", default="0", help="camera index or device path, e.g. 0 or /dev/video2 (default: 0)")
    src.add_argument("--file", default=None, help="play this video file (looped, in real time) as the camera")
    p.add_argument("--width", type=int, default=1280, help="capture width (default: 1280)")
    p.add_argument("--height", type=int, default=720, help="capture height (default: 720)")
    p.add_argument("--fps", type=float, default=30.0, help="capture and virtual camera frame rate (default: 30)")
    p.add_argument("-b", "--background", default="blur",
                   help="blur, blur:SIGMA, a colour (green, #00ff00, 0,255,0), an image or video file, "
                        "or transparent (default: blur)")
    p.add_argument("--background-image", default=None, help="image for the preview's 'i' key")
    p.add_argument("--color", default="green", help="colour for the preview's 'c' key (default: green)")
    p.add_argument("--smoothing", type=float, default=0.8,
                   help="temporal smoothing of the matte 0..1: more = less flicker, more lag where the picture "
                        "moves slowly (default: 0.8)")
    p.add_argument("--no-motion-adaptive", action="store_true",
                   help="smooth everywhere, also where the picture moves")
    p.add_argument("--preview", action="store_true", help="show a preview window (needs opencv-python with GUI)")
    p.add_argument("--record", default=None, help="also record the output to this file (.mp4, .mov/.webm keep alpha)")
    p.add_argument("--overwrite", action="store_true", help="replace the --record file if it exists")
    p.add_argument("--no-vcam", action="store_true", help="do not open a virtual camera")
    p.add_argument("--vcam-device", default=None, help="loopback device for the virtual camera, e.g. /dev/video10")
    p.add_argument("--vcam-format", default="auto", choices=["auto", "rgb", "i420", "yuyv"],
                   help="pixel format sent to the virtual camera (default: auto)")
    p.add_argument("--backend", default="auto",
                   choices=["auto", "onnxruntime", "torch", "tensorrt", "torch-cuda"], help="inference backend")
    p.add_argument("--model", default="rt", help="model name (default: rt, the one that ships weights; others need --weights)")
    add_precision_arg(p)
    add_refine_patches_arg(p, "; by default, with --workers auto, lowered while the CPU cannot keep up with the camera")
    p.add_argument("--weights", default=None, help="weights .safetensors (default: the shipped ones)")
    p.add_argument("--size", type=int, default=None,
                   help=f"low-resolution long side for the model, 64 to 8192 (default: {LIVE_CPU_SIZE} on a CPU backend, "
                        "where it keeps 720p inside the latency budget; the model's own on a GPU)")
    p.add_argument("--workers", default="auto",
                   help="frames matted at once: 1, 2, ... or auto: on onnxruntime with 2+ cores, one while the matte "
                        "takes well under a camera frame interval and two when it comes close, re-measured as it "
                        "runs; else 1 (default: auto)")
    p.add_argument("--threads", type=int, default=None,
                   help="onnxruntime threads per model session (default: 1; 1 per frame in flight is fastest on 2 cores)")
    p.add_argument("--max-latency", type=float, default=0.5,
                   help="swap a frame older than this many seconds for a fresher one (default: 0.5)")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--stats-every", type=float, default=5.0, help="log stats every N seconds with -v (default: 5)")
    p.set_defaults(func=run)
    return p


def resolve_workers(spec: str | int, backend: str, cpus: int | None = None) -> int:
    """--workers value -> the most frames in flight. auto: 2 for onnxruntime when the CPU has 2+
    cores (one-thread sessions; the live loop's in-flight policy then uses 1 or 2), else 1."""
    import os

    s = str(spec).strip().lower()
    if s == "auto":
        cpus = (os.cpu_count() or 1) if cpus is None else cpus
        return 2 if backend == "onnxruntime" and cpus >= 2 else 1
    if not s.isdigit() or int(s) < 1:
        raise VmatteError(f"--workers {spec!r} is invalid; use auto or a whole number >= 1, e.g. --workers 2")
    return int(s)


def run(args) -> int:
    from ..api import Matter
    from ..backends import backend_for_precision
    from ..io.camera import open_camera
    from ..io.vcam import NullSink, PreviewWindow, Recorder, VirtualCamera
    from ..live import LiveLoop

    if not 0.0 <= args.smoothing <= 1.0:
        raise VmatteError(f"--smoothing {args.smoothing} is out of range; use 0..1 (default 0.8)")
    if args.width <= 0 or args.height <= 0 or args.fps <= 0:
        raise VmatteError(f"--width/--height/--fps must be positive, got {args.width}x{args.height}@{args.fps}")
    if args.no_vcam and not args.preview and not args.record:
        logging.getLogger(__name__).warning("--no-vcam without --preview or --record: frames are processed and discarded")
    log = logging.getLogger("vmatte.webcam")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="vmatte: %(message)s")

    with contextlib.ExitStack() as stack:
        # Devices first: a missing camera or loopback device fails fast, before the model loads.
        cam = stack.enter_context(open_camera(args.camera, args.file, args.width, args.height, args.fps))
        w, h = cam.width, cam.height
        sinks = []
        vcam = None
        if not args.no_vcam:
            vcam = stack.enter_context(VirtualCamera(w, h, min(args.fps, cam.fps or args.fps),
                                                     device=args.vcam_device, fmt=args.vcam_format))
            sinks.append(vcam)
        if args.preview:
            sinks.append(stack.enter_context(PreviewWindow()))
        if args.record:
            sinks.append(stack.enter_context(Recorder(args.record, args.fps, alpha=True, overwrite=args.overwrite)))
        if not sinks:
            sinks.append(NullSink())
        opts = {"threads": args.threads} if args.threads else {}
        backend = backend_for_precision(args.backend, args.precision)  # int8: onnxruntime
        matter = Matter(model=args.model, backend=backend, size=live_size(args.size, backend),
                        weights=args.weights, precision=args.precision, **opts)
        stack.callback(matter.close)
        workers = resolve_workers(args.workers, matter.backend_name)
        keys = {"color": args.color}
        if args.background_image:
            keys["image"] = args.background_image
        else:
            from pathlib import Path

            from ..io.sources import IMAGE_EXTS

            if Path(args.background).suffix.lower() in IMAGE_EXTS and Path(args.background).is_file():
                keys["image"] = args.background
        if args.refine_patches is not None:
            matter.refine_patches = args.refine_patches  # fixed: the budget policy stays off
        budget = None
        if args.refine_patches is None and getattr(matter, "refine_patches", None) is not None:
            budget = (matter.refine_patches, lambda k: setattr(matter, "refine_patches", k))
        loop = LiveLoop(cam, matter.matte, sinks, background=args.background, smoothing=args.smoothing,
                        motion_adaptive=not args.no_motion_adaptive, fps_cap=args.fps, max_latency=args.max_latency,
                        max_seconds=args.max_seconds, stats_every=args.stats_every, key_backgrounds=keys,
                        workers=workers, adaptive=str(args.workers).strip().lower() == "auto", refine_patches=budget)
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM"):
            old = signal.signal(signal.SIGTERM, lambda *_: loop.stop("SIGTERM"))
            stack.callback(signal.signal, signal.SIGTERM, old)
        where = f"virtual camera {vcam.name}" if vcam is not None else "no virtual camera"
        print(f"vmatte: {w}x{h} from {'file ' + args.file if args.file else 'camera ' + str(args.camera)} -> {where} "
              f"({matter.backend_name}); Ctrl-C to stop", file=sys.stderr)
        stats = loop.run()
    n = stats.frames_out
    print(f"vmatte: {n} frame{'' if n == 1 else 's'} in {stats.seconds:.1f} s: {stats.line()}", file=sys.stderr)
    log.debug("stats: %s", stats.as_dict())
    return 0
